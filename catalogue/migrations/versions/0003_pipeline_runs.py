"""Records of pipeline runs: the scheduler's queue and its history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(8), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("version_id", sa.String(100), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
        sa.CheckConstraint("trigger IN ('cron', 'api', 'cli')", name="ck_pipeline_runs_trigger"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'published', 'refused', 'failed', 'busy')",
            name="ck_pipeline_runs_status",
        ),
    )
    op.create_index("ix_pipeline_runs_requested_at", "pipeline_runs", ["requested_at"])
    op.create_index("ix_pipeline_runs_status", "pipeline_runs", ["status"])
    # At most one queued run: a burst of retrain requests becomes one run.
    op.create_index(
        "uq_pipeline_runs_one_queued",
        "pipeline_runs",
        ["status"],
        unique=True,
        sqlite_where=_QUEUED,
        postgresql_where=_QUEUED,
    )


def downgrade() -> None:
    op.drop_table("pipeline_runs")
