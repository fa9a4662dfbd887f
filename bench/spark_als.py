"""Benchmark: WMF on Spark MLlib's ALS (`--engine spark`) beside implicit, seconds per iteration.

For each size, a play-count matrix of the Taste Profile's proportions (`bench.wmf`'s
generator: power-law song popularity and user activity; `--scales` are fractions of its
1,019,318 users x 384,546 songs x 48,373,586 pairs), turned into our confidences, then on
that same matrix, with as many cores on each side (`--master local[N]`, implicit N threads):

- implicit: `ImplicitALSEngine.fit` with `1 + iterations` iterations; seconds per iteration
  = mean of iterations 2.. (the first also carries the setup), from the engine's callback;
- spark: `SparkALSEngine.fit` (Parquet write, `spark.read.parquet`, ALS, factors back
  through Arrow) with 1 and with `1 + iterations` iterations; Spark reports no iterations,
  so seconds per iteration = the difference / iterations, and setup = the rest of the
  1-iteration fit.

Prints both side by side with the ratio spark / implicit. A warm-up fit on each side first
(JVM start and JIT, OpenMP threads) is left out of the timings.

    .venv/bin/python -m bench.spark_als                      # scales 0.01 0.05, 3 iterations
    .venv/bin/python -m bench.spark_als --scales 0.002 --iterations 2   # a quick look
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from bench.wmf import taste_profile_like  # noqa: E402
from factorization.confidence import confidence  # noqa: E402
from factorization.spark_als import SPARK_CONFIG, SparkALSEngine  # noqa: E402
from factorization.wmf import ImplicitALSEngine, WMFEngine  # noqa: E402


@dataclass(frozen=True)
class Timing:
    """One engine on one matrix: seconds per steady iteration, the rest of a fit (setup,
    data in and factors out), and the whole `1 + iterations` fit."""

    per_iteration: float
    setup: float
    total: float


def time_fit(engine: WMFEngine, matrix: sp.csr_matrix) -> tuple[float, list[float]]:
    """Wall seconds of `engine.fit(matrix)` and the time of each callback from the start."""
    marks: list[float] = []
    start = time.perf_counter()
    engine.fit(matrix, on_iteration=lambda *_: marks.append(time.perf_counter() - start))
    return time.perf_counter() - start, marks


def time_implicit(matrix: sp.csr_matrix, args: argparse.Namespace) -> Timing:
    engine = ImplicitALSEngine(
        args.factors, args.regularization, 1 + args.iterations, args.seed, args.cores
    )
    total, marks = time_fit(engine, matrix)
    per_iteration = float(np.mean(np.diff(marks)))
    return Timing(per_iteration, total - per_iteration * args.iterations, total)


def time_spark(matrix: sp.csr_matrix, args: argparse.Namespace) -> Timing:
    def fit(iterations: int) -> float:
        engine = SparkALSEngine(
            args.factors, args.regularization, iterations, args.seed, args.master
        )
        return time_fit(engine, matrix)[0]

    one, more = fit(1), fit(1 + args.iterations)
    per_iteration = (more - one) / args.iterations
    return Timing(per_iteration, one - per_iteration, more)


def warm_up(matrix: sp.csr_matrix, args: argparse.Namespace) -> None:
    small = matrix[: min(2000, matrix.shape[0])]
    ImplicitALSEngine(args.factors, args.regularization, 1, args.seed, args.cores).fit(small)
    for _ in range(2):  # the JIT needs more than one pass to settle
        SparkALSEngine(args.factors, args.regularization, 2, args.seed, args.master).fit(small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--iterations", type=int, default=3, help="timed after the first")
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--regularization", type=float, default=100.0)
    parser.add_argument("--cores", type=int, default=2, help="implicit threads = Spark cores")
    parser.add_argument("--master", default=None, help="default local[--cores]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.master = args.master or f"local[{args.cores}]"

    from cluster.spark import spark_session

    spark = spark_session(args.master, app_name="bench-spark-als", config=SPARK_CONFIG)
    spark.sparkContext.setLogLevel("ERROR")
    print(
        f"factors {args.factors}, lambda {args.regularization:g}, {args.iterations} timed"
        f" iterations, implicit {args.cores} threads, spark {args.master}"
        f" (load average {os.getloadavg()[0]:.1f})"
    )
    header = f"{'matrix':>36} {'':>9}{'s/iter':>9}{'setup s':>9}{'fit s':>9}"
    print(header)
    warmed = False
    for scale in args.scales:
        plays = taste_profile_like(scale, args.seed)
        matrix = sp.csr_matrix((confidence(plays.data), plays.indices, plays.indptr), plays.shape)
        if not warmed:
            warm_up(matrix, args)
            warmed = True
        timings: dict[str, Timing] = {}
        for name, measure in (("implicit", time_implicit), ("spark", time_spark)):
            timings[name] = measure(matrix, args)
        size = f"{matrix.shape[0]:,} x {matrix.shape[1]:,}, {matrix.nnz:,} pairs"
        for label, (name, timing) in zip((size, ""), timings.items(), strict=True):
            print(
                f"{label:>36} {name:>9}{timing.per_iteration:9.2f}{timing.setup:9.2f}"
                f"{timing.total:9.2f}"
            )
        ratio = {
            field: getattr(timings["spark"], field) / getattr(timings["implicit"], field)
            for field in ("per_iteration", "setup", "total")
        }
        print(
            f"{'':>36} {'ratio':>9}{ratio['per_iteration']:8.1f}x{ratio['setup']:8.1f}x"
            f"{ratio['total']:8.1f}x   (spark / implicit, load {os.getloadavg()[0]:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
