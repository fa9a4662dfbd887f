"""Listens looked up by user and id: a user's listens since a model version was built.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

The service reads, per recommendation, the listens of one user with an id above the served
version's watermark (`Catalogue.listens_since`); an index on (user_id, id) reads exactly
those rows however many the user has, and serves every lookup by user_id alone too, so it
replaces `ix_listens_user_id`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_listens_user_id_id", "listens", ["user_id", "id"])
    op.drop_index("ix_listens_user_id", table_name="listens")


def downgrade() -> None:
    op.create_index("ix_listens_user_id", "listens", ["user_id"])
    op.drop_index("ix_listens_user_id_id", table_name="listens")
