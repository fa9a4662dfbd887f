"""`musicnn` and `musicnn-msd`: Pons & Serra's musically motivated CNN as a content encoder.

Both wrap the port of the `musicnn` wheel's network (`training.encoders.musicnn.Musicnn`,
its front end `MUSICNN_FRONT_END` inside): timbral and temporal filters, the mid end, the
max and mean over time, then the back end's dense layer and batch norm. The pooled
features of the protocol are that back end's output, the 200 "penultimate" features (the
teacher's, for `musicnn-msd`); a new head (dense layers with dropout) regresses the WMF
factors from them, and the content embedding is their leading singular directions.

- `musicnn` learns every weight from scratch on the platform's listens (its widths can be
  narrowed: `MusicnnDims`).
- `musicnn-msd` starts from Pons' weights trained on the Million Song Dataset's tags
  (transfer learning, `training.encoders.musicnn_weights`: fetched once, cached outside the
  repository; without network or cache, a `MusicnnWeightsError` naming `coldstart teacher
  fetch`). `frozen` keeps the pretrained network as it is (eval mode, no gradients) and
  trains the new head only; then the network's MSD tag head still matches its features,
  and the encoder offers the 50 tags (`tag_names`, `tag_probabilities`) at no extra cost. A
  fine-tuned network no longer matches its tag head, so it carries none. The wheel's
  sha256 is saved in the dims (`encoder.json` and the manifest's parameters).

The training crops are the front end's `window_frames` (187 frames, 2.99 s: the patches
the MSD model was trained on); serving takes the whole clip, at least one patch long.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor

from audio.config import FrontEndConfig
from training.encoders.base import ContentEncoder, EncoderDims, dense_head
from training.encoders.musicnn import MUSICNN_FRONT_END, Musicnn

# The widths of the wheel's MSD_musicnn (`width`, `mid_end_filters`, `penultimate_units`).
MSD_WIDTHS = (1.6, 64, 200)
MSD_MODEL = "MSD_musicnn"


@dataclass(frozen=True, kw_only=True)
class MusicnnDims(EncoderDims):
    """Sizes of a musicnn encoder; saved beside its weights (`encoder.json`).

    `width`, `mid_end_filters`, `penultimate_units`: the network's (the wheel's defaults,
    about 0.79 M weights); `hidden` the dense layers of the factor head between the
    penultimate features and the factors, each after a dropout of `dropout`.
    """

    width: float = MSD_WIDTHS[0]
    mid_end_filters: int = MSD_WIDTHS[1]
    penultimate_units: int = MSD_WIDTHS[2]
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width <= 0 or self.mid_end_filters < 1 or self.penultimate_units < 1:
            raise ValueError(f"{type(self).__name__}: sizes must be positive ({self})")
        if int(self.width * 32) < 1:
            raise ValueError(f"{type(self).__name__}: width {self.width} leaves no filters")

    @property
    def pooled_dims(self) -> int:
        """The penultimate features' width."""
        return self.penultimate_units

    @property
    def min_frames(self) -> int:
        """One patch, what the network was trained on."""
        return MUSICNN_FRONT_END.window_frames


@dataclass(frozen=True, kw_only=True)
class MusicnnMsdDims(MusicnnDims):
    """`MusicnnDims` at MSD_musicnn's widths, and what the weights came from.

    `frozen`: the pretrained network stays as trained (only the head learns), and its tag
    head with it (`tag_names`, set by `MusicnnMsdEncoder.fresh` from the weights; empty for
    a fine-tuned network). The default: in the same training time it scored above
    fine-tuning on a 600-song world (BENCHMARKS.md, `bench/encoders.py`), and it keeps the
    tags. `wheel_sha256`: the sha256 of the wheel the weights were read
    from (None only before `fresh` filled it in).
    """

    frozen: bool = True
    tag_names: tuple[str, ...] = ()
    wheel_sha256: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        widths = (self.width, self.mid_end_filters, self.penultimate_units)
        if widths != MSD_WIDTHS:
            raise ValueError(f"MusicnnMsdDims: MSD_musicnn's widths are {MSD_WIDTHS}, not {widths}")
        if self.tag_names and not self.frozen:
            raise ValueError("MusicnnMsdDims: a fine-tuned network's features no longer match tags")


class MusicnnEncoder(ContentEncoder):
    """musicnn's log-mel (B, 96, T) -> the network's penultimate features -> dense head."""

    name = "musicnn"
    summary = "musically motivated CNN (Pons & Serra 2019) from scratch, ~0.8 M weights"
    dims_type = MusicnnDims
    default_front_end = MUSICNN_FRONT_END
    small_dims = MusicnnDims(width=0.2, mid_end_filters=8, penultimate_units=16, hidden=(16,))

    dims: MusicnnDims

    def __init__(self, dims: MusicnnDims, config: FrontEndConfig = MUSICNN_FRONT_END) -> None:
        super().__init__(dims, config)
        self.network = Musicnn(
            self.tag_names, dims.width, dims.mid_end_filters, dims.penultimate_units, config
        )
        self.front_end = self.network.front_end
        self.head = dense_head(dims.pooled_dims, dims.hidden, dims.dropout, dims.n_factors)

    def pool(self, mel: Tensor, lengths: Tensor | None) -> Tensor:
        return self.network.back_end(self.network.pool(mel, lengths))


class MusicnnMsdEncoder(MusicnnEncoder):
    """`musicnn` started from MSD_musicnn's weights; frozen, it offers the MSD tags."""

    name = "musicnn-msd"
    summary = "musicnn trained on the Million Song Dataset's tags (transfer), with its 50 tags"
    dims_type = MusicnnMsdDims
    small_dims = MusicnnMsdDims(hidden=(16,))

    dims: MusicnnMsdDims

    def __init__(self, dims: MusicnnMsdDims, config: FrontEndConfig = MUSICNN_FRONT_END) -> None:
        super().__init__(dims, config)
        if dims.frozen:
            self.network.requires_grad_(False)
            self.network.eval()

    @classmethod
    def fresh(cls, dims: EncoderDims, config: FrontEndConfig) -> Self:
        """`dims` behind MSD_musicnn's weights (their tag names kept when `frozen`), read
        from the cache (fetched when missing); `MusicnnWeightsError` naming `coldstart
        teacher fetch` when they can be neither read nor fetched."""
        from training.encoders.musicnn_weights import load_weights

        if not isinstance(dims, MusicnnMsdDims):
            raise TypeError(f"{cls.name} takes MusicnnMsdDims, got {type(dims).__name__}")
        weights = load_weights(MSD_MODEL)
        tags = weights.tag_names if dims.frozen else ()
        dims = dataclasses.replace(
            dims, tag_names=tags, wheel_sha256=weights.source["wheel_sha256"]
        )
        encoder = cls(dims, config)
        network = {k: v for k, v in weights.state_dict.items() if tags or not k.startswith("tags.")}
        encoder.network.load_network_weights(network)
        return encoder

    @property
    def tag_names(self) -> tuple[str, ...]:
        return self.dims.tag_names

    def tag_probabilities(self, pooled: Tensor) -> Tensor:
        """Penultimate features (B, 200) -> the MSD tags' probabilities (B, 50) (frozen only)."""
        return torch.sigmoid(self.network.tag_logits(pooled))

    def train(self, mode: bool = True) -> Self:
        """Training mode for the head; a frozen network stays in eval mode (its batch norms'
        statistics and its dropout as trained)."""
        super().train(mode)
        if self.dims.frozen:
            self.network.eval()
        return self
