"""Benchmark: our WMF fit path against implicit's bare ALS, on a Taste Profile sized matrix.

Generates a play-count matrix of the Taste Profile's shape (1,019,318 users x 384,546 songs,
48,373,586 (user, song) pairs; `--scale` shrinks all three) with power-law song popularity
and user activity, straight into CSR. Then, in the same process and on the same matrix:

- bare: `implicit.cpu.als.AlternatingLeastSquares(...).fit` on a matrix already holding the
  confidences (the least a user of implicit has to run);
- ours: `factorization.confidence.confidence` on the play counts + `ImplicitALSEngine.fit`,

and prints seconds, seconds per iteration and peak traced memory of each, and the overhead
ratio ours / bare (target <= 1.1).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/wmf.py --scale 0.01 --iterations 3
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from factorization.confidence import confidence  # noqa: E402
from factorization.wmf import ImplicitALSEngine  # noqa: E402

TASTE_PROFILE = (1_019_318, 384_546, 48_373_586)  # users, songs, (user, song) pairs
MIN_SONGS_PER_USER = 10  # the Taste Profile keeps users with at least 10 songs
MAX_SONGS_PER_USER = 5_000  # its most active user has about 4,400
POPULARITY_OFFSET = 50  # p(song of rank k) ~ 1 / (k + 50): the top song has ~110k listeners


def _user_activity(raw: np.ndarray, low: int, high: int, total: int) -> np.ndarray:
    """`clip(low + floor(c * raw), ., high)` with the largest scale `c` whose sum is <= `total`
    (bisection: the cap makes the sum nonlinear in `c`)."""

    def activity(scale: float) -> np.ndarray:
        return np.minimum(low + np.floor(scale * raw).astype(np.int64), high)

    below, above = 0.0, 1.0
    while activity(above).sum() <= total and above < 1e12:
        below, above = above, above * 2
    for _ in range(60):
        middle = (below + above) / 2
        below, above = (middle, above) if activity(middle).sum() <= total else (below, middle)
    return activity(below)


def taste_profile_like(scale: float, seed: int) -> sp.csr_matrix:
    """Play counts `(n_users, n_songs)` float32 CSR with exactly `nnz` distinct pairs.

    Each user gets a power-law number of distinct songs (at least 10), each song drawn by
    popularity ~ 1/(rank + 50) (ids shuffled); pairs drawn twice are redrawn until every
    user has its count. Play counts are Zipf(2.2), capped at 10,000.
    """
    n_users, n_songs, nnz = (max(1, round(size * scale)) for size in TASTE_PROFILE)
    rng = np.random.default_rng(seed)
    low = min(MIN_SONGS_PER_USER, nnz // n_users)
    high = min(MAX_SONGS_PER_USER, n_songs // 2)
    activity = _user_activity(rng.pareto(1.5, n_users), low, high, nnz)
    # hand the pairs that flooring left over to users below the cap, one each
    shortfall = nnz - int(activity.sum())
    activity[rng.choice(np.flatnonzero(activity < high), size=shortfall, replace=False)] += 1

    popularity = 1.0 / (np.arange(n_songs) + POPULARITY_OFFSET)
    cumulative = np.cumsum(popularity / popularity.sum())
    song_of_rank = rng.permutation(n_songs)

    keys = np.empty(0, dtype=np.int64)  # user * n_songs + song, sorted, distinct
    missing = activity.copy()
    while missing.any():
        users = np.repeat(np.arange(n_users, dtype=np.int64), missing)
        ranks = np.minimum(np.searchsorted(cumulative, rng.random(users.size)), n_songs - 1)
        drawn = np.unique(users * n_songs + song_of_rank[ranks])
        position = np.minimum(np.searchsorted(keys, drawn), max(keys.size - 1, 0))
        fresh = drawn[keys[position] != drawn] if keys.size else drawn
        # two sorted runs: the stable sort (timsort for int64) merges them in linear time
        keys = np.sort(np.concatenate([keys, fresh]), kind="stable")
        missing -= np.bincount(fresh // n_songs, minlength=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(activity, out=indptr[1:])
    indices = (keys % n_songs).astype(np.int32)
    plays = np.minimum(rng.zipf(2.2, keys.size), 10_000).astype(np.float32)
    return sp.csr_matrix((plays, indices, indptr), shape=(n_users, n_songs))


@dataclass
class Measurement:
    name: str
    seconds: float
    iteration_seconds: list[float]
    peak_bytes: int

    @property
    def per_iteration(self) -> float:
        """Mean of iterations 2..n (the first also carries the transpose and initialisation)."""
        steady = self.iteration_seconds[1:] or self.iteration_seconds
        return float(np.mean(steady))


def measure(name: str, fit: Callable[[Callable[[], None]], object]) -> Measurement:
    """Time `fit(tick)` (it calls `tick()` after each iteration) and trace its peak memory."""
    marks: list[float] = []
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    fit(lambda: marks.append(time.perf_counter()))
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    ticks = np.diff([start, *marks]).tolist()
    return Measurement(name, seconds, ticks, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the Taste Profile")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--regularization", type=float, default=100.0)
    parser.add_argument("--threads", type=int, default=0, help="implicit threads (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    plays = taste_profile_like(args.scale, args.seed)
    listeners = np.bincount(plays.indices, minlength=plays.shape[1])
    print(
        f"matrix {plays.shape[0]:,} users x {plays.shape[1]:,} songs, {plays.nnz:,} pairs"
        f" (top song {listeners.max():,} listeners, most active user"
        f" {np.diff(plays.indptr).max():,} songs), generated in {time.perf_counter() - start:.1f} s"
    )
    prepared = plays.copy()
    prepared.data = confidence(plays.data)

    def bare(tick: Callable[[], None]) -> object:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=args.factors,
            regularization=args.regularization,
            alpha=1.0,
            iterations=args.iterations,
            random_state=args.seed,
            num_threads=args.threads,
        )
        model.fit(prepared, show_progress=False, callback=lambda *_: tick())
        return model

    def ours(tick: Callable[[], None]) -> object:
        weighted = sp.csr_matrix((confidence(plays.data), plays.indices, plays.indptr), plays.shape)
        engine = ImplicitALSEngine(
            args.factors, args.regularization, args.iterations, args.seed, args.threads
        )
        return engine.fit(weighted, on_iteration=lambda *_: tick())

    # warm up: imports, OpenMP thread start, page faults of the BLAS kernels
    ImplicitALSEngine(args.factors, args.regularization, 1, args.seed, args.threads).fit(
        prepared[: min(1000, prepared.shape[0])]
    )
    results = [measure("implicit bare fit", bare), measure("ours: confidence + engine", ours)]
    print(f"{'':28}{'total s':>10}{'s/iter':>10}{'peak MiB':>10}   per iteration")
    for result in results:
        ticks = " ".join(f"{tick:.1f}" for tick in result.iteration_seconds)
        print(
            f"{result.name:28}{result.seconds:10.1f}{result.per_iteration:10.2f}"
            f"{result.peak_bytes / 2**20:10.0f}   {ticks}"
        )
    bare_result, ours_result = results
    print(
        f"overhead ours / bare: total {ours_result.seconds / bare_result.seconds:.3f},"
        f" per iteration {ours_result.per_iteration / bare_result.per_iteration:.3f},"
        f" peak memory {ours_result.peak_bytes / bare_result.peak_bytes:.3f}"
        f"   (process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
