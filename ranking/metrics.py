"""Cold-start ranking metrics: the paper's mAP@500 and AUC, and the top-k metrics that
recommender comparisons read (recall@k, precision@k, NDCG@k), over the test songs.

Every user with at least one listen among the test songs ranks *all* test songs by
`user_factors[u] · song_vectors[s]`; the listened ones are the relevant items.

- AP@k = (sum of precision@i at each hit i within the top k) / min(#relevant, k);
  mAP@k is its mean over users.
- AUC = probability that a listened song scores above a non-listened one, ties counting 1/2
  (the Mann-Whitney statistic, equal to `sklearn.metrics.roc_auc_score` per user), averaged
  over users.
- At each cutoff c (`CUTOFFS`: 10, 50, 500), with hits@c the relevant songs in the top c:
  recall@c = hits@c / #relevant, precision@c = hits@c / c (RecBole's and Microsoft
  Recommenders' definitions), NDCG@c = DCG@c / IDCG@c with binary gains,
  DCG@c = sum over hits in the top c of 1 / log2(1 + position), IDCG@c the DCG of the
  min(#relevant, c) relevant songs ranked first (`sklearn.metrics.ndcg_score` per user).
  Each is averaged over users.

Ties in the AP and top-k orderings are broken **pessimistically**: among songs with equal
scores, the non-listened ones rank first. That is deterministic, independent of the song
order and of the chunking, and it gives a degenerate model no credit: a model that scores
every song the same (say, zero vectors) gets the worst AP its ties allow, not whatever the
catalogue order happens to give. With continuous scores there are no ties and the rule never acts.

The computation is vectorised and chunked over users, so that 1M users x 10k test songs run
in minutes with bounded memory: a chunk of users is scored with one matmul, each score row is
sorted once, and the position of every listened song among all songs comes from a batched
binary search in its sorted row (no per-user Python loop, no argsort of the whole row).
Only numpy and scipy are imported, so training can reuse it for validation mAP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

DEFAULT_K = 500
CUTOFFS = (10, 50, 500)
TOP_K_METRICS = ("recall", "precision", "ndcg")
EXPECTED_RANDOM_AUC = 0.5
CHUNK_ELEMENTS = 1 << 22
"""Scores per chunk when `chunk_users` is not given: a (chunk, n_songs) float64 product and
its float32 rounding, about 48 MiB; large enough that the matmul and the sort run at full
speed."""


@dataclass(frozen=True)
class RankingMetrics:
    """Metrics of one set of song vectors against one set of users.

    `per_user_ap` and `per_user_auc` are `(n_users,)` float64, one entry per evaluated user
    (a user with at least one relevant song) in row order of the relevance matrix;
    `per_user_auc` is NaN for a user who listened to every song (no pair to compare), and
    `auc` averages over the others. `n_users_without_relevant` counts the excluded rows.
    `per_user_top_k[metric]` (`TOP_K_METRICS`) is `(n_users, len(cutoffs))` float64, one
    column per cutoff; `top_k()` gives their means by name ("recall@10", ...).
    """

    map: float
    auc: float
    n_users: int
    per_user_ap: np.ndarray
    per_user_auc: np.ndarray
    n_users_without_relevant: int
    cutoffs: tuple[int, ...] = ()
    per_user_top_k: dict[str, np.ndarray] = field(default_factory=dict)

    def top_k(self) -> dict[str, float]:
        """Mean recall@c, precision@c and NDCG@c per cutoff c, keyed "recall@10" etc."""
        return {
            f"{metric}@{cutoff}": float(self.per_user_top_k[metric][:, column].mean())
            for metric in TOP_K_METRICS
            for column, cutoff in enumerate(self.cutoffs)
        }


def _as_factors(name: str, factors: np.ndarray) -> np.ndarray:
    factors = np.ascontiguousarray(factors, dtype=np.float32)
    if factors.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, n_factors), got shape {factors.shape}")
    if not np.isfinite(factors).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return factors


def _as_relevance(relevance: sp.spmatrix | sp.sparray, shape: tuple[int, int]) -> sp.csr_array:
    """Boolean CSR with sorted, unique indices and no stored zeros."""
    if relevance.shape != shape:
        raise ValueError(
            f"relevance has shape {relevance.shape}, expected (n_users, n_songs) {shape}"
        )
    matrix = sp.csr_array(relevance, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return sp.csr_array(
        (np.ones(matrix.nnz, dtype=bool), matrix.indices, matrix.indptr), shape=shape
    )


def _count_below(
    sorted_rows: np.ndarray, rows: np.ndarray, queries: np.ndarray, inclusive: bool
) -> np.ndarray:
    """For each query, how many values of its row of `sorted_rows` are `<` (or `<=`) it.

    `sorted_rows (n, n_songs)` ascending along rows; `rows`, `queries` `(n_queries,)`.
    A branchless binary search run on all queries at once, ~log2(n_songs) vectorised steps,
    where numpy's `searchsorted` would need one call per row.
    """
    below = np.less_equal if inclusive else np.less
    low = np.zeros(queries.size, dtype=np.int64)
    size = sorted_rows.shape[1]
    while size > 1:
        half = size // 2
        low += np.where(below(sorted_rows[rows, low + half], queries), half, 0)
        size -= half
    return low + below(sorted_rows[rows, low], queries)


def score(user_factors: np.ndarray, song_vectors_t: np.ndarray) -> np.ndarray:
    """Scores `(n_users, n_songs)` float32 of float32 `user_factors (n_users, F)` against
    `song_vectors_t (F, n_songs)` float64, accumulated in float64 and rounded once.

    A float32 matmul gives last-bit differences with the shape of the chunk and the BLAS
    build, enough to flip near-ties (AUC moved by one pair in ~1 user of 1000 in
    `bench/evaluation.py`). float32 products are exact in float64 and the sum's error stays
    far below float32 resolution, so these scores are the same for any chunking and on any
    machine, and recomputing a report elsewhere gives its numbers.
    """
    return (user_factors.astype(np.float64) @ song_vectors_t).astype(np.float32)


def _discounts(depth: int) -> np.ndarray:
    """`(depth + 1,)` float64: entry i is the DCG of i hits ranked first,
    sum over j <= i of 1 / log2(1 + j) (entry 0 is 0)."""
    return np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, depth + 2)))]


def _top_k(
    position: np.ndarray, rows: np.ndarray, counts: np.ndarray, cutoffs: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Recall, precision and NDCG at each cutoff, `(n_chunk, len(cutoffs))` float64 each,
    from the 1-based `position` of every relevant entry (rows as in `_chunk_metrics`)."""
    n_chunk = counts.size
    ideal = _discounts(max(cutoffs, default=0))
    gain = 1.0 / np.log2(1.0 + position)
    shape = (n_chunk, len(cutoffs))
    recall, precision, ndcg = np.empty(shape), np.empty(shape), np.empty(shape)
    for column, cutoff in enumerate(cutoffs):
        inside = position <= cutoff
        hits = np.bincount(rows, weights=inside, minlength=n_chunk)
        recall[:, column] = hits / counts
        precision[:, column] = hits / cutoff
        dcg = np.bincount(rows, weights=np.where(inside, gain, 0.0), minlength=n_chunk)
        ndcg[:, column] = dcg / ideal[np.minimum(counts, cutoff)]
    return {"recall": recall, "precision": precision, "ndcg": ndcg}


def _chunk_metrics(
    scores: np.ndarray,
    rows: np.ndarray,
    columns: np.ndarray,
    counts: np.ndarray,
    k: int,
    cutoffs: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """AP@k, AUC and the top-k metrics of each user of one chunk; sorts `scores` in place.

    `scores (n_chunk, n_songs)` float32; the relevant entries are `(rows[j], columns[j])`,
    rows ascending (CSR order); `counts (n_chunk,)` relevant songs per row, all >= 1.
    Returns `(ap, auc, top_k)`: `(n_chunk,)` float64 each, and `_top_k`'s arrays.
    """
    n_chunk, n_songs = scores.shape
    relevant_scores = scores[rows, columns]

    # Each user's relevant songs best first, and their tie groups (equal scores).
    order = np.lexsort((-relevant_scores, rows))
    relevant_scores = relevant_scores[order]
    first_of_user = np.repeat(np.cumsum(counts) - counts, counts)
    index = np.arange(rows.size)
    hit = index - first_of_user + 1  # 1-based rank among the user's relevant songs
    new_group = np.r_[True, (rows[1:] != rows[:-1]) | (relevant_scores[1:] != relevant_scores[:-1])]
    group = np.cumsum(new_group) - 1
    group_first = np.flatnonzero(new_group)
    group_last = np.r_[group_first[1:] - 1, rows.size - 1]
    relevant_above = group_first[group] - first_of_user
    relevant_at_or_above = group_last[group] - first_of_user + 1

    # Where each relevant song falls among all songs of its row.
    scores.sort(axis=1)
    songs_below = _count_below(scores, rows, relevant_scores, inclusive=False)
    songs_at_or_below = _count_below(scores, rows, relevant_scores, inclusive=True)
    irrelevant_at_or_above = (n_songs - songs_below) - relevant_at_or_above
    irrelevant_above = (n_songs - songs_at_or_below) - relevant_above

    # AP@k: with pessimistic ties the h-th hit sits at h + (non-listened songs at or above it).
    position = hit + irrelevant_at_or_above
    precision = np.where(position <= k, hit / position, 0.0)
    ap = np.bincount(rows, weights=precision, minlength=n_chunk) / np.minimum(counts, k)

    # AUC: non-listened songs strictly below each hit, plus half of those tied with it.
    n_irrelevant = n_songs - counts
    wins = (n_irrelevant[rows] - irrelevant_at_or_above) + 0.5 * (
        irrelevant_at_or_above - irrelevant_above
    )
    pairs = (counts * n_irrelevant).astype(np.float64)
    pairs[pairs == 0] = np.nan
    auc = np.bincount(rows, weights=wins, minlength=n_chunk) / pairs
    return ap, auc, _top_k(position, rows, counts, cutoffs)


def ranking_metrics(
    user_factors: np.ndarray,
    song_vectors: np.ndarray,
    relevance: sp.spmatrix | sp.sparray,
    k: int = DEFAULT_K,
    chunk_users: int | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    cutoffs: tuple[int, ...] = CUTOFFS,
) -> RankingMetrics:
    """mAP@k, AUC and recall, precision and NDCG at `cutoffs` of ranking all songs by
    `user_factors @ song_vectors.T`.

    `user_factors (n_users, F)` and `song_vectors (n_songs, F)` are scored in float32;
    `relevance (n_users, n_songs)` sparse, a stored nonzero meaning "listened". Rows without
    a relevant song are excluded (counted in `n_users_without_relevant`). Users are scored
    `chunk_users` at a time (default: about `CHUNK_ELEMENTS` scores per chunk), so memory
    stays bounded whatever the number of users; the result does not depend on the chunking
    (see `score`).
    `on_chunk(users done, users in all)` is called after each chunk (for a progress bar).
    """
    user_factors = _as_factors("user_factors", user_factors)
    song_vectors = _as_factors("song_vectors", song_vectors)
    if user_factors.shape[1] != song_vectors.shape[1]:
        raise ValueError(
            f"user_factors have {user_factors.shape[1]} factors,"
            f" song_vectors {song_vectors.shape[1]}"
        )
    if k < 1 or any(cutoff < 1 for cutoff in cutoffs):
        raise ValueError(f"k and the cutoffs must be >= 1, got {k} and {cutoffs}")
    n_songs = song_vectors.shape[0]
    relevance = _as_relevance(relevance, (user_factors.shape[0], n_songs))
    counts = np.diff(relevance.indptr)
    users = np.flatnonzero(counts > 0)
    if users.size == 0:
        raise ValueError("no user has a relevant song: nothing to evaluate")
    chunk_users = chunk_users or max(1, CHUNK_ELEMENTS // max(n_songs, 1))
    if chunk_users < 1:
        raise ValueError(f"chunk_users must be >= 1, got {chunk_users}")

    ap = np.empty(users.size, dtype=np.float64)
    auc = np.empty(users.size, dtype=np.float64)
    top_k = {metric: np.empty((users.size, len(cutoffs))) for metric in TOP_K_METRICS}
    song_vectors_t = np.ascontiguousarray(song_vectors.T, dtype=np.float64)
    for start in range(0, users.size, chunk_users):
        block = users[start : start + chunk_users]
        block_counts = counts[block]
        columns = relevance[block].indices
        rows = np.repeat(np.arange(block.size), block_counts)
        scores = score(user_factors[block], song_vectors_t)
        chunk = slice(start, start + block.size)
        ap[chunk], auc[chunk], chunk_top_k = _chunk_metrics(
            scores, rows, columns, block_counts, k, cutoffs
        )
        for metric, values in chunk_top_k.items():
            top_k[metric][chunk] = values
        if on_chunk is not None:
            on_chunk(start + block.size, users.size)
    return RankingMetrics(
        map=float(ap.mean()),
        auc=float(np.nanmean(auc)) if not np.isnan(auc).all() else float("nan"),
        n_users=int(users.size),
        per_user_ap=ap,
        per_user_auc=auc,
        n_users_without_relevant=int(counts.size - users.size),
        cutoffs=tuple(cutoffs),
        per_user_top_k=top_k,
    )


def expected_random_map(n_relevant: np.ndarray, n_songs: int, k: int = DEFAULT_K) -> float:
    """mAP@k expected from a uniformly random ranking: the floor a model must clear.

    `n_relevant (n_users,)` relevant songs per user (users with none are left out). Hit i
    of the ranking is relevant with probability R/N, and given that, the expected precision
    there is (1 + (i-1)(R-1)/(N-1)) / i; summing over i <= k gives the closed form
    E[AP@k] = (R/N) (H_k + (R-1)/(N-1) (k - H_k)) / min(R, k), H_k the harmonic number
    (k capped at N). The expected random AUC is `EXPECTED_RANDOM_AUC`.
    """
    relevant = np.asarray(n_relevant, dtype=np.float64)
    relevant = relevant[relevant > 0]
    if relevant.size == 0:
        raise ValueError("no user has a relevant song")
    if relevant.max() > n_songs:
        raise ValueError(f"a user has {relevant.max():.0f} relevant songs of only {n_songs}")
    depth = min(k, n_songs)
    harmonic = float(np.sum(1.0 / np.arange(1, depth + 1)))
    co_relevant = (relevant - 1) / (n_songs - 1) if n_songs > 1 else np.zeros_like(relevant)
    expected = (relevant / n_songs) * (harmonic + co_relevant * (depth - harmonic))
    return float(np.mean(expected / np.minimum(relevant, k)))


def expected_random_top_k(
    n_relevant: np.ndarray, n_songs: int, cutoffs: tuple[int, ...] = CUTOFFS
) -> dict[str, float]:
    """Recall, precision and NDCG at each cutoff expected from a uniformly random ranking,
    keyed as `RankingMetrics.top_k`. Position i holds a relevant song with probability R/N,
    so E[hits@c] = min(c, N) R/N and E[DCG@c] = (R/N) sum over i <= min(c, N) of
    1 / log2(1 + i); each divided as its metric divides, then averaged over users.
    """
    relevant = np.asarray(n_relevant, dtype=np.float64)
    relevant = relevant[relevant > 0]
    if relevant.size == 0:
        raise ValueError("no user has a relevant song")
    discounts = _discounts(max(cutoffs, default=0))
    share = relevant / n_songs
    expected: dict[str, float] = {}
    for metric in TOP_K_METRICS:
        for cutoff in cutoffs:
            depth = min(cutoff, n_songs)
            if metric == "recall":
                value = depth / n_songs
            elif metric == "precision":
                value = float(np.mean(share * depth / cutoff))
            else:
                ideal = discounts[np.minimum(relevant, cutoff).astype(np.int64)]
                value = float(np.mean(share * discounts[depth] / ideal))
            expected[f"{metric}@{cutoff}"] = value
    return expected
