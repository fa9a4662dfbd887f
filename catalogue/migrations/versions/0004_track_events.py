"""The catalogue's change log: one event per track added or deleted, one per import.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "track_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("track_id", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_track_events"),
        sa.CheckConstraint("kind IN ('added', 'deleted', 'imported')", name="ck_track_events_kind"),
        sa.CheckConstraint(
            "(track_id IS NULL) = (kind = 'imported')", name="ck_track_events_track_id"
        ),
        sqlite_autoincrement=True,  # never reuse a seq, even the highest one
    )


def downgrade() -> None:
    op.drop_table("track_events")
