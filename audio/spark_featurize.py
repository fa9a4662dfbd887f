"""`coldstart featurize --engine spark`: the mel cache computed on a Spark cluster.

The driver does what `audio.cache.featurize_dataset` always does: the cache lock, the
up-to-date check against each song's stamp, the failure records, and `failures.json`
then `index.json` last. Only the songs that need work go to Spark, as
(song_id, path, source, size, mtime_ns) rows through `mapInPandas`, and each task runs
`audio.cache.featurize_song` on them: the same front end (`model_input`) and the same atomic
writes, so the cache holds the single-machine path's files byte for byte.

Assumption: the dataset's audio and the cache folder lie on a file system that every
executor sees at the same path as the driver (NFS, a mounted bucket, a shared volume).
A job that dies leaves each finished song's mel and stamp in place (no `index.json`), so
the next run recomputes only the songs without a valid stamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from math import ceil
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from audio.cache import (
    FeaturizeSummary,
    JobRunner,
    SongJob,
    SongResult,
    SourceStamp,
    featurize_dataset,
    featurize_song,
)
from audio.config import FRONT_END, FrontEndConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SONG_SCHEMA = "song_id string, path string, source string, size long, mtime_ns long"
RESULT_SCHEMA = "song_id string, n_frames int, code string, reason string"
SONGS_PER_TASK = 100


def featurize_on_spark(
    dataset_root: Path,
    cache_dir: Path | None = None,
    config: FrontEndConfig = FRONT_END,
    spark_master: str | None = None,
    progress: bool = True,
) -> FeaturizeSummary:
    """`featurize_dataset` with the songs computed on Spark at `spark_master` (default:
    `cluster.spark.spark_session`'s, `local[2]`). Same files, summary and errors."""
    from cluster.spark import spark_session

    runner = spark_runner(spark_session(spark_master, "coldstart-featurize"))
    return featurize_dataset(dataset_root, cache_dir, config, progress=progress, runner=runner)


def spark_runner(spark: SparkSession, songs_per_task: int = SONGS_PER_TASK) -> JobRunner:
    """A `JobRunner` that featurizes songs in Spark tasks of at most `songs_per_task`
    (at least one task per core of the cluster). Results come back when the job ends."""

    def run(jobs: list[SongJob]) -> Iterator[tuple[SongJob, SongResult]]:
        if not jobs:
            return
        # Every job of one featurize run shares the cache folder and the front end.
        cache_dir, config = jobs[0].cache_dir, jobs[0].config
        songs = pd.DataFrame(
            {
                "song_id": [job.song_id for job in jobs],
                "path": [str(job.path) for job in jobs],
                "source": [job.stamp.source for job in jobs],
                "size": [job.stamp.size for job in jobs],
                "mtime_ns": [job.stamp.mtime_ns for job in jobs],
            }
        )
        n_tasks = min(
            len(jobs),
            max(spark.sparkContext.defaultParallelism, ceil(len(jobs) / songs_per_task)),
        )
        results = (
            spark.createDataFrame(songs, SONG_SCHEMA)
            .repartition(n_tasks)
            .mapInPandas(
                partial(_featurize_partition, cache_dir=cache_dir, config=config), RESULT_SCHEMA
            )
            .collect()
        )
        by_id = {job.song_id: job for job in jobs}
        for row in results:
            yield by_id[row.song_id], SongResult(row.n_frames, row.code, row.reason)

    return run


def _featurize_partition(
    batches: Iterator[pd.DataFrame], cache_dir: Path, config: FrontEndConfig
) -> Iterator[pd.DataFrame]:
    """Executor: each song row through `featurize_song`; one result row per song."""
    import torch

    torch.set_num_threads(1)  # the cluster's cores are the parallelism
    for songs in batches:
        results = [
            featurize_song(
                SongJob(
                    song.song_id,
                    Path(song.path),
                    SourceStamp(song.source, int(song.size), int(song.mtime_ns)),
                    cache_dir,
                    config,
                )
            )
            for song in songs.itertuples(index=False)
        ]
        yield pd.DataFrame(
            {
                "song_id": songs["song_id"],
                "n_frames": pd.array([result.n_frames for result in results], dtype="Int32"),
                "code": [result.code for result in results],
                "reason": [result.reason for result in results],
            }
        )
