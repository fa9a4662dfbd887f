"""Run history: a model version made current by hand (a rollback) is recorded as a run.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

`pipeline_runs.status` gains "activated": `coldstart model use` and POST
/v1/admin/versions/{id}/activate record who made which version current.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "status IN ('queued', 'running', 'published', 'refused', 'failed', 'busy')"
_AFTER = "status IN ('queued', 'running', 'published', 'refused', 'failed', 'busy', 'activated')"


def _status_check(condition: str) -> None:
    # SQLite cannot alter a CHECK: batch mode copies the table (it is small: one row a run).
    with op.batch_alter_table("pipeline_runs", recreate="always") as batch:
        batch.drop_constraint("ck_pipeline_runs_status", type_="check")
        batch.create_check_constraint("ck_pipeline_runs_status", condition)


def upgrade() -> None:
    _status_check(_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM pipeline_runs WHERE status = 'activated'")
    _status_check(_BEFORE)
