"""The predicted vectors of tracks added by audio, per model version (table `track_vectors`).

A cold track's place in both index spaces is the content model's prediction for its
audio. The service keeps it here when the track is added, so that a restart puts the
track back into the index without running the model again; a restart behind a newer
model version finds no row for that version and re-embeds the stored audio (then stores
the new vector). Vectors are float32 little-endian bytes with their length beside them:
no pickle, and the same bytes on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import ForeignKey, Integer, LargeBinary, String, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from catalogue.models import MAX_ID_LENGTH, MAX_VERSION_LENGTH, Base, UTCDateTime, utc_now
from catalogue.repository import WRITE_OPTION, Catalogue

_IN_CHUNK = 900  # ids per IN (...) list, under SQLite's bound-parameter limit
_VECTOR_DTYPE = np.dtype("<f4")


class TrackVector(Base):
    __tablename__ = "track_vectors"

    track_id: Mapped[str] = mapped_column(
        String(MAX_ID_LENGTH), ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    model_version: Mapped[str] = mapped_column(String(MAX_VERSION_LENGTH), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


def put_track_vector(
    catalogue: Catalogue, track_id: str, model_version: str, vector: np.ndarray
) -> None:
    """Store (or replace) the `(dim,)` vector model `model_version` predicts for `track_id`."""
    array = np.ascontiguousarray(vector, dtype=_VECTOR_DTYPE)
    if array.ndim != 1 or not np.isfinite(array).all():
        raise ValueError(f"track {track_id!r}: a vector must be one finite (dim,) row")
    writing = catalogue.engine.execution_options(**{WRITE_OPTION: True})
    with writing.begin() as connection:
        connection.execute(
            delete(TrackVector).where(
                TrackVector.track_id == track_id, TrackVector.model_version == model_version
            )
        )
        connection.execute(
            insert(TrackVector).values(
                track_id=track_id,
                model_version=model_version,
                dim=array.size,
                vector=array.tobytes(),
                computed_at=utc_now(),
            )
        )


def track_vectors(
    catalogue: Catalogue, model_version: str, track_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """The stored `(dim,)` float32 vectors of `model_version` for those of `track_ids` that
    have one."""
    found: dict[str, np.ndarray] = {}
    with catalogue.engine.connect() as connection:
        for start in range(0, len(track_ids), _IN_CHUNK):
            chunk = list(track_ids[start : start + _IN_CHUNK])
            rows = connection.execute(
                select(TrackVector.track_id, TrackVector.dim, TrackVector.vector).where(
                    TrackVector.model_version == model_version, TrackVector.track_id.in_(chunk)
                )
            )
            for track_id, dim, blob in rows:
                vector = np.frombuffer(blob, dtype=_VECTOR_DTYPE)
                if vector.size == dim:
                    found[track_id] = vector.astype(np.float32)
    return found
