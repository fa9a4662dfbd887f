"""The song-contrastive objective: its loss, the paired crops, and a seeded tiny fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from audio.config import FRONT_END
from tests.training.test_lightning_module import (
    TRAIN,
    WINDOW,
    tiny_datamodule,
    training_only_trainer,
)
from training.contrastive import ProjectionHead, song_contrastive_loss
from training.datamodule import CropSampler, MelDataModule
from training.encoders.dieleman import DielemanDims, DielemanEncoder
from training.lightning_module import ContentModel


def test_loss_is_low_when_songs_group_and_high_when_they_do_not() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    grouped = F.normalize(torch.eye(3).repeat_interleave(2, dim=0), dim=1)
    mixed = F.normalize(torch.eye(3).repeat(2, 1), dim=1)  # each crop beside another song
    good = song_contrastive_loss(grouped, labels, temperature=0.1)
    bad = song_contrastive_loss(mixed, labels, temperature=0.1)
    assert good.shape == () and float(good) < 0.01 < math.log(5) < float(bad)
    # All alike: -log(1/5) for every anchor.
    same = F.normalize(torch.ones(6, 3), dim=1)
    assert float(song_contrastive_loss(same, labels, 0.1)) == pytest.approx(math.log(5), abs=1e-5)
    # No positive anywhere: zero, and still differentiable.
    lonely = torch.randn(4, 3, requires_grad=True)
    loss = song_contrastive_loss(F.normalize(lonely, dim=1), torch.arange(4), 0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and lonely.grad is not None


def test_projection_head_gives_unit_vectors() -> None:
    torch.manual_seed(0)
    out = ProjectionHead(96, hidden=32, out_dims=16)(torch.rand(5, 96))
    assert out.shape == (5, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-6)


def test_paired_sampler_keeps_pairs_and_the_plain_stream_unchanged() -> None:
    n_frames = np.array([130, 200, 517, 300])
    plain = list(CropSampler(n_frames, WINDOW, crops_per_song=4, seed=5))
    assert list(CropSampler(n_frames, WINDOW, crops_per_song=4, seed=5, group=1)) == plain
    paired = list(CropSampler(n_frames, WINDOW, crops_per_song=4, seed=5, group=2))
    songs = np.array([song for song, _ in paired])
    assert (songs[0::2] == songs[1::2]).all()
    assert np.bincount(songs).tolist() == [4, 4, 4, 4]
    assert list(CropSampler(n_frames, WINDOW, crops_per_song=4, seed=5, group=2)) == paired
    with pytest.raises(ValueError, match="multiple"):
        CropSampler(n_frames, WINDOW, crops_per_song=3, seed=5, group=2)


def _paired(world) -> MelDataModule:
    return tiny_datamodule(world, pair_crops=True)


def test_paired_batches_carry_song_indices(synthetic_world) -> None:
    mel, factors, songs = next(iter(_paired(synthetic_world).train_dataloader()))
    assert mel.shape == (32, FRONT_END.n_mels, WINDOW) and factors.shape == (32, 4)
    assert songs.shape == (32,) and (songs[0::2] == songs[1::2]).all()
    expected = torch.from_numpy(synthetic_world.factors[TRAIN])[songs]
    assert torch.equal(factors, expected)


def _fit(world, tmp_path, weight: float) -> tuple[ContentModel, float, float]:
    """A seeded 2-epoch fit; the contrastive loss on one batch before and after, in eval mode."""
    pl.seed_everything(0, verbose=False)
    net = DielemanEncoder(DielemanDims(n_factors=4, channels=(16, 16, 32), hidden=(32,)))
    model = ContentModel(net, lr=3e-3, contrastive_weight=weight)
    datamodule = _paired(world)
    mel, _, songs = next(iter(datamodule.train_dataloader()))

    def contrastive() -> float:
        model.eval()
        with torch.no_grad():
            return float(song_contrastive_loss(model.projection(net.pooled_mel(mel)), songs, 0.1))

    before = contrastive()
    model.train()
    trainer = training_only_trainer(tmp_path)
    trainer.fit(model, datamodule=datamodule)
    assert {"train/mse", "train/contrastive"} <= set(trainer.callback_metrics)
    return model, before, contrastive()


def test_tiny_fit_lowers_the_contrastive_loss_and_is_seeded(synthetic_world, tmp_path) -> None:
    model, before, after = _fit(synthetic_world, tmp_path / "a", weight=1.0)
    assert after < 0.8 * before
    again, _, after_again = _fit(synthetic_world, tmp_path / "b", weight=1.0)
    assert after_again == after
    first, second = model.net.state_dict(), again.net.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    # The projection head trains with the net but is no part of what is saved.
    assert not any(name.startswith("projection") for name in first)


def test_off_by_default_and_needs_song_indices() -> None:
    net = DielemanEncoder(DielemanDims(n_factors=4, channels=(16, 16, 32), hidden=(32,)))
    assert ContentModel(net).projection is None
    model = ContentModel(net, contrastive_weight=0.5)
    with pytest.raises(ValueError, match="song indices"):
        model.training_step((torch.randn(4, FRONT_END.n_mels, WINDOW), torch.zeros(4, 4)), 0)
    with pytest.raises(ValueError):
        ContentModel(net, contrastive_weight=-1.0)


def test_artist_classes_make_every_crop_of_the_artist_a_positive() -> None:
    torch.manual_seed(0)
    net = DielemanEncoder(DielemanDims(n_factors=4, channels=(16, 16, 32), hidden=(32,)))
    artists = np.array([0, 0, 1, 1])  # songs 0 and 1 by one artist, 2 and 3 by another
    by_song = ContentModel(net, contrastive_weight=1.0).eval()
    by_artist = ContentModel(net, contrastive_weight=1.0, contrastive_classes=artists).eval()
    by_artist.projection.load_state_dict(by_song.projection.state_dict())
    pooled, songs = torch.rand(8, net.dims.pooled_dims), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    z = by_song.projection(pooled)
    assert torch.equal(
        by_song.contrastive_loss(pooled, songs), song_contrastive_loss(z, songs, 0.1)
    )
    expected = song_contrastive_loss(z, torch.from_numpy(artists)[songs], 0.1)
    assert torch.equal(by_artist.contrastive_loss(pooled, songs), expected)
