"""The track vectors of tracks added by audio, per model version (table `track_vectors`).

A cold track's place in both index spaces comes from the content model's track vector for
its audio (`training.inference.track_vector`: its content embedding and predicted factors
in one). The service keeps it here when the track is added, so that a restart puts the
track back into the index without running the model again; a restart behind a newer
model version finds no row for that version and re-embeds the stored audio (then stores
the new vector). Vectors are float32 little-endian bytes with their length beside them:
no pickle, and the same bytes on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ForeignKey, Integer, LargeBinary, String, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from catalogue.models import (
    MAX_ID_LENGTH,
    MAX_VERSION_LENGTH,
    WRITE_OPTION,
    Base,
    UTCDateTime,
    utc_now,
)

if TYPE_CHECKING:
    from catalogue.repository import Catalogue

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


def usable_rows(vectors: np.ndarray) -> np.ndarray:
    """(n,) bool: which rows of `vectors` (n, dim) an index can take: finite, and not all
    zeros (no direction for cosine). The one rule on vector values: the service's start-up,
    its follower and the nightly run's publish all apply it."""
    return np.isfinite(vectors).all(axis=1) & (vectors != 0).any(axis=1)


def vector_problem(vector: np.ndarray, dim: int) -> str | None:
    """Why a stored or predicted vector cannot enter an index of `dim` dimensions (a wrong
    shape, NaN or inf, all zeros), or None if it can (`usable_rows` for one vector)."""
    if vector.shape != (dim,):
        return f"shape {vector.shape} is not ({dim},)"
    if not usable_rows(vector[np.newaxis])[0]:
        return "holds NaN or infinite values" if not np.isfinite(vector).all() else "is all zeros"
    return None


def vector_row(track_id: str, model_version: str, vector: np.ndarray) -> dict[str, Any]:
    """The `track_vectors` row of a `(dim,)` finite vector; `ValueError` for another."""
    array = np.ascontiguousarray(vector, dtype=_VECTOR_DTYPE)
    if array.ndim != 1 or not np.isfinite(array).all():
        raise ValueError(f"track {track_id!r}: a vector must be one finite (dim,) row")
    return {
        "track_id": track_id,
        "model_version": model_version,
        "dim": array.size,
        "vector": array.tobytes(),
        "computed_at": utc_now(),
    }


def put_track_vector(
    catalogue: Catalogue, track_id: str, model_version: str, vector: np.ndarray
) -> None:
    """Store (or replace) the `(dim,)` vector model `model_version` predicts for `track_id`."""
    row = vector_row(track_id, model_version, vector)
    writing = catalogue.engine.execution_options(**{WRITE_OPTION: True})
    with writing.begin() as connection:
        connection.execute(
            delete(TrackVector).where(
                TrackVector.track_id == track_id, TrackVector.model_version == model_version
            )
        )
        connection.execute(insert(TrackVector).values(**row))


def track_vectors(
    catalogue: Catalogue, model_version: str, track_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """The stored float32 vectors of `model_version` for those of `track_ids` that have one,
    as stored: check each with `vector_problem` before use (a damaged row comes back with
    the wrong shape, or NaN)."""
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
                whole = len(blob) // _VECTOR_DTYPE.itemsize * _VECTOR_DTYPE.itemsize
                vector = np.frombuffer(blob[:whole], dtype=_VECTOR_DTYPE).astype(np.float32)
                found[track_id] = vector if vector.size == dim else vector[:0]
    return found
