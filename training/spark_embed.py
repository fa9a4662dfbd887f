"""Track vectors for a whole catalogue on Spark: `embed_cached`, spread over a cluster.

The re-embedding step of a published version predicts every song with audio; on tens of
millions of songs that is a Spark job. The encoder travels as its checkpoint: the driver
saves it with `training.checkpoint.save_encoder` and broadcasts the files' bytes (the
state dict, `encoder.json` with the dims and front end, the manifest), and each task
loads them with `load_encoder`, the one loader, which checks the hashes and refuses
another front end than the cache's. Songs go out in the very batches `embed_cached`
makes (runs of `batch_size` in order, one row each, through `mapInPandas`), so that each
song meets the very computation it meets there (padding and batched kernels can move the
last bits). Executors read the mels from the cache folder, which must lie on a file
system they all see at the same path as the driver.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from functools import partial
from math import ceil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from audio.cache import MelCache
from audio.config import FrontEndConfig
from training.checkpoint import load_encoder, save_encoder
from training.encoders.base import ContentEncoder
from training.inference import embed_cached, track_vector_dims

if TYPE_CHECKING:
    from pyspark import Broadcast

BATCH_SCHEMA = "first_row long, song_ids array<string>, n_frames array<int>"
VECTOR_SCHEMA = "row long, vector array<float>"
BATCHES_PER_TASK = 16


def embed_on_spark(
    encoder: ContentEncoder,
    cache: MelCache,
    song_ids: Sequence[str],
    spark_master: str | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Whole-clip track vectors (len(song_ids), `track_vector_dims`) float32 for songs in the
    mel cache, rows following `song_ids`: `training.inference.embed_cached`'s, computed on Spark at
    `spark_master` (default: `cluster.spark.spark_session`'s). Raises `KeyError` for a
    song without a mel and `FrontEndMismatchError` if the encoder and cache differ."""
    from cluster.spark import spark_session

    song_ids = list(song_ids)
    cache.config.require_same(encoder.config, what="encoder")
    n_frames = [cache.n_frames(song_id) for song_id in song_ids]  # KeyError with the reason
    width = track_vector_dims(encoder.dims)
    if not song_ids:
        return np.zeros((0, width), np.float32)
    starts = range(0, len(song_ids), batch_size)
    batches = pd.DataFrame(
        {
            "first_row": list(starts),
            "song_ids": [song_ids[start : start + batch_size] for start in starts],
            "n_frames": [n_frames[start : start + batch_size] for start in starts],
        }
    )
    spark = spark_session(spark_master, "coldstart-embed")
    n_tasks = min(
        len(starts),
        max(spark.sparkContext.defaultParallelism, ceil(len(starts) / BATCHES_PER_TASK)),
    )
    checkpoint = spark.sparkContext.broadcast(_checkpoint_files(encoder))
    try:
        predicted: pd.DataFrame = (
            spark.createDataFrame(batches, BATCH_SCHEMA)
            .repartition(n_tasks)
            .mapInPandas(
                partial(
                    _embed_partition,
                    checkpoint=checkpoint,
                    cache_dir=cache.cache_dir,
                    config=cache.config,
                    batch_size=batch_size,
                ),
                VECTOR_SCHEMA,
            )
            .toPandas()
        )
    finally:
        checkpoint.destroy()
    if len(predicted) != len(song_ids):
        raise RuntimeError(f"Spark returned {len(predicted)} vectors for {len(song_ids)} songs")
    vectors = np.empty((len(song_ids), width), np.float32)
    vectors[predicted["row"].to_numpy()] = np.stack(predicted["vector"].to_list())
    return vectors


def _checkpoint_files(encoder: ContentEncoder) -> dict[str, bytes]:
    """The bytes of each file `save_encoder` writes for `encoder` (name -> contents)."""
    with tempfile.TemporaryDirectory(prefix="coldstart-encoder-") as folder:
        save_encoder(encoder, Path(folder))
        return {path.name: path.read_bytes() for path in Path(folder).iterdir()}


def _load_broadcast(files: dict[str, bytes], config: FrontEndConfig) -> ContentEncoder:
    """Executor: the broadcast checkpoint, loaded by `load_encoder` from a local folder."""
    with tempfile.TemporaryDirectory(prefix="coldstart-encoder-") as folder:
        for name, contents in files.items():
            (Path(folder) / name).write_bytes(contents)
        return load_encoder(Path(folder), config)


def _embed_partition(
    batches: Iterator[pd.DataFrame],
    checkpoint: Broadcast[dict[str, bytes]],
    cache_dir: Path,
    config: FrontEndConfig,
    batch_size: int,
) -> Iterator[pd.DataFrame]:
    """Executor: each batch row through `embed_cached`; one vector row per song."""
    import torch

    torch.set_num_threads(1)  # the cluster's cores are the parallelism
    encoder = _load_broadcast(checkpoint.value, config)
    for rows in batches:
        for first_row, song_ids, n_frames in rows.itertuples(index=False):
            # Only this batch's songs: no executor reads the whole index.json.
            songs = MelCache(cache_dir, config, dict(zip(song_ids, n_frames, strict=True)), {})
            vectors = embed_cached(encoder, songs, list(song_ids), batch_size)
            yield pd.DataFrame(
                {
                    "row": np.arange(first_row, first_row + len(song_ids)),
                    "vector": list(vectors),
                }
            )
