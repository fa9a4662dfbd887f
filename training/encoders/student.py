"""`student`: today's small CNN taught to hear like the teacher (knowledge distillation).

The `dieleman` network (the same 128-band front end, convolutions and mean/max/L2 pooling,
so it costs what `dieleman` costs at serving) with one more layer: a linear map of its
pooled convolution features to the width of the teacher's pooled features (`musicnn-msd`'s
200 "penultimate" features, Pons & Serra 2019, trained on the Million Song Dataset's tags).
Those mimicked features are this encoder's pooled features: the head regresses the WMF
factors from them and the content embedding is their leading singular directions.
Training (`training.lightning_module`, `training.distillation`) fits both at once: the
factors' MSE plus a weight times the MSE between the mimicked features and the teacher's
features of the same song's audio (Hinton et al. 2015's distillation, on features as in
FitNets, Romero et al. 2015).

Because the mimicked features aim at the teacher's, the teacher's own MSD tag layer (200 ->
50, copied from its weights when a fresh student is built, never trained) reads them: the
student serves the teacher's 50 tags for the cost of one 200 x 50 layer. The teacher's
wheel sha256 is saved in the dims (`encoder.json`, the manifest's parameters).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from audio.config import FRONT_END, FrontEndConfig
from training.encoders.base import EncoderDims
from training.encoders.dieleman import DielemanDims, DielemanEncoder

TEACHER = "musicnn-msd"
TEACHER_DIMS = 200  # MSD_musicnn's penultimate features
TAG_LAYER = "tags.1."  # the teacher's tag layer in its converted weights (after a dropout)


@dataclass(frozen=True, kw_only=True)
class StudentDims(DielemanDims):
    """`DielemanDims` (the body and the head) and the teacher's side.

    `teacher_dims`: the width of the teacher's pooled features, which the mimicked features
    (this encoder's pooled features) match; `tag_names`: the teacher's tags the copied tag
    layer scores (empty: no tag layer); `wheel_sha256`: the wheel the teacher's weights
    came from (None only before `StudentEncoder.fresh` filled it in).
    """

    teacher_dims: int = TEACHER_DIMS
    tag_names: tuple[str, ...] = ()
    wheel_sha256: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher_dims < 1:
            raise ValueError(f"StudentDims: teacher_dims must be positive ({self})")

    @property
    def body_dims(self) -> int:
        """Width of the convolutions' global pooling (mean, max and L2 of the last layer)."""
        return 3 * self.channels[-1]

    @property
    def pooled_dims(self) -> int:
        """The mimicked teacher features' width."""
        return self.teacher_dims


class StudentEncoder(DielemanEncoder):
    """Log-mel (B, 128, T) -> `dieleman`'s convs and pooling -> linear map to the teacher's
    feature width (the pooled features) -> dense head; the teacher's tag layer over them."""

    name = "student"
    summary = "dieleman's CNN distilled from musicnn-msd (its features and 50 tags), ~0.2 M weights"
    dims_type = StudentDims
    default_front_end = FRONT_END
    small_dims = StudentDims(channels=(16, 16, 32), hidden=(64,))
    teacher = TEACHER

    dims: StudentDims

    def __init__(self, dims: StudentDims, config: FrontEndConfig = FRONT_END) -> None:
        super().__init__(dims, config)
        self.mimic = nn.Linear(dims.body_dims, dims.teacher_dims)
        self.tags = nn.Linear(dims.teacher_dims, len(dims.tag_names)) if dims.tag_names else None
        if self.tags is not None:
            self.tags.requires_grad_(False)  # the teacher's, as trained

    @classmethod
    def fresh(cls, dims: EncoderDims, config: FrontEndConfig) -> Self:
        """`dims` with the teacher's tag layer, tag names and wheel sha256, read from its
        weights' cache (fetched when missing); `MusicnnWeightsError` naming `coldstart
        teacher fetch` when they can be neither read nor fetched (the fit needs the
        teacher anyway)."""
        from training.encoders.musicnn_encoders import MSD_MODEL
        from training.encoders.musicnn_weights import load_weights

        if not isinstance(dims, StudentDims):
            raise TypeError(f"{cls.name} takes StudentDims, got {type(dims).__name__}")
        weights = load_weights(MSD_MODEL)
        dims = dataclasses.replace(
            dims, tag_names=weights.tag_names, wheel_sha256=weights.source["wheel_sha256"]
        )
        encoder = cls(dims, config)
        if encoder.tags is not None:
            layer = {
                key.removeprefix(TAG_LAYER): value
                for key, value in weights.state_dict.items()
                if key.startswith(TAG_LAYER)
            }
            encoder.tags.load_state_dict(layer)
        return encoder

    @property
    def tag_names(self) -> tuple[str, ...]:
        return self.dims.tag_names

    def tag_probabilities(self, pooled: Tensor) -> Tensor:
        """Mimicked features (B, teacher_dims) -> the teacher's tags' probabilities (B, 50)."""
        if self.tags is None:
            return pooled[:, :0]
        return torch.sigmoid(self.tags(pooled))

    def pool(self, mel: Tensor, lengths: Tensor | None) -> Tensor:
        return self.mimic(super().pool(mel, lengths))
