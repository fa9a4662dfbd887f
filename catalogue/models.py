"""The catalogue's tables: `tracks` (every song the service knows) and `listens` (plays).

`tracks.origin` says where a song came from: "warm" songs were imported from a dataset and
have WMF factors once the nightly job has fitted them; "cold" tracks were added by audio
through the service and are recommendable by their predicted factors alone.
`vector_version` names the model version whose vectors the index holds for the track
(NULL until the nightly job has computed them), so the job knows what to (re)compute.

Times are stored in UTC: `UTCDateTime` refuses naive datetimes and always returns aware
ones, on SQLite (no time zones) as on PostgreSQL (timestamptz).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ORIGINS = ("warm", "cold")
MAX_ID_LENGTH = 200
MAX_TEXT_LENGTH = 1000
MAX_PATH_LENGTH = 400
MAX_VERSION_LENGTH = 100
SHA256_LENGTH = 64
# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE (catalogue.db).
WRITE_OPTION = "coldstart_write"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    # Constraint names fixed by convention, so migrations can name them on every backend.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    title: Mapped[str] = mapped_column(String(MAX_TEXT_LENGTH))
    artist: Mapped[str] = mapped_column(String(MAX_TEXT_LENGTH))
    origin: Mapped[str] = mapped_column(String(8))
    audio_path: Mapped[str | None] = mapped_column(String(MAX_PATH_LENGTH))
    audio_sha256: Mapped[str | None] = mapped_column(String(SHA256_LENGTH))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    vector_version: Mapped[str | None] = mapped_column(String(MAX_VERSION_LENGTH))

    __table_args__ = (
        CheckConstraint("origin IN ('warm', 'cold')", name="origin"),
        CheckConstraint("length(id) > 0", name="id_not_empty"),
        CheckConstraint("(audio_path IS NULL) = (audio_sha256 IS NULL)", name="audio_complete"),
        Index("ix_tracks_origin_added_at", "origin", "added_at"),
        Index("ix_tracks_audio_sha256", "audio_sha256"),
    )


class Listen(Base):
    __tablename__ = "listens"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    user_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH))
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    count: Mapped[int] = mapped_column(Integer)
    played_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("count >= 1", name="count_positive"),
        CheckConstraint("length(user_id) > 0", name="user_id_not_empty"),
        # a user's listens since a model version was built (and any lookup by user)
        Index("ix_listens_user_id_id", "user_id", "id"),
        Index("ix_listens_track_id", "track_id"),
    )
