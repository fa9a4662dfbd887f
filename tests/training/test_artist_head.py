"""The artist-classification head beside the factor regression: its loss, its classes from
songs.csv, the option from the CLI, and seeded tiny fits with it off and on."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from audio.config import FRONT_END
from cli.main import app
from tests.training.test_lightning_module import (
    TRAIN,
    WINDOW,
    tiny_datamodule,
    training_only_trainer,
)
from training.artist_head import NO_ARTIST, ArtistHead, artist_loss
from training.encoder_fit import CNNSettings, artist_classes
from training.encoders.dieleman import DielemanDims, DielemanEncoder
from training.lightning_module import ContentModel

SMALL = DielemanDims(n_factors=4, channels=(16, 16, 32), hidden=(32,))


def test_loss_is_cross_entropy_over_the_songs_with_an_artist() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    artists = torch.tensor([0, 2, NO_ARTIST, 1, 1, NO_ARTIST])
    loss = artist_loss(logits, artists)
    assert loss.shape == () and math.isfinite(float(loss.detach()))
    known = artists != NO_ARTIST
    assert torch.equal(loss, F.cross_entropy(logits[known], artists[known]))
    # A blind classifier scores log(n_artists).
    assert float(artist_loss(torch.zeros(4, 5), torch.arange(4))) == pytest.approx(math.log(5))
    # No artist anywhere: zero, and still differentiable.
    nothing = artist_loss(logits, torch.full((6,), NO_ARTIST))
    nothing.backward()
    assert float(nothing.detach()) == 0.0 and logits.grad is not None
    with pytest.raises(ValueError, match="expected logits"):
        artist_loss(logits, artists[:4])
    assert ArtistHead(96, 7)(torch.rand(5, 96)).shape == (5, 7)


def test_classes_come_from_songs_csv_and_unknown_artists_count_for_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "songs.csv").write_text(
        "song_id,title,artist\na,x,Zed\nb,x,alma\nc,x,\nd,x,zed\ne,x,Alma feat. Bo\n"
    )
    data = SimpleNamespace(dataset_root=tmp_path)
    classes = artist_classes(data, ["a", "b", "c", "d", "e"])  # type: ignore[arg-type]
    assert classes.dtype == np.int64
    assert classes[0] == classes[3] != classes[1] == classes[4]  # normalised names
    assert classes[2] == NO_ARTIST and sorted({*classes.tolist()} - {NO_ARTIST}) == [0, 1]


def test_the_option_reaches_the_settings(monkeypatch, tmp_path: Path) -> None:
    import training.run

    assert CNNSettings().artist_head_weight == 0.0
    with pytest.raises(ValueError, match="artist_head_weight"):
        CNNSettings(artist_head_weight=-1.0)
    seen = {}

    def fake_train_run(run, *, cnn, **_):
        seen["cnn"] = cnn
        return {}

    monkeypatch.setattr(training.run, "train_run", fake_train_run)
    args = ["train", "--run", str(tmp_path), "--no-linear", "--no-kmeans", "--no-hybrid"]
    result = CliRunner().invoke(app, [*args, "--artist-head-weight", "0.1"])
    assert result.exit_code == 0, result.output
    assert seen["cnn"].artist_head_weight == 0.1
    assert CliRunner().invoke(app, args).exit_code == 0
    assert seen["cnn"].artist_head_weight == 0.0


def test_off_by_default_and_needs_classes_and_song_indices() -> None:
    net = DielemanEncoder(SMALL)
    assert ContentModel(net).artist_head is None
    assert ContentModel(net, artist_classes=np.zeros(3, np.int64)).artist_head is None
    with pytest.raises(ValueError, match="artist_classes"):
        ContentModel(net, artist_head_weight=0.5)
    with pytest.raises(ValueError, match="artist_head_weight"):
        ContentModel(net, artist_head_weight=-1.0, artist_classes=np.zeros(3, np.int64))
    model = ContentModel(net, artist_head_weight=0.5, artist_classes=np.array([0, 2, 1]))
    assert model.artist_head is not None and model.artist_head.linear.out_features == 3
    with pytest.raises(ValueError, match="song indices"):
        model.training_step((torch.randn(4, FRONT_END.n_mels, WINDOW), torch.zeros(4, 4)), 0)


def test_song_indices_leave_the_crop_stream_unchanged(synthetic_world) -> None:
    plain = next(iter(tiny_datamodule(synthetic_world).train_dataloader()))
    mel, factors, songs = next(
        iter(tiny_datamodule(synthetic_world, with_songs=True).train_dataloader())
    )
    assert torch.equal(mel, plain[0]) and torch.equal(factors, plain[1])
    assert torch.equal(factors, torch.from_numpy(synthetic_world.factors[TRAIN])[songs])


def _artists(world) -> np.ndarray:
    """An "artist" per training song that its sound tells: its strongest timbre (the
    synthetic world's mels mix 4 timbres by the factors); one song in ten without one."""
    classes = world.factors[TRAIN].argmax(axis=1).astype(np.int64)
    classes[::10] = NO_ARTIST
    return classes


def _fit(world, root: Path, **options) -> tuple[ContentModel, pl.Trainer]:
    """A seeded 2-epoch fit of the small net with `options` for the module."""
    pl.seed_everything(0, verbose=False)
    model = ContentModel(DielemanEncoder(SMALL), lr=3e-3, **options)
    trainer = training_only_trainer(root)
    with_songs = options.get("artist_head_weight", 0) > 0
    trainer.fit(model, datamodule=tiny_datamodule(world, with_songs=with_songs))
    return model, trainer


def _same_weights(first: ContentModel, second: ContentModel) -> bool:
    a, b = first.net.state_dict(), second.net.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_weight_zero_trains_exactly_as_without_the_head(synthetic_world, tmp_path) -> None:
    plain, _ = _fit(synthetic_world, tmp_path / "a")
    off, _ = _fit(
        synthetic_world,
        tmp_path / "b",
        artist_head_weight=0.0,
        artist_classes=_artists(synthetic_world),
    )
    assert _same_weights(plain, off)


def test_tiny_fit_with_the_head_trains_it_and_saves_none_of_it(synthetic_world, tmp_path) -> None:
    options = {"artist_head_weight": 1.0, "artist_classes": _artists(synthetic_world)}
    model, trainer = _fit(synthetic_world, tmp_path / "a", **options)
    metrics = trainer.callback_metrics
    assert {"train/mse", "train/artist", "train/loss"} <= set(metrics)
    assert math.isfinite(float(metrics["train/artist"]))
    assert float(metrics["train/artist"]) < math.log(4)  # it learnt something of the artists
    again, _ = _fit(synthetic_world, tmp_path / "b", **options)
    assert _same_weights(model, again)
    plain, _ = _fit(synthetic_world, tmp_path / "c")
    assert not _same_weights(model, plain)
    # The head trains with the net but is no part of what is saved.
    assert not any("artist" in name for name in model.net.state_dict())
