"""Benchmark: `ranking.metrics.ranking_metrics` at Taste Profile scale, beside a per-user loop.

The nightly evaluation ranks every test song for every user with a test listen: about
1,000,000 users x 10,000 cold test songs x 50 factors. This generates such an instance
(Gaussian factors; each user with 1 + Poisson(2) test listens, songs drawn by a power-law
popularity 1/(rank + 50)), then times, in the same process:

- vectorised: `ranking_metrics` (chunked matmul, one sort per score row, batched binary
  search for the listened songs), over all users, with its peak traced memory;
- per-user loop: the obvious alternative, one user at a time: a score row,
  `sklearn.metrics.roc_auc_score`, and AP@k from an argsort and a Python sum. Timed on
  `--sample` users and extrapolated to all of them (checked to agree with the vectorised
  per-user values).

and prints wall and CPU seconds (CPU time is the steadier figure on a shared machine), the
extrapolated ratio loop / vectorised, and the process peak RSS.

    .venv/bin/python bench/evaluation.py --users 20000
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `evaluation` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from ranking.metrics import DEFAULT_K, ranking_metrics, score  # noqa: E402

MEAN_EXTRA_LISTENS = 2.0  # test listens per user: 1 + Poisson(2)
POPULARITY_OFFSET = 50


def taste_profile_instance(
    n_users: int, n_songs: int, n_factors: int, seed: int
) -> tuple[np.ndarray, np.ndarray, sp.csr_array]:
    """User factors `(n_users, F)`, song vectors `(n_songs, F)` float32, and the listens
    `(n_users, n_songs)` bool CSR: every user has at least one test listen (all are scored)."""
    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((n_users, n_factors), dtype=np.float32)
    song_vectors = rng.standard_normal((n_songs, n_factors), dtype=np.float32)
    listens = 1 + rng.poisson(MEAN_EXTRA_LISTENS, n_users)
    popularity = 1.0 / (np.arange(n_songs) + POPULARITY_OFFSET)
    song_of_rank = rng.permutation(n_songs)
    rows = np.repeat(np.arange(n_users), listens)
    columns = song_of_rank[rng.choice(n_songs, rows.size, p=popularity / popularity.sum())]
    relevance = sp.csr_array(
        (np.ones(rows.size, dtype=bool), (rows, columns)), shape=(n_users, n_songs)
    )
    relevance.sum_duplicates()
    return user_factors, song_vectors, relevance


def per_user_loop(
    user_factors: np.ndarray, song_vectors: np.ndarray, relevance: sp.csr_array, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """AP@k and AUC one user at a time: what one writes without thinking about scale."""
    aps, aucs = [], []
    song_vectors_t = song_vectors.T.astype(np.float64)
    for user in range(user_factors.shape[0]):
        listened = np.zeros(song_vectors.shape[0], dtype=bool)
        listened[relevance.indices[relevance.indptr[user] : relevance.indptr[user + 1]]] = True
        scores = score(user_factors[[user]], song_vectors_t)[0]  # the same rounding as ours
        aucs.append(roc_auc_score(listened, scores))
        top = listened[np.argsort(-scores, kind="stable")[:k]]
        hits, precision_sum = 0, 0.0
        for position, hit in enumerate(top, start=1):
            if hit:
                hits += 1
                precision_sum += hits / position
        aps.append(precision_sum / min(int(listened.sum()), k))
    return np.array(aps), np.array(aucs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--songs", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--sample", type=int, default=2_000, help="users timed in the loop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    user_factors, song_vectors, relevance = taste_profile_instance(
        args.users, args.songs, args.factors, args.seed
    )
    print(
        f"instance: {args.users:,} users x {args.songs:,} songs x {args.factors} factors,"
        f" {relevance.nnz:,} test listens ({relevance.nnz / args.users:.2f} per user),"
        f" built in {time.perf_counter() - start:.1f} s"
    )

    tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = ranking_metrics(user_factors, song_vectors, relevance, k=args.k)
    vectorised, vectorised_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"vectorised: {vectorised:.1f} s wall, {vectorised_cpu:.1f} s CPU"
        f" ({vectorised / args.users * 1e6:.1f} us/user),"
        f" peak traced memory {traced_peak / 2**20:.0f} MiB;"
        f" mAP@{args.k} {result.map:.6f}, AUC {result.auc:.4f}"
    )

    sample = min(args.sample, args.users)
    start, cpu_start = time.perf_counter(), time.process_time()
    loop_ap, loop_auc = per_user_loop(
        user_factors[:sample], song_vectors, relevance[:sample], args.k
    )
    loop = (time.perf_counter() - start) / sample * args.users
    loop_cpu = (time.process_time() - cpu_start) / sample * args.users
    agree = np.allclose(loop_ap, result.per_user_ap[:sample], rtol=0, atol=1e-12) and np.allclose(
        loop_auc, result.per_user_auc[:sample], rtol=0, atol=1e-12
    )
    print(
        f"per-user loop: {loop:.0f} s wall, {loop_cpu:.0f} s CPU, extrapolated from"
        f" {sample:,} users"
        f" ({loop / args.users * 1e6:.0f} us/user); per-user values agree: {agree}"
    )
    print(
        f"ratio loop / vectorised: {loop / vectorised:.1f}x wall,"
        f" {loop_cpu / vectorised_cpu:.1f}x CPU"
    )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"process peak RSS: {peak_rss:.2f} GiB")


if __name__ == "__main__":
    main()
