"""The mel cache computed on Spark (`local[2]`): the single-machine path's files, resumable."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from audio.cache import FeaturizeSummary, MelCache, featurize_dataset
from audio.spark_featurize import spark_runner

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

N_SONGS = 20
BROKEN = {"truncated": "too_short", "hush": "silent", "lyrics": "undecodable"}


@pytest.fixture
def dataset(tmp_path: Path, tiny_world: Path, audio_assets: Path, wav) -> Path:
    """20 songs of the tiny world, plus a truncated, a silent and a non-audio file."""
    audio_dir = tmp_path / "world" / "audio"
    audio_dir.mkdir(parents=True)
    for song in sorted((tiny_world / "audio").iterdir())[:N_SONGS]:
        shutil.copy2(song, audio_dir / song.name)
    recording = (audio_assets / "sugar_plum_fairy.wav").read_bytes()
    (audio_dir / "truncated.wav").write_bytes(recording[: len(recording) // 40])
    shutil.move(wav("hush.wav", np.zeros(4 * 22050), 22050), audio_dir / "hush.wav")
    (audio_dir / "lyrics.mp3").write_text("not a song\n" * 100)
    return audio_dir.parent


def on_spark(spark: SparkSession, root: Path, cache_dir: Path) -> FeaturizeSummary:
    return featurize_dataset(root, cache_dir, progress=False, runner=spark_runner(spark))


def cache_files(cache_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(cache_dir.iterdir())}


def test_spark_writes_the_local_cache_byte_for_byte(
    spark: SparkSession, dataset: Path, tmp_path: Path
) -> None:
    local = featurize_dataset(dataset, tmp_path / "local", workers=1, progress=False)
    distributed = on_spark(spark, dataset, tmp_path / "spark")
    assert (distributed.computed, distributed.cached) == (local.computed, local.cached) == (20, 20)
    assert {song: reason.split(":")[0] for song, reason in distributed.failed.items()} == BROKEN
    assert distributed.failed == local.failed
    assert cache_files(distributed.cache_dir) == cache_files(local.cache_dir)
    assert len(MelCache.open(distributed.cache_dir)) == N_SONGS


def test_interrupted_spark_job_resumes(spark: SparkSession, dataset: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "spark"
    on_spark(spark, dataset, cache_dir)
    finished = cache_files(cache_dir)
    # What a job that died leaves: no index.json, some songs without their mel or stamp,
    # and a temporary file from a worker killed mid-write.
    (cache_dir / "index.json").unlink()
    songs = sorted(path.stem for path in cache_dir.glob("*.npy"))
    for song_id in songs[:3]:
        (cache_dir / f"{song_id}.npy").unlink()
    (cache_dir / f"{songs[3]}.stamp.json").unlink()
    (cache_dir / f"{songs[4]}.npy.worker-7.4242.tmp").write_bytes(b"\x93NUMPY torn")
    with pytest.raises(FileNotFoundError, match="unfinished"):
        MelCache.open(cache_dir)

    resumed = on_spark(spark, dataset, cache_dir)
    assert (resumed.computed, resumed.skipped_up_to_date) == (4, N_SONGS - 4)
    assert sorted(resumed.failed) == sorted(BROKEN)  # recorded failures are not retried
    assert cache_files(cache_dir) == finished


def test_featurize_command_on_spark(spark: SparkSession, dataset: Path, tmp_path: Path) -> None:
    from cli.audio import featurize as featurize_command

    command = typer.Typer()
    command.command()(featurize_command)
    cache_dir = tmp_path / "cli_cache"
    args = [str(dataset), "--cache", str(cache_dir), "--engine", "spark"]
    result = CliRunner().invoke(command, [*args, "--spark-master", "local[2]"])
    assert result.exit_code == 0, result.output
    assert f"{N_SONGS} songs cached: {N_SONGS} computed" in result.output
    assert "truncated" in result.output and "too_short" in result.output
    refused = CliRunner().invoke(command, [*args, "--workers", "2"])
    assert refused.exit_code != 0
    assert "--workers" in " ".join(refused.output.split())
