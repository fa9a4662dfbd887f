"""Initial catalogue: tracks and listens.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tracks",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("title", sa.String(1000), nullable=False),
        sa.Column("artist", sa.String(1000), nullable=False),
        sa.Column("origin", sa.String(8), nullable=False),
        sa.Column("audio_path", sa.String(400), nullable=True),
        sa.Column("audio_sha256", sa.String(64), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("vector_version", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tracks"),
        sa.CheckConstraint("origin IN ('warm', 'cold')", name="ck_tracks_origin"),
        sa.CheckConstraint("length(id) > 0", name="ck_tracks_id_not_empty"),
        sa.CheckConstraint(
            "(audio_path IS NULL) = (audio_sha256 IS NULL)", name="ck_tracks_audio_complete"
        ),
    )
    op.create_index("ix_tracks_origin_added_at", "tracks", ["origin", "added_at"])
    op.create_index("ix_tracks_audio_sha256", "tracks", ["audio_sha256"])
    op.create_table(
        "listens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("track_id", sa.String(200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("played_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_listens"),
        sa.ForeignKeyConstraint(
            ["track_id"],
            ["tracks.id"],
            name="fk_listens_track_id_tracks",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("count >= 1", name="ck_listens_count_positive"),
        sa.CheckConstraint("length(user_id) > 0", name="ck_listens_user_id_not_empty"),
    )
    op.create_index("ix_listens_user_id", "listens", ["user_id"])
    op.create_index("ix_listens_track_id", "listens", ["track_id"])


def downgrade() -> None:
    op.drop_table("listens")
    op.drop_table("tracks")
