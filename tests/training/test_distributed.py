"""Training across processes: the song shards of each rank, and a real two-process DDP fit.

The fit runs `coldstart train` as a subprocess on two CPU processes (gloo), as a user would
launch it, on a copy of `trained_run` (shared by other tests: never trained into).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from artifacts.manifest import read_manifest
from audio.config import FRONT_END
from training.checkpoint import MANIFEST_KIND, load_encoder
from training.datamodule import CropSampler, rank_share
from training.encoder_fit import CNNSettings, train_encoder
from training.inference import predict_cached
from training.run_data import TrainingError, load_run_data, ranking_scorer

WINDOW = FRONT_END.window_frames
COLDSTART = Path(sys.executable).parent / "coldstart"


def _shards(n_songs: int, world_size: int, epoch: int, seed: int = 3) -> list[np.ndarray]:
    """Each rank's crops (song indices, in order) for one epoch."""
    n_frames = np.full(n_songs, WINDOW + 50)
    shards = []
    for rank in range(world_size):
        sampler = CropSampler(n_frames, WINDOW, 2, seed, rank=rank, world_size=world_size)
        sampler.set_epoch(epoch)
        crops = list(sampler)
        assert len(crops) == len(sampler)
        shards.append(np.array([song for song, _ in crops]))
    return shards


@pytest.mark.parametrize(("n_items", "world_size"), [(10, 3), (12, 4), (2, 3), (7, 1)])
def test_rank_share_splits_as_distributed_sampler(n_items: int, world_size: int) -> None:
    for rank in range(world_size):
        expected = DistributedSampler(
            range(n_items), num_replicas=world_size, rank=rank, shuffle=False
        )
        assert rank_share(np.arange(n_items), rank, world_size).tolist() == list(expected)
    with pytest.raises(ValueError, match="rank 3 is not one of 3"):
        rank_share(np.arange(n_items), 3, 3)


def test_shards_are_disjoint_equal_and_cover_every_song() -> None:
    shards = _shards(n_songs=12, world_size=3, epoch=0)
    assert [shard.size for shard in shards] == [8, 8, 8]  # 4 songs x 2 crops each
    songs = [set(shard.tolist()) for shard in shards]
    assert set.union(*songs) == set(range(12)) and sum(map(len, songs)) == 12
    for shard in shards:
        assert (np.bincount(shard, minlength=12)[shard] == 2).all()  # crops_per_song kept


def test_uneven_shards_are_padded_by_repeating_songs() -> None:
    shards = _shards(n_songs=10, world_size=3, epoch=0)
    assert [shard.size for shard in shards] == [8, 8, 8]  # ceil(10 / 3) = 4 songs each
    per_song = sum(np.bincount(shard, minlength=10) for shard in shards)
    assert set(np.flatnonzero(per_song)) == set(range(10))
    assert sorted(per_song.tolist()) == [2] * 8 + [4, 4]  # two songs repeated, once each


def test_shards_reshuffle_per_epoch_and_repeat_per_seed() -> None:
    first = [set(shard.tolist()) for shard in _shards(12, 3, epoch=0)]
    second = [set(shard.tolist()) for shard in _shards(12, 3, epoch=1)]
    assert first != second
    again = _shards(12, 3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(_shards(12, 3, epoch=1), again, strict=True))
    other_seed = _shards(12, 3, epoch=1, seed=4)
    assert any(not np.array_equal(a, b) for a, b in zip(other_seed, again, strict=True))


def test_sampler_advances_its_epoch_unless_set() -> None:
    n_frames = np.full(6, WINDOW + 500)
    sampler = CropSampler(n_frames, WINDOW, 3, seed=0, rank=1, world_size=2)
    assert list(sampler) != list(sampler)  # epoch 0, then epoch 1
    sampler.set_epoch(0)
    again = CropSampler(n_frames, WINDOW, 3, seed=0, rank=1, world_size=2)
    assert list(sampler) == list(again)
    with pytest.raises(ValueError, match="rank 2 is not one of 2"):
        CropSampler(n_frames, WINDOW, 3, seed=0, rank=2, world_size=2)


def test_only_script_launched_ddp_is_accepted() -> None:
    with pytest.raises(ValueError, match="strategy must be one of"):
        CNNSettings(strategy="ddp_spawn")
    assert CNNSettings().lightning_strategy == "auto"
    assert CNNSettings(devices=2).lightning_strategy == "ddp"
    assert CNNSettings(devices="auto").lightning_strategy == "ddp"
    assert CNNSettings(num_nodes=2).lightning_strategy == "ddp"


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def test_batch_that_does_not_split_across_processes_is_refused(run_copy: Path) -> None:
    settings = CNNSettings(accelerator="cpu", devices=2, batch_size=9)
    with pytest.raises(TrainingError, match="batch_size 9 does not split into 2 processes"):
        train_encoder(load_run_data(run_copy), settings, progress=False)
    assert (run_copy / "models" / "cnn" / "manifest.json").is_file()  # left as it was


@pytest.mark.slow
def test_two_process_ddp_fit_saves_one_model_and_ranks_the_whole_validation_set(
    run_copy: Path,
) -> None:
    models = run_copy / "models"
    shutil.rmtree(models)
    args = ["train", "--run", str(run_copy), "--devices", "2", "--strategy", "ddp"]
    args += ["--accelerator", "cpu", "--epochs", "1", "--crops-per-song", "1"]
    args += ["--batch-size", "16", "--max-minutes", "0"]
    wide = {**os.environ, "COLUMNS": "1000"}  # one line per model in the report
    done = subprocess.run(
        [str(COLDSTART), *args], env=wide, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Rank 1 ran the same command (Lightning started it) but only rank 0 reports and writes.
    assert re.findall(r"^(cnn|linear) .* digest", done.stdout, re.M) == ["cnn", "linear"]
    for name in ("cnn", "linear"):
        assert (models / name / "test_song_factors.npy").is_file()

    manifest = read_manifest(models / "cnn", kind=MANIFEST_KIND)
    assert manifest["parameters"]["devices"] == 2 and manifest["parameters"]["strategy"] == "ddp"
    assert manifest["processes"] == 2 and manifest["epochs_run"] == 1
    encoder = load_encoder(models / "cnn")  # a valid checkpoint (its hashes checked)

    # The mAP the processes agreed on is that of the whole validation set, which one
    # process gets from the saved (best) weights.
    data = load_run_data(run_copy)
    valid_ids, valid_rows = data.cached(data.factorization.valid_song_ids)
    one_process = ranking_scorer(data, valid_rows)(predict_cached(encoder, data.cache, valid_ids))
    assert manifest["validation"]["map"] == pytest.approx(one_process, abs=1e-4)
    test_factors = np.load(models / "cnn" / "test_song_factors.npy", allow_pickle=False)
    assert test_factors.shape == (len(data.factorization.test_song_ids), encoder.dims.n_factors)
    assert np.isfinite(test_factors).all() and np.abs(test_factors).sum() > 0
