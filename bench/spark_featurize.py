"""Featurize on Spark beside the local process pool, on the same recordings (issue #30).

    OPENBLAS_NUM_THREADS=1 python -m bench.spark_featurize DATASET [--workers 2]
        [--spark-master local[2]] [--out DIR]

Each path writes a fresh mel cache of every recording under `DATASET/audio/` (the default
front end): `audio.cache.featurize_dataset` with `--workers` processes, then
`audio.spark_featurize.featurize_on_spark` (the session started before the clock: a
cluster's is up already). Prints seconds and clips/s for each and their ratio, and checks
that the two caches hold the same songs, byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import time
from pathlib import Path

from audio.cache import featurize_dataset
from audio.spark_featurize import spark_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="A folder holding audio/.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--out", type=Path, default=None, help="Default: DATASET/bench-spark.")
    args = parser.parse_args()
    from cluster.spark import spark_session

    out = args.out or args.dataset / "bench-spark"
    shutil.rmtree(out, ignore_errors=True)
    caches = {"local": out / "local", "spark": out / "spark"}
    started = time.perf_counter()
    local = featurize_dataset(args.dataset, caches["local"], workers=args.workers, progress=False)
    local_s = time.perf_counter() - started
    spark = spark_session(args.spark_master, "bench-featurize")
    started = time.perf_counter()
    remote = featurize_dataset(
        args.dataset, caches["spark"], runner=spark_runner(spark), progress=False
    )
    spark_s = time.perf_counter() - started
    spark.stop()
    songs = sorted(path.name for path in caches["local"].glob("*.npy"))
    same, differ, missing = filecmp.cmpfiles(caches["local"], caches["spark"], songs, shallow=False)
    print(f"{local.computed:,} clips ({len(local.failed)} failed), local {args.workers} workers:")
    print(f"  local: {local_s:.1f} s, {local.computed / local_s:.1f} clips/s")
    print(f"  spark {args.spark_master}: {spark_s:.1f} s, {remote.computed / spark_s:.1f} clips/s")
    print(f"  spark / local: {spark_s / local_s:.2f}x")
    print(f"  caches: {len(same):,} mels equal, {len(differ)} differ, {len(missing)} missing")


if __name__ == "__main__":
    main()
