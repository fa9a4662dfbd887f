"""Benchmark the IVF-PQ kind for 10M+ catalogues, one index and sharded under a memory budget.

For one size: clustered 50-d song vectors (`bench.index.song_vectors`, generated in
chunks), a query sample from the same mixture, exact ground truth by brute force over
chunks of the catalogue (a running top-k, so no (queries x n) matrix is held), then per
metric and per layout (one shard; `--shards` shards forced by a budget):

- build time: train (on `--train-sample` seeded vectors) + add, and the index's memory:
  the estimate the budget is checked against, and the process RSS it adds;
- for each nprobe: recall@10 against exact, single-query latency p50/p99 on one thread
  through `VectorIndex.search` (id mapping included); the sharded layout searches its
  shards in parallel threads (`faiss.IndexShards`), so its latency is measured as served.

    nice -n 10 .venv/bin/python -m bench.index_ivfpq --size 10000000 --shards 4
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from bench.index import DIM, K, describe, latencies_ms, recall, rss_bytes, song_vectors
from index import ivfpq
from index.settings import IndexSettings
from index.vector_index import VectorIndex

CHUNK = 1_000_000
# Rows of the catalogue scored at once for the ground truth: (n_queries, TRUTH_CHUNK) floats.
TRUTH_CHUNK = 200_000


def catalogue(n: int) -> np.ndarray:
    """`(n, DIM)` float32, chunk by chunk (each chunk its own seed, so memory stays ~n x DIM)."""
    out = np.empty((n, DIM), np.float32)
    for number, start in enumerate(range(0, n, CHUNK)):
        out[start : start + CHUNK] = song_vectors(min(CHUNK, n - start), seed=100 + number)
    return out


def exact_top_k(stored: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Positions `(n_queries, K)` of the exact top-k by inner product, over chunks."""
    best_scores = np.full((len(queries), K), -np.inf, np.float32)
    best = np.zeros((len(queries), K), np.int64)
    for start in range(0, len(stored), TRUTH_CHUNK):
        scores = queries @ stored[start : start + TRUTH_CHUNK].T
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        positions = np.concatenate([best, top + start], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best = np.take_along_axis(positions, keep, axis=1)
    return best


def bench_layout(
    name: str,
    ids: list[str],
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    metric: str,
    settings: IndexSettings,
    nprobes: list[int],
) -> list[dict]:
    before = rss_bytes()
    start = time.perf_counter()
    index = VectorIndex.build(ids, vectors, metric, settings=settings)  # type: ignore[arg-type]
    build_s = time.perf_counter() - start
    shards = index.shards
    assert shards is not None
    build = {
        "build_s": build_s,
        "shards": shards.n_shards,
        "estimate_gib": sum(shards.shard_bytes()) / 2**30,
        "largest_shard_gib": max(shards.shard_bytes()) / 2**30,
        "rss_gib": (rss_bytes() - before) / 2**30,
    }
    print(
        f"[{metric}] {name}: build {build_s:.0f} s, {shards.n_shards} shard(s), estimate "
        f"{build['estimate_gib']:.2f} GiB (largest {build['largest_shard_gib']:.2f}), "
        f"+{build['rss_gib']:.2f} GiB RSS (index + id maps)",
        flush=True,
    )
    rows = []
    truth_ids = np.asarray(ids)[truth]
    for nprobe in nprobes:
        shards.nprobe = nprobe
        found, _ = index.search(queries, K)
        latency = latencies_ms(lambda q, i=index: i.search(q, K), queries)
        row = {"metric": metric, "layout": name, "nprobe": nprobe, **latency, **build}
        row["recall@10"] = recall(found, truth_ids)
        print(f"  nprobe={nprobe:>4}: recall@10 {row['recall@10']:.4f}  {describe(latency)}")
        rows.append(row)
    return rows


def budget_for(args: argparse.Namespace, settings: IndexSettings) -> int:
    """A budget that holds `args.size / args.shards` vectors a shard: their codes, ids and
    map entries, plus an upper bound of the trained state (centroids, codebooks, lists)."""
    nlist, code_bytes = (int(v) for v in re.search(r"IVF(\d+).*PQ(\d+)", args.factory).groups())
    fixed_bound = 2 * (nlist * DIM * 4 + nlist * ivfpq.LIST_BYTES) + 256 * DIM * 4 + DIM * DIM * 4
    per_vector = code_bytes + ivfpq.ID_BYTES + ivfpq.DIRECT_MAP_BYTES
    return fixed_bound + per_vector * -(-args.size // args.shards)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--metrics", nargs="+", default=["cosine", "ip"], choices=["cosine", "ip"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--factory", default=IndexSettings().ivfpq_factory)
    parser.add_argument("--train-sample", type=int, default=IndexSettings().train_sample)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--shards", type=int, default=4, help="also measure this many shards")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, faiss {faiss.__version__},"
        f" {faiss.omp_get_max_threads()} threads for builds; {args.size:,} x {DIM},"
        f" {args.factory}, train sample {args.train_sample:,}",
        flush=True,
    )
    start = time.perf_counter()
    vectors = catalogue(args.size)
    queries = song_vectors(args.queries, seed=2)
    ids = [f"S{i:09d}" for i in range(args.size)]
    print(f"data: {time.perf_counter() - start:.0f} s", flush=True)
    settings = IndexSettings(
        kind="ivfpq", ivfpq_factory=args.factory, train_sample=args.train_sample
    )
    rows = []
    for metric in args.metrics:
        stored, asked = vectors, queries
        if metric == "cosine":
            stored = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            asked = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        start = time.perf_counter()
        truth = exact_top_k(stored, asked)
        print(f"[{metric}] exact ground truth: {time.perf_counter() - start:.0f} s", flush=True)
        del stored
        rows += bench_layout(
            "one shard", ids, vectors, queries, truth, metric, settings, args.nprobe
        )
        if args.shards > 1:
            sharded = replace(settings, memory_budget_bytes=budget_for(args, settings))
            rows += bench_layout(
                f"{args.shards} shards", ids, vectors, queries, truth, metric, sharded, args.nprobe
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak RSS {peak:.1f} GiB")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
