"""Where each song sits in a version's cf space: at its WMF factors, or at the CNN's prediction.

A few listeners' factors say more about those listeners than about the song, so a song
sits at its factors only with at least `min_listeners` listeners, or when it has no audio
to be placed by (factors beat nothing); a song folded in to a zero vector (all its
listeners were left out of WMF) has no factors at all. Every other song with audio sits
where the content model puts it, exactly like a cold track added later through the API.
The content model's predictions come here already checked (publish leaves out unusable
ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CfPlacement:
    """The cf space of a version: `ids` (n_cf,) object, the songs at their factors first
    (`n_at_factors` of them, in the order of the factors), then the songs at their
    prediction (in the order of the predictions); `vectors` (n_cf, F) float32, rows
    following `ids`."""

    ids: np.ndarray
    vectors: np.ndarray
    n_at_factors: int

    @property
    def predicted_ids(self) -> list[str]:
        """The songs placed by their audio (the version's cold songs)."""
        return self.ids[self.n_at_factors :].tolist()


def has_factors(factors: np.ndarray) -> np.ndarray:
    """(n,) bool over `factors` (n, F): the rows that are not all zero (a song folded in
    without a listener WMF kept has no factors)."""
    return np.linalg.norm(factors, axis=1) > 0


def place_songs(
    factor_ids: np.ndarray,
    factors: np.ndarray,
    listeners: np.ndarray,
    content_ids: np.ndarray,
    content_vectors: np.ndarray,
    min_listeners: int,
) -> CfPlacement:
    """Place the songs with WMF factors and the songs with audio in the cf space.

    `factor_ids` (n,) with `factors` (n, F) float32 (a zero row: no factors) and
    `listeners` (n,) int, each song's count of distinct listeners; `content_ids` (m,)
    with the content model's `content_vectors` (m, F) float32. Ids are unique within each
    list; a song may be in both, or in one only.
    """
    factor_ids = np.asarray(factor_ids, dtype=object)
    content_ids = np.asarray(content_ids, dtype=object)
    # membership by pandas' hash tables: numpy's isin sorts object arrays by Python
    # comparisons (109 s for 386k catalogue songs against 4.5k with audio)
    has_audio = pd.Index(factor_ids).isin(content_ids)
    at_factors = has_factors(factors) & ((listeners >= min_listeners) | ~has_audio)
    predicted = ~pd.Index(content_ids).isin(factor_ids[at_factors])
    return CfPlacement(
        ids=np.concatenate([factor_ids[at_factors], content_ids[predicted]]),
        vectors=np.concatenate([factors[at_factors], content_vectors[predicted]]).astype(
            np.float32, copy=False
        ),
        n_at_factors=int(at_factors.sum()),
    )


def usable_predictions(
    song_ids: list[str], vectors: np.ndarray
) -> tuple[list[str], np.ndarray, list[str]]:
    """Drop the songs whose predicted track vector (a row of `vectors` (n, d),
    `training.inference.track_vector`) is NaN, inf or all zeros: one bad recording is left
    out of the content space (named in the version manifest's `left_out`), not the cause of
    a failed publish. Returns the kept ids, their vectors and the ids left out."""
    from catalogue.vectors import usable_rows

    usable = usable_rows(vectors)
    if usable.all():
        return song_ids, vectors, []
    ids = np.asarray(song_ids, dtype=object)
    return ids[usable].tolist(), vectors[usable], ids[~usable].tolist()
