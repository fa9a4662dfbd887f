"""The DataModule's crops and clips, and a real tiny Lightning fit on the synthetic world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from audio.config import FRONT_END
from training.datamodule import CropSampler, MelDataModule
from training.encoders.dieleman import DielemanDims, DielemanEncoder
from training.inference import pad_clips
from training.lightning_module import BestWeights, ContentModel

TRAIN, VALID = slice(0, 120), slice(120, 160)
WINDOW = FRONT_END.window_frames


def test_crop_sampler_is_seeded_and_covers_every_song() -> None:
    n_frames = np.array([130, 200, 517])
    first = list(CropSampler(n_frames, WINDOW, crops_per_song=4, seed=5))
    again = CropSampler(n_frames, WINDOW, crops_per_song=4, seed=5)
    assert list(again) == first and list(again) != first  # same epoch 0, then a new epoch
    songs = np.array([song for song, _ in first])
    starts = np.array([start for _, start in first])
    assert np.bincount(songs).tolist() == [4, 4, 4]
    assert (starts >= 0).all() and (starts + WINDOW <= n_frames[songs]).all()


def test_pad_clips_keeps_lengths_and_order() -> None:
    clips = [(torch.ones(3, 5), 7), (torch.ones(3, 2), 2)]
    mels, lengths, indices = pad_clips(clips)
    assert mels.shape == (2, 3, 5) and lengths.tolist() == [5, 2] and indices.tolist() == [7, 2]
    assert float(mels[1, :, 2:].abs().sum()) == 0.0


def tiny_datamodule(world, **options) -> MelDataModule:
    """The tests' DataModule over the synthetic world (`options` replace its settings)."""
    settings = {"crops_per_song": 4, "batch_size": 32, "clip_batch_size": 16, "seed": 0}
    return MelDataModule(
        world,
        world.song_ids[TRAIN],
        world.factors[TRAIN],
        world.song_ids[VALID],
        window_frames=WINDOW,
        **{**settings, **options},
    )


def training_only_trainer(root: Path) -> pl.Trainer:
    """A deterministic 2-epoch CPU trainer with no validation, logger or checkpoint: the
    fits of the content objectives' tests."""
    return pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=root,
        deterministic=True,
    )


def test_datamodule_batches(synthetic_world) -> None:
    datamodule = tiny_datamodule(synthetic_world)
    mel, factors = next(iter(datamodule.train_dataloader()))
    assert mel.shape == (32, FRONT_END.n_mels, WINDOW) and mel.dtype == torch.float16  # as cached
    assert factors.shape == (32, 4)
    assert len(datamodule.train_dataloader()) == 120 * 4 // 32
    mels, lengths, indices = next(iter(datamodule.val_dataloader()))
    assert mels.shape[0] == 16 and mels.shape[2] == int(lengths.max())
    assert indices.tolist() == list(range(16))


def test_tiny_fit_decreases_the_loss_and_logs_validation_map(synthetic_world, tmp_path) -> None:
    world = synthetic_world
    pl.seed_everything(0, verbose=False)
    net = DielemanEncoder(
        DielemanDims(n_factors=4, channels=(16, 16, 32), hidden=(32,), dropout=0.1)
    )
    model = ContentModel(
        net,
        user_factors=world.users,
        valid_relevance=world.relevance(VALID),
        valid_factors=world.factors[VALID],
        lr=3e-3,
        k=10,
    )
    datamodule = tiny_datamodule(world)
    crops, targets = next(iter(datamodule.train_dataloader()))

    def crop_loss() -> float:
        net.eval()
        with torch.no_grad():
            return float(F.mse_loss(net.forward_mel(crops), targets))

    before = crop_loss()
    net.train()
    best = BestWeights()
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        callbacks=[best],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=datamodule)
    assert crop_loss() < 0.7 * before
    assert {"val/map", "val/auc", "val/loss", "train/loss_epoch"} <= set(trainer.callback_metrics)
    assert best.best_score is not None and 0.0 < best.best_score <= 1.0
    # The weights left in the net are the best epoch's.
    restored = net.state_dict()
    assert all(torch.equal(restored[name], value) for name, value in best.best_state.items())


def test_spec_augment_masks_one_band_and_one_span_per_crop() -> None:
    net = DielemanEncoder(DielemanDims(n_factors=4), FRONT_END)
    torch.manual_seed(0)
    mel = torch.randn(16, FRONT_END.n_mels, WINDOW) + 5.0
    assert ContentModel(net)._masked(mel) is mel  # off by default
    masked = ContentModel(net, mask_bands=20, mask_frames=30)._masked(mel)
    assert masked.shape == mel.shape
    changed = masked != mel
    for crop in range(16):
        band_rows = changed[crop].all(dim=1)  # a masked band covers every frame
        span_columns = changed[crop].all(dim=0)  # a masked span covers every band
        assert int(band_rows.sum()) <= 20 and int(span_columns.sum()) <= 30
        hit = changed[crop]
        assert bool((hit == (band_rows[:, None] | span_columns[None, :])).all())
        mean = mel[crop].mean()
        assert torch.allclose(masked[crop][hit], mean.expand(int(hit.sum())))
    assert changed.any()
