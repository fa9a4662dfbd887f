"""Benchmark the automatic approximate index (HNSW) against exact search, IVF beside it.

For each size: clustered 50-d song vectors (a Gaussian mixture whose clusters spread along
a few directions of their own, with popularity-like norms, closer to WMF factors than
uniform noise), a query sample drawn from the same mixture, exact ground truth by brute
force, then for each metric:

- build time (all cores) and resident memory the built `VectorIndex` adds;
- for each efSearch: recall@10 against exact search, single-query latency p50/p99 with
  one thread (`faiss.omp_set_num_threads(1)`), through `VectorIndex.search` (id mapping
  included, as the service calls it), as wall clock and as the thread's CPU time, and the
  CPU saved against exact search;
- with `--ivf`: an IVF-Flat index on the same data (nlist ~ 4 sqrt(n), nprobe sweep), the
  alternative the automatic choice was measured against.

    .venv/bin/python -m bench.index --sizes 1000000 5000000 --ivf
    .venv/bin/python -m bench.index --sizes 100000 --queries 200   # a quick look

(Run it as a module from the repository root: as a file, `bench/` would come first on
sys.path and this script would shadow the `index` package.)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from index.vector_index import VectorIndex

DIM = 50
K = 10
BUILD_THREADS = faiss.omp_get_max_threads()


def song_vectors(n: int, seed: int, n_clusters: int = 2000, rank: int = 10) -> np.ndarray:
    """`(n, DIM)` float32 from a fixed mixture (genres); `seed` draws the sample."""
    mixture = np.random.default_rng(12345)
    centers = (0.4 * mixture.standard_normal((n_clusters, DIM))).astype(np.float32)
    spreads = mixture.uniform(0.5, 1.2, n_clusters).astype(np.float32)
    bases = (mixture.standard_normal((n_clusters, rank, DIM)) / np.sqrt(rank)).astype(np.float32)
    weights = mixture.dirichlet(np.full(n_clusters, 0.5))
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 500_000):  # chunks keep the (chunk, rank, DIM) gather small
        m = min(500_000, n - start)
        members = rng.choice(n_clusters, m, p=weights)
        along = rng.standard_normal((m, rank), dtype=np.float32) * spreads[members, None]
        chunk = centers[members] + np.einsum("nr,nrd->nd", along, bases[members])
        chunk += 0.35 * rng.standard_normal((m, DIM), dtype=np.float32)
        chunk *= rng.lognormal(0.0, 0.3, (m, 1)).astype(np.float32)
        out[start : start + m] = chunk
    return out


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def latencies_ms(search: Callable[[np.ndarray], object], queries: np.ndarray) -> dict[str, float]:
    """p50/p99 of one-query searches, single-threaded: wall clock, and the thread's CPU time
    (on a shared machine the wall clock also counts the time other processes held the core)."""
    faiss.omp_set_num_threads(1)
    wall, cpu = [], []
    for query in queries:
        start, start_cpu = time.perf_counter(), time.thread_time()
        search(query[None, :])
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    faiss.omp_set_num_threads(BUILD_THREADS)
    return {
        "p50_ms": float(np.percentile(wall, 50) * 1e3),
        "p99_ms": float(np.percentile(wall, 99) * 1e3),
        "cpu_p50_ms": float(np.percentile(cpu, 50) * 1e3),
        "cpu_p99_ms": float(np.percentile(cpu, 99) * 1e3),
    }


def describe(latency: dict[str, float]) -> str:
    return (
        f"p50 {latency['p50_ms']:.3f} ms  p99 {latency['p99_ms']:.3f} ms  "
        f"(CPU p50 {latency['cpu_p50_ms']:.3f}  p99 {latency['cpu_p99_ms']:.3f})"
    )


def recall(found: np.ndarray | list, truth: np.ndarray) -> float:
    """Share of the exact top-k found, over all queries."""
    hits = sum(len(set(row) & set(expected)) for row, expected in zip(found, truth, strict=True))
    return hits / truth.size


def bench_size(n: int, metrics: list[str], n_queries: int, efs: list[int], ivf: bool) -> list:
    print(f"\n=== {n:,} vectors x {DIM} dims, {n_queries} queries ===", flush=True)
    start = time.perf_counter()
    vectors = song_vectors(n, seed=1)
    queries = song_vectors(n_queries, seed=2)
    ids = [f"S{i:09d}" for i in range(n)]
    print(f"data: {time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    for metric in metrics:
        stored, asked = vectors, queries
        if metric == "cosine":
            stored = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            asked = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        flat = faiss.IndexFlatIP(DIM)
        flat.add(stored)
        _, truth = flat.search(asked, K)
        exact = latencies_ms(lambda q, f=flat: f.search(q, K), asked[:50])
        del flat
        print(f"[{metric}] exact: {describe(exact)}", flush=True)
        rows.append({"n": n, "metric": metric, "index": "exact", **exact})

        before = rss_bytes()
        start = time.perf_counter()
        index = VectorIndex.build(ids, vectors, metric)  # type: ignore[arg-type]
        build = {"build_s": time.perf_counter() - start, "rss_gib": (rss_bytes() - before) / 2**30}
        print(
            f"[{metric}] {index.kind}: build {build['build_s']:.0f} s, "
            f"+{build['rss_gib']:.2f} GiB RSS",
            flush=True,
        )
        truth_ids = np.asarray(ids)[truth]
        for ef in efs:
            index.ef_search = ef
            found, _ = index.search(queries, K)
            rows.append(
                report(
                    n,
                    metric,
                    f"{index.kind} ef={ef}",
                    recall(found, truth_ids),
                    queries,
                    exact,
                    build,
                    lambda q, i=index: i.search(q, K),
                )
            )
        del index
        if ivf:
            rows += bench_ivf(n, metric, stored, asked, truth, exact)
    return rows


def report(
    n: int,
    metric: str,
    name: str,
    recall_at_10: float,
    queries: np.ndarray,
    exact: dict[str, float],
    build: dict[str, float],
    search: Callable[[np.ndarray], object],
) -> dict:
    """Time `search` on `queries`, print a line beside exact search, return the row."""
    latency = latencies_ms(search, queries)
    speedup = exact["cpu_p50_ms"] / latency["cpu_p50_ms"]
    print(
        f"  {name:>22}: recall@10 {recall_at_10:.4f}  {describe(latency)}  "
        f"x{speedup:.0f} less CPU than exact",
        flush=True,
    )
    return {
        "n": n,
        "metric": metric,
        "index": name,
        "recall@10": recall_at_10,
        **latency,
        "cpu_speedup": speedup,
        **build,
    }


def bench_ivf(
    n: int,
    metric: str,
    stored: np.ndarray,
    asked: np.ndarray,
    truth: np.ndarray,
    exact: dict[str, float],
) -> list:
    """IVF-Flat on the same vectors, the alternative measured against HNSW."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    quantizer = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
    before = rss_bytes()
    start = time.perf_counter()
    sample = np.random.default_rng(0).choice(n, min(n, 50 * nlist), replace=False)
    index.train(stored[np.sort(sample)])
    index.add(stored)
    build = {"build_s": time.perf_counter() - start, "rss_gib": (rss_bytes() - before) / 2**30}
    print(
        f"[{metric}] ivf nlist={nlist}: build {build['build_s']:.0f} s, "
        f"+{build['rss_gib']:.2f} GiB RSS",
        flush=True,
    )
    rows = []
    for nprobe in (8, 32, 128):
        index.nprobe = nprobe
        _, found = index.search(asked, K)
        rows.append(
            report(
                n,
                metric,
                f"ivf{nlist} nprobe={nprobe}",
                recall(found, truth),
                asked,
                exact,
                build,
                lambda q, i=index: i.search(q, K),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--metrics", nargs="+", default=["cosine", "ip"], choices=["cosine", "ip"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--ivf", action="store_true", help="also measure an IVF-Flat index")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"faiss {faiss.__version__}, {BUILD_THREADS} threads for builds",
        flush=True,
    )
    rows = []
    for n in args.sizes:
        rows += bench_size(n, args.metrics, args.queries, args.ef, args.ivf)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak RSS {peak:.1f} GiB")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
