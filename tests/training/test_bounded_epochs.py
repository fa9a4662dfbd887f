"""A bounded epoch (`songs_per_epoch`): a nightly fit whose cost does not grow with the
catalogue, which still sees every song over its epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio.cache import MelCache, default_cache_dir
from audio.config import FRONT_END
from training.datamodule import CropSampler, MelDataModule
from training.encoder_fit import CNNSettings

WINDOW = FRONT_END.window_frames


def _epoch(sampler: CropSampler, epoch: int) -> list[tuple[int, int]]:
    sampler.set_epoch(epoch)
    crops = list(sampler)
    assert len(crops) == len(sampler)
    return crops


def test_an_epoch_crops_only_its_draw_of_songs_and_the_draws_cover_the_catalogue() -> None:
    n_frames = np.full(40, WINDOW + 30)
    sampler = CropSampler(n_frames, WINDOW, 3, seed=7, songs_per_epoch=8)
    assert sampler.epoch_songs == 8 and len(sampler) == 24
    seen: set[int] = set()
    draws = []
    for epoch in range(12):
        songs = [song for song, _ in _epoch(sampler, epoch)]
        counts = np.bincount(songs, minlength=40)
        assert np.count_nonzero(counts) == 8 and set(counts[counts > 0]) == {3}
        draws.append(frozenset(np.flatnonzero(counts)))
        seen |= draws[-1]
    assert len(set(draws)) > 1  # a new draw each epoch
    assert len(seen) > 30  # 12 draws of 8 from 40 songs leave few unseen
    # seeded: the same epoch draws the same songs and crops again
    again = CropSampler(n_frames, WINDOW, 3, seed=7, songs_per_epoch=8)
    assert _epoch(again, 5) == _epoch(sampler, 5)


@pytest.mark.parametrize("bound", [None, 40, 1000])
def test_a_bound_at_or_above_the_song_count_changes_nothing(bound: int | None) -> None:
    n_frames = np.arange(40) + WINDOW
    unbounded = CropSampler(n_frames, WINDOW, 2, seed=1)
    bounded = CropSampler(n_frames, WINDOW, 2, seed=1, songs_per_epoch=bound)
    for epoch in range(3):
        assert _epoch(bounded, epoch) == _epoch(unbounded, epoch)


def test_ranks_share_an_epochs_draw_without_overlap() -> None:
    n_frames = np.full(30, WINDOW + 10)
    shares = []
    for rank in range(2):
        sampler = CropSampler(
            n_frames, WINDOW, 2, seed=4, rank=rank, world_size=2, songs_per_epoch=10
        )
        shares.append({song for song, _ in _epoch(sampler, 3)})
    assert len(shares[0]) == len(shares[1]) == 5 and not shares[0] & shares[1]
    alone = CropSampler(n_frames, WINDOW, 2, seed=4, rank=0, world_size=2)
    alone.set_epoch(3)
    assert shares[0] < set(range(30)) and len(alone) == 30  # unbounded: 15 songs x 2


def test_the_bound_reaches_the_training_loader_and_is_checked(
    tiny_world: Path, trained_run: Path
) -> None:
    """`trained_run`: the tiny world's mel cache, featurized."""
    cache = MelCache.open(default_cache_dir(tiny_world))
    ids = cache.song_ids[:50]
    module = MelDataModule(
        cache,
        ids,
        np.zeros((50, 4), np.float32),
        [],
        window_frames=WINDOW,
        crops_per_song=2,
        songs_per_epoch=6,
        batch_size=4,
    )
    batches = list(module.train_dataloader())
    assert len(batches) == 3  # 6 songs x 2 crops in batches of 4
    assert all(crops.shape == (4, FRONT_END.n_mels, WINDOW) for crops, _ in batches)
    assert CNNSettings().songs_per_epoch == 4096
    with pytest.raises(ValueError, match="songs_per_epoch must be at least 1"):
        CropSampler(np.full(3, WINDOW), WINDOW, 1, seed=0, songs_per_epoch=0)
