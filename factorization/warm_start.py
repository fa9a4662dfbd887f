"""Warm-starting WMF from an earlier model, and measuring how far the factors moved.

WMF's loss is unchanged by any rotation of the factor space (`XR`, `YR` with `R`
orthogonal give the same dot products and norms), so a fit from random factors lands at
an arbitrary rotation: yesterday's song vectors, user vectors and indexes would mean
nothing next to today's. Starting ALS from the earlier factors keeps the space where it
was: known users and songs start at their old rows, new ones are drawn as implicit
draws them. `factor_drift` then says how far the shared rows moved, in the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

INIT_SCALE = 0.01  # implicit's initialisation: uniform [0, 0.01)
DRIFT_SAMPLE = 2000  # rows compared by nearest neighbours: 2000 x 2000 cosines stay cheap
DRIFT_SEED = 0


@dataclass(frozen=True)
class WarmStart:
    """Factors of an earlier model (e.g. the registry's current version) to start WMF from.

    `user_factors (n_users, F)` and `song_factors (n_songs, F)` float32, rows following
    `user_ids` and `song_ids` (each id once). `label` (e.g. the version id) is recorded in
    the factorization manifest.
    """

    label: str
    user_ids: list[str]
    user_factors: np.ndarray
    song_ids: list[str]
    song_factors: np.ndarray

    def __post_init__(self) -> None:
        for subject, ids, factors in (
            ("user", self.user_ids, self.user_factors),
            ("song", self.song_ids, self.song_factors),
        ):
            if factors.ndim != 2 or factors.shape[0] != len(ids):
                raise ValueError(
                    f"warm start {self.label!r}: {subject}_factors {factors.shape}"
                    f" do not have one row per id ({len(ids)})"
                )
            if len(set(ids)) != len(ids):
                raise ValueError(f"warm start {self.label!r}: repeated {subject} ids")
        if self.user_factors.shape[1] != self.song_factors.shape[1]:
            raise ValueError(
                f"warm start {self.label!r}: user and song factors differ in width"
                f" ({self.user_factors.shape[1]} vs {self.song_factors.shape[1]})"
            )

    @property
    def n_factors(self) -> int:
        return int(self.user_factors.shape[1])


def _rows_from(
    initial: np.ndarray, ids: Sequence[str], old_ids: Sequence[str], old_factors: np.ndarray
) -> int:
    """Copy `old_factors` rows into `initial` where `ids` are known; return how many."""
    positions = pd.Index(old_ids).get_indexer(list(ids))
    known = positions >= 0
    initial[known] = old_factors[positions[known]]
    return int(known.sum())


def initial_factors(
    warm: WarmStart, user_ids: Sequence[str], song_ids: Sequence[str], seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Starting factors for a fit on `user_ids` x `song_ids`, and how many rows were known.

    Returns `(user_factors (len(user_ids), F), song_factors (len(song_ids), F))` float32 and
    `{"users_matched", "users_new", "songs_matched", "songs_new"}`. The random rows are
    implicit's own draw for `seed` (users, then songs, from one generator), so a warm start
    sharing no id starts exactly where a cold fit with that seed would.
    """
    rng = np.random.default_rng(seed)
    n_factors = warm.n_factors
    user_init = rng.random((len(user_ids), n_factors), dtype=np.float32) * INIT_SCALE
    song_init = rng.random((len(song_ids), n_factors), dtype=np.float32) * INIT_SCALE
    users_matched = _rows_from(user_init, user_ids, warm.user_ids, warm.user_factors)
    songs_matched = _rows_from(song_init, song_ids, warm.song_ids, warm.song_factors)
    counts = {
        "users_matched": users_matched,
        "users_new": len(user_ids) - users_matched,
        "songs_matched": songs_matched,
        "songs_new": len(song_ids) - songs_matched,
    }
    return user_init, song_init, counts


def _unit_rows(factors: np.ndarray) -> np.ndarray:
    return factors / np.linalg.norm(factors, axis=1, keepdims=True)


def _knn_overlap(old: np.ndarray, new: np.ndarray, k: int) -> float:
    """Mean share of each row's `k` cosine nearest neighbours (itself excluded) that the
    old and new factors agree on; `old`, `new`: (n, F) unit rows, n > k."""
    neighbours = []
    for factors in (old, new):
        similarity = factors @ factors.T
        np.fill_diagonal(similarity, -np.inf)
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        member = np.zeros(similarity.shape, dtype=bool)
        np.put_along_axis(member, top, True, axis=1)
        neighbours.append(member)
    return float((neighbours[0] & neighbours[1]).sum(axis=1).mean() / k)


def factor_drift(
    old_ids: Sequence[str],
    old_factors: np.ndarray,
    new_ids: Sequence[str],
    new_factors: np.ndarray,
    k: int = 10,
) -> dict[str, float | int | None]:
    """How far the rows shared by an old and a new factor matrix moved.

    `old_factors (len(old_ids), F)`, `new_factors (len(new_ids), F)`. Returns `n_shared`;
    `relative_change` = ||new - old||_F / ||old||_F over the shared rows; `mean_cosine` and
    `median_cosine` of cos(old_i, new_i) over the shared rows that are nonzero in both
    (`n_zero` counts the others: a song nobody kept listening to folds in to zero); and
    `knn_overlap`, the mean share of each such row's `k` cosine nearest neighbours (among
    at most `DRIFT_SAMPLE` seeded sampled rows) that both matrices agree on, which a
    rotation leaves at 1. Values that need rows that are not there are None.
    """
    positions = pd.Index(old_ids).get_indexer(list(new_ids))
    shared = positions >= 0
    dtype = np.result_type(old_factors, new_factors, np.float32)  # float32 stays float32
    old = np.asarray(old_factors, dtype=dtype)[positions[shared]]
    new = np.asarray(new_factors, dtype=dtype)[shared]
    old_norms, new_norms = np.linalg.norm(old, axis=1), np.linalg.norm(new, axis=1)
    nonzero = np.flatnonzero((old_norms > 0) & (new_norms > 0))
    cosines = np.einsum("nf,nf->n", old[nonzero], new[nonzero]) / (
        old_norms[nonzero] * new_norms[nonzero]
    )
    n = int(nonzero.size)
    knn = None
    if n > 1:
        sample = nonzero[np.random.default_rng(DRIFT_SEED).permutation(n)[:DRIFT_SAMPLE]]
        knn = _knn_overlap(
            _unit_rows(old[sample]), _unit_rows(new[sample]), min(k, sample.size - 1)
        )
    old_norm = float(np.linalg.norm(old_norms))
    return {
        "n_shared": int(shared.sum()),
        "n_zero": int(shared.sum()) - n,
        "mean_cosine": float(cosines.mean()) if n else None,
        "median_cosine": float(np.median(cosines)) if n else None,
        "relative_change": float(np.linalg.norm(new - old)) / old_norm if old_norm else None,
        "knn_overlap": knn,
    }
