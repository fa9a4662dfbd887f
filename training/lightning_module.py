"""The Lightning wrapper around a plain content encoder (it holds the net, never is it).

The net is any architecture of `training.encoders`: this module uses only the protocol
(`training.encoders.base.ContentEncoder`: `pooled_mel`, `head`, `forward_mel`,
`dims.pooled_dims`), never one class.

Training regresses the WMF song factors from 3-second log-mel crops with the mean squared
error (van den Oord et al. 2013 found MSE on the factors better than the weighted
prediction error). Validation predicts each validation song from its whole clip and
ranks those songs for every user with the same metric code as the evaluation
(`ranking.metrics.ranking_metrics`): `val/map` (mAP@k) drives early stopping and the
choice of the best weights, which `BestWeights` keeps in memory and puts back at the end.
Only the plain net is ever saved (see `training.checkpoint`).

`contrastive_weight` > 0 adds a content objective beside the regression: the supervised
contrastive loss of `training.contrastive` over the pooled features of the batch's pairs
of crops of one song (through a projection head held here, never saved), weighted by it.
`artist_head_weight` > 0 adds another: the cross-entropy of a linear artist classifier on
the same pooled features (`training.artist_head`, the head held here too, never saved).
`teacher_features` given adds knowledge distillation (a student, `training.encoders.student`):
`distill_weight` times the MSE between the pooled features of each crop and its song's
teacher features (`training.distillation`), whose width the student's pooled features have.

Under DDP each rank predicts its share of the validation songs; the shares are gathered
so that every rank ranks the full set and logs the same `val/map`: early stopping and
`BestWeights` then decide alike on every rank.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytorch_lightning as pl
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from ranking.metrics import ranking_metrics
from training.artist_head import ArtistHead, artist_loss
from training.contrastive import ProjectionHead, song_contrastive_loss
from training.encoders.base import ContentEncoder

SCHEDULES = ("none", "cosine", "plateau")


def finite_mse(predicted: Tensor, targets: Tensor) -> Tensor:
    """MSE of `predicted` (B, D) against `targets` (B, D) over the rows whose targets are
    finite (a NaN row: a song without factors, or one its teacher could not hear); 0 with
    a gradient when there is none."""
    known = torch.isfinite(targets).all(dim=1)
    if not bool(known.any()):
        return predicted.sum() * 0.0
    return F.mse_loss(predicted[known], targets[known])


class ContentModel(pl.LightningModule):
    """MSE on the factors, Adam, and ranking metrics on whole validation clips.

    `user_factors` (n_users, F) float32 and `valid_relevance` (n_users, n_valid) CSR, 1
    where a user listened to a validation song, give `val/map` and `val/auc`; without them
    only `val/loss` (MSE against `valid_factors`, when given) is logged.
    `normalise_targets` regresses unit-length factor vectors instead (the direction only).
    `mask_bands` / `mask_frames` > 0 is SpecAugment-style masking (Park et al. 2019) of the
    training crops: per crop one band of up to that many mel bands and one span of up to
    that many frames are set to the crop's mean (validation and prediction see whole mels).
    `contrastive_weight` > 0: the loss is MSE + that weight times the song-contrastive loss
    at `contrastive_temperature` (the batches must carry song indices: `MelDataModule(...,
    pair_crops=True)`). `contrastive_classes` (n_train_songs,) int: the class of each
    training song in that loss (e.g. its artist); None: every song is its own class.
    `artist_head_weight` > 0: the loss also adds that weight times the cross-entropy of a
    linear classifier of the pooled features into the artists `artist_classes`
    (n_train_songs,) int, `NO_ARTIST` where unknown (required then; the batches must carry
    song indices: `MelDataModule(..., with_songs=True)`).
    The factor MSE leaves out crops whose factors are NaN (songs a student only distils on).
    `teacher_features` (n_train_songs, pooled_dims) float32, NaN rows for songs the teacher
    could not hear: the loss adds `distill_weight` times the MSE of the pooled features of
    each crop against its song's row (the batches must carry song indices).
    """

    def __init__(
        self,
        net: ContentEncoder,
        *,
        user_factors: np.ndarray | None = None,
        valid_relevance: sp.csr_matrix | None = None,
        valid_factors: np.ndarray | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        schedule: str = "none",
        normalise_targets: bool = False,
        mask_bands: int = 0,
        mask_frames: int = 0,
        contrastive_weight: float = 0.0,
        contrastive_temperature: float = 0.1,
        contrastive_classes: np.ndarray | None = None,
        artist_head_weight: float = 0.0,
        artist_classes: np.ndarray | None = None,
        teacher_features: np.ndarray | None = None,
        distill_weight: float = 0.0,
        k: int = 500,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if contrastive_weight < 0 or contrastive_temperature <= 0:
            raise ValueError("contrastive_weight must be >= 0 and contrastive_temperature > 0")
        if artist_head_weight < 0:
            raise ValueError(f"artist_head_weight must be >= 0, got {artist_head_weight}")
        if artist_head_weight > 0 and artist_classes is None:
            raise ValueError("the artist head needs the training songs' artist_classes")
        if distill_weight < 0:
            raise ValueError(f"distill_weight must be >= 0, got {distill_weight}")
        if teacher_features is not None and teacher_features.shape[1] != net.dims.pooled_dims:
            raise ValueError(
                f"teacher features of width {teacher_features.shape[1]}; the net pools"
                f" {net.dims.pooled_dims}"
            )
        self.save_hyperparameters(
            ignore=[
                "net",
                "user_factors",
                "valid_relevance",
                "valid_factors",
                "contrastive_classes",
                "artist_classes",
                "teacher_features",
            ]
        )
        self.net = net
        # Built after the net, so a seeded run draws the net's weights as it always did.
        self.projection = ProjectionHead(net.dims.pooled_dims) if contrastive_weight > 0 else None
        self.contrastive_classes = (
            None if contrastive_classes is None else torch.as_tensor(contrastive_classes).long()
        )
        self.artist_head: ArtistHead | None = None
        self.artist_classes: Tensor | None = None
        if artist_head_weight > 0 and artist_classes is not None:
            self.artist_classes = torch.as_tensor(artist_classes).long()
            n_artists = max(1, int(self.artist_classes.max()) + 1)
            self.artist_head = ArtistHead(net.dims.pooled_dims, n_artists)
        self.teacher_features = (
            None if teacher_features is None else torch.as_tensor(teacher_features).float()
        )
        self.user_factors = user_factors
        self.valid_relevance = valid_relevance
        self.valid_factors = None if valid_factors is None else torch.from_numpy(valid_factors)
        self._valid_predictions: list[Tensor] = []
        self._valid_indices: list[Tensor] = []

    def _targets(self, factors: Tensor) -> Tensor:
        return F.normalize(factors, dim=1) if self.hparams.normalise_targets else factors

    def _masked(self, mel: Tensor) -> Tensor:
        """`mel` (B, n_mels, T) with one random band and one random span per crop at the
        crop's mean; unchanged when both mask sizes are 0."""
        bands, frames = self.hparams.mask_bands, self.hparams.mask_frames
        if not (bands or frames):
            return mel
        batch, n_mels, n_frames = mel.shape
        mask = torch.zeros_like(mel, dtype=torch.bool)
        for size, length, axis in ((bands, n_mels, 1), (frames, n_frames, 2)):
            if not size:
                continue
            width = torch.randint(0, size + 1, (batch, 1), device=mel.device)
            start = (torch.rand(batch, 1, device=mel.device) * (length - width + 1)).long()
            position = torch.arange(length, device=mel.device)[None, :]
            hit = (position >= start) & (position < start + width)  # (B, length)
            mask |= hit[:, :, None] if axis == 1 else hit[:, None, :]
        mean = mel.mean(dim=(1, 2), keepdim=True).expand_as(mel)
        return torch.where(mask, mean, mel)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        mel, factors = batch[:2]
        pooled = self.net.pooled_mel(self._masked(mel))
        loss = finite_mse(self.net.head(pooled), self._targets(factors))
        distilling = self.teacher_features is not None
        if self.projection is not None or self.artist_head is not None or distilling:
            if len(batch) < 3:
                raise ValueError(
                    "the contrastive, artist and distillation objectives need song indices"
                )
            self.log("train/mse", loss, on_step=False, on_epoch=True)
        if self.projection is not None:
            contrastive = self.contrastive_loss(pooled, batch[2])
            self.log("train/contrastive", contrastive, on_step=False, on_epoch=True)
            loss = loss + self.hparams.contrastive_weight * contrastive
        if self.artist_head is not None:
            artist = self.artist_loss(pooled, batch[2])
            self.log("train/artist", artist, on_step=False, on_epoch=True)
            loss = loss + self.hparams.artist_head_weight * artist
        if distilling:
            distill = self.distill_loss(pooled, batch[2])
            self.log("train/distill", distill, on_step=False, on_epoch=True)
            loss = loss + self.hparams.distill_weight * distill
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def contrastive_loss(self, pooled: Tensor, songs: Tensor) -> Tensor:
        """The contrastive loss of pooled features (B, pooled_dims) of crops of the training
        songs `songs` (B,) (their classes: `contrastive_classes`, or the songs themselves)."""
        if self.projection is None:
            raise ValueError("this model has no contrastive objective (contrastive_weight 0)")
        classes = songs
        if self.contrastive_classes is not None:
            classes = self.contrastive_classes.to(songs.device)[songs]
        return song_contrastive_loss(
            self.projection(pooled), classes, self.hparams.contrastive_temperature
        )

    def artist_loss(self, pooled: Tensor, songs: Tensor) -> Tensor:
        """The artist head's cross-entropy on pooled features (B, pooled_dims) of crops of the
        training songs `songs` (B,), against their `artist_classes`."""
        if self.artist_head is None or self.artist_classes is None:
            raise ValueError("this model has no artist head (artist_head_weight 0)")
        artists = self.artist_classes.to(songs.device)[songs]
        return artist_loss(self.artist_head(pooled), artists)

    def distill_loss(self, pooled: Tensor, songs: Tensor) -> Tensor:
        """MSE between pooled features (B, pooled_dims) of crops of the training songs `songs`
        (B,) and those songs' teacher features, over the songs the teacher heard (0 if none)."""
        if self.teacher_features is None:
            raise ValueError("this model distils no teacher (no teacher_features)")
        return finite_mse(pooled, self.teacher_features.to(pooled.device)[songs])

    def on_validation_epoch_start(self) -> None:
        self._valid_predictions.clear()
        self._valid_indices.clear()

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        mel, lengths, indices = batch
        self._valid_predictions.append(self.net.forward_mel(mel, lengths).float())
        self._valid_indices.append(indices)

    def _gathered_predictions(self) -> Tensor:
        """Every rank's validation predictions, (n_valid, F) float32 on the CPU, rows
        following the validation songs; a song predicted twice (the padding of the shares)
        counts once, from the first rank that has it, alike on every rank."""
        n_factors = self._valid_predictions[0].shape[1]
        predictions = self.all_gather(torch.cat(self._valid_predictions))
        indices = self.all_gather(torch.cat(self._valid_indices))
        _, first = np.unique(indices.reshape(-1).cpu().numpy(), return_index=True)
        return predictions.reshape(-1, n_factors).cpu()[torch.from_numpy(first)]

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._valid_predictions:
            return
        predictions = self._gathered_predictions()
        # The same values on every rank; syncing them with max keeps that exact (and
        # Lightning quiet about epoch-level values logged without sync).
        synced: dict[str, Any] = {"prog_bar": True, "sync_dist": True, "reduce_fx": "max"}
        if self.valid_factors is not None:
            loss = F.mse_loss(predictions, self._targets(self.valid_factors))
            self.log("val/loss", loss, **synced)
        if self.user_factors is not None and self.valid_relevance is not None:
            metrics = ranking_metrics(
                self.user_factors, predictions.numpy(), self.valid_relevance, k=self.hparams.k
            )
            self.log("val/map", float(metrics.map), **synced)
            self.log("val/auc", float(metrics.auc), **synced)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, int(self.trainer.estimated_stepping_batches))
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        if self.hparams.schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=0.5, patience=2
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/map", "interval": "epoch"},
            }
        return optimizer


class BestWeights(pl.Callback):
    """Keep a copy of the net's weights at the best `monitor` value; restore them at the end.

    Stands in for `ModelCheckpoint`, whose checkpoints are pickles: the best weights are
    saved afterwards by `training.checkpoint.save_encoder`, as a plain state dict.
    """

    def __init__(self, monitor: str = "val/map", mode: str = "max"):
        self.monitor = monitor
        self.sign = 1.0 if mode == "max" else -1.0
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if self.best_score is None or self.sign * score > self.sign * self.best_score:
            self.best_score = score
            self.best_epoch = trainer.current_epoch
            self.best_state = copy.deepcopy(pl_module.net.state_dict())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.net.load_state_dict(self.best_state)
