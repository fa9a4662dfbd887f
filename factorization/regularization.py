"""Choosing WMF's regularization on held-out listens (`--regularization auto`).

The right lambda depends on the confidence scale and on how dense the data is, so it is
measured, not assumed: a seeded sample of observed (user, song) pairs among the training
songs is hidden, WMF is fit on the rest once per value of a small log-spaced grid (with
fewer iterations than the final fit), and each fit is scored by sampled AUC: how often a
hidden pair outscores a random pair the user never played. The best value wins.

Sampled AUC instead of a full ranking metric keeps the score linear in the number of hidden
pairs, so it runs at Taste Profile scale (scoring every user against every song would not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from factorization.wmf import WMFEngine

REGULARIZATION_GRID = (1.0, 10.0, 100.0, 1000.0)
METRIC = "sampled_auc"


@dataclass(frozen=True)
class RegularizationSearch:
    """The grid tried, each value's held-out score, and the winner (kept in the manifest)."""

    chosen: float
    grid: list[float]
    scores: list[float]
    metric: str
    iterations: int
    n_heldout: int
    n_negatives: int
    seed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HeldOutPairs:
    """A confidence matrix with some observed pairs hidden: `train` keeps the rest.

    `users`, `songs`: `(n_heldout,)` int64 coordinates of the hidden pairs.
    """

    train: sp.csr_matrix
    users: np.ndarray
    songs: np.ndarray


def hold_out_pairs(
    user_song_confidence: sp.csr_matrix,
    fraction: float,
    max_pairs: int,
    rng: np.random.Generator,
) -> HeldOutPairs:
    """Hide `min(round(fraction * nnz), max_pairs)` observed pairs, drawn uniformly among the
    pairs of users with at least two, so that (almost) every user keeps something to fit."""
    matrix = sp.csr_matrix(user_song_confidence)
    row_lengths = np.diff(matrix.indptr)
    entry_user = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), row_lengths)
    candidates = np.flatnonzero(row_lengths[entry_user] >= 2)
    n_pairs = min(round(fraction * matrix.nnz), max_pairs, candidates.size)
    hidden = np.sort(rng.choice(candidates, size=n_pairs, replace=False))
    keep = np.ones(matrix.nnz, dtype=bool)
    keep[hidden] = False
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(entry_user[keep], minlength=matrix.shape[0]), out=indptr[1:])
    train = sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)
    return HeldOutPairs(
        train=train, users=entry_user[hidden], songs=matrix.indices[hidden].astype(np.int64)
    )


def sample_negatives(
    observed: sp.csr_matrix,
    users: np.ndarray,
    n_negatives: int,
    rng: np.random.Generator,
    max_rounds: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """`n_negatives` songs per user in `users`, uniform among songs that user never played.

    Returns `(songs (len(users), n_negatives) int64, valid mask of the same shape)`: draws
    that still hit an observed pair after `max_rounds` redraws are masked out.
    """
    observed = sp.csr_matrix(observed)
    observed.sum_duplicates()
    n_songs = observed.shape[1]
    rows = np.repeat(users, n_negatives)
    songs = rng.integers(0, n_songs, size=rows.size)
    clash = np.asarray(observed[rows, songs]).ravel() != 0
    for _ in range(max_rounds):
        if not clash.any():
            break
        redraw = np.flatnonzero(clash)
        songs[redraw] = rng.integers(0, n_songs, size=redraw.size)
        clash[redraw] = np.asarray(observed[rows[redraw], songs[redraw]]).ravel() != 0
    shape = (users.size, n_negatives)
    return songs.reshape(shape), ~clash.reshape(shape)


def sampled_auc(
    user_factors: np.ndarray,
    song_factors: np.ndarray,
    users: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
    valid: np.ndarray,
    chunk: int = 8192,
) -> float:
    """Fraction of (positive, negative) pairs of the same user ranked right (ties count half).

    `users`, `positives`: `(n,)`; `negatives`, `valid`: `(n, k)`. Chunked over `n` so the
    gathered `(chunk, k, F)` song vectors stay small.
    """
    right = 0.0
    counted = 0
    for start in range(0, users.size, chunk):
        stop = start + chunk
        user_vectors = user_factors[users[start:stop]]
        positive = np.einsum("nf,nf->n", user_vectors, song_factors[positives[start:stop]])
        negative = np.einsum("nf,nkf->nk", user_vectors, song_factors[negatives[start:stop]])
        mask = valid[start:stop]
        difference = (positive[:, None] - negative)[mask]
        right += float(np.count_nonzero(difference > 0) + 0.5 * np.count_nonzero(difference == 0))
        counted += int(mask.sum())
    return right / counted if counted else 0.5


def choose_regularization(
    user_song_confidence: sp.csr_matrix,
    make_engine: Callable[[float, int], WMFEngine],
    grid: Sequence[float] = REGULARIZATION_GRID,
    iterations: int = 5,
    holdout_fraction: float = 0.1,
    max_heldout: int = 200_000,
    n_negatives: int = 20,
    seed: int = 0,
    on_value: Callable[[float, float], None] | None = None,
) -> RegularizationSearch:
    """Fit `make_engine(value, iterations)` on the matrix with held-out pairs hidden, for each
    grid value; return the value with the best sampled AUC (the smallest among equals).

    `user_song_confidence`: `(n_users, n_songs)` confidences of the training songs.
    `on_value(value, score)` is called after each fit, for progress.
    """
    if not grid:
        raise ValueError("regularization grid is empty")
    rng = np.random.default_rng(seed)
    held_out = hold_out_pairs(user_song_confidence, holdout_fraction, max_heldout, rng)
    if held_out.users.size == 0:
        raise ValueError("too few listens to hold any out for choosing the regularization")
    negatives, valid = sample_negatives(user_song_confidence, held_out.users, n_negatives, rng)
    scores = []
    for value in grid:
        user_factors, song_factors = make_engine(float(value), iterations).fit(held_out.train)
        score = sampled_auc(
            user_factors, song_factors, held_out.users, held_out.songs, negatives, valid
        )
        scores.append(score)
        if on_value is not None:
            on_value(float(value), score)
    return RegularizationSearch(
        chosen=float(grid[int(np.argmax(scores))]),
        grid=[float(value) for value in grid],
        scores=scores,
        metric=METRIC,
        iterations=iterations,
        n_heldout=int(held_out.users.size),
        n_negatives=n_negatives,
        seed=seed,
    )
