"""The content encoder protocol: what every architecture is, and all the rest of the house uses.

A content encoder turns audio into a song's predicted latent factors and its content
embedding. Training, the checkpoint loader, the embedding path, the service and Spark
depend on `ContentEncoder` below, never on one architecture; each architecture is one
module of this package and one row of its table (`training.encoders`).

What an architecture provides (class attributes, then the one method):

- `name`: its name in the table, in `encoder.json` and on the command line;
- `summary`: one line for help texts;
- `dims_type`: its sizes, a frozen `EncoderDims` subclass (saved in `encoder.json`);
- `default_front_end`: the `audio.config.FrontEndConfig` it trains behind unless it is
  fine-tuned from a checkpoint saved with another;
- `small_dims`: a narrow instance of its sizes that trains on the tiny test world in
  seconds (the tests run every architecture at it);
- `__init__(dims, config)`: call `super().__init__(dims, config)` first, then set
  `self.front_end` (an `nn.Module`: waveform (B, samples) at `config.sample_rate` ->
  model input (B, input_bands, frames) float32, exactly what `audio.frontend.log_mel`
  stores in the mel cache for `config`) and `self.head` (pooled features
  (B, pooled_dims) -> factors (B, n_factors));
- `fresh(dims, config)` (a class method; the base's builds `cls(dims, config)`): the
  encoder a fit starts from, where an architecture starts from trained weights
  (`musicnn-msd`); loading a checkpoint builds `cls(dims, config)` and loads its weights;
- `tag_names` and `tag_probabilities(pooled)`, for an architecture that carries a tag head
  over its pooled features (the base's: none);
- `teacher`: the name of the architecture whose pooled features this one learns to predict
  beside the factors (knowledge distillation, `training.distillation`; the pooled widths
  must match), or None (the base's: none);
- `pool(mel, lengths)`: model input (B, input_bands, T) float32 -> globally pooled
  features (B, pooled_dims); `lengths` (B,) int the real frames of each row of a
  zero-padded batch, or None. A padded row must give the vector it gives alone (mask
  the padding out of the pooling: `masked_global_pool`).

What the base gives every architecture, the same for all: the input checks
(`pooled_mel`), `forward_mel`, `embed_mel` and `embed_tagged`, `forward` from waveforms,
and the content projection (a buffer of the state dict, `set_content_projection`,
`with_content_dims`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from audio.config import FrontEndConfig

# Leading singular directions of the pooled features kept as the content embedding: on the
# real-music check (BENCHMARKS.md) they group as the full 384 do, at a third of the bytes.
CONTENT_DIMS = 128
RMS_EPS = 1e-6


class EncoderWeightsError(RuntimeError):
    """The trained weights an architecture starts from (`ContentEncoder.fresh`) are missing
    and cannot be had; the message says what to run."""


class ClipTooShortError(ValueError):
    """A clip has fewer frames than the encoder needs (`EncoderDims.min_frames`)."""


@dataclass(frozen=True, kw_only=True)
class EncoderDims(ABC):
    """The sizes every architecture has; each subclasses this with its own fields.

    `n_factors`: the factors it predicts (training sets it to the factorization's).
    `content_dims`: the content embedding's size, the pooled features' leading singular
    directions (all of them for a narrower pool; None: the factors themselves, as in
    encoders saved before the embedding existed). Saved in `encoder.json` (`to_dict`).
    """

    n_factors: int = 32
    content_dims: int | None = CONTENT_DIMS

    def __post_init__(self) -> None:
        if self.n_factors < 1:
            raise ValueError(f"{type(self).__name__}: n_factors must be positive ({self})")
        if self.content_dims is not None and self.content_dims < 1:
            raise ValueError(
                f"{type(self).__name__}: content_dims must be positive or None ({self})"
            )

    @property
    @abstractmethod
    def pooled_dims(self) -> int:
        """Width of the globally pooled features the head and the content space read."""

    @property
    @abstractmethod
    def min_frames(self) -> int:
        """Fewest input frames a clip must have (shorter: `ClipTooShortError`)."""

    @property
    def projected_dims(self) -> int:
        """Width of the content projection of the pooled features (their leading singular
        directions): `content_dims`, at most `pooled_dims`; 0 without one."""
        return 0 if self.content_dims is None else min(self.content_dims, self.pooled_dims)

    @property
    def embedding_dims(self) -> int:
        """Width of the content embedding: the projected pooled features (`projected_dims`),
        or `n_factors` when the factors are the content embedding."""
        return self.n_factors if self.content_dims is None else self.projected_dims

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Inverse of `to_dict` (JSON turns the tuples into lists); `ValueError` for a
        field this architecture does not have."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def dense_head(
    pooled_dims: int, hidden: tuple[int, ...], dropout: float, n_factors: int
) -> nn.Sequential:
    """Pooled features (B, pooled_dims) -> factors (B, n_factors): a dense layer with ReLU per
    width of `hidden`, then a linear output, each after a dropout of `dropout`."""
    layers: list[nn.Module] = []
    width = pooled_dims
    for units in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(width, units), nn.ReLU(inplace=True)]
        width = units
    return nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(width, n_factors))


def masked_global_pool(features: Tensor, lengths: Tensor | None) -> Tensor:
    """Mean, max and L2 (root mean square) over time of `features` (B, C, T) -> (B, 3C).

    Frames at or beyond `lengths[b]` are padding and take no part. The L2 pooling is the
    root *mean* square, so that a 3-second crop and a whole clip give vectors of the same
    scale; `RMS_EPS` keeps its gradient finite for a channel that is zero all along.
    """
    if lengths is None:
        rms = (features.square().mean(dim=2) + RMS_EPS).sqrt()
        return torch.cat([features.mean(dim=2), features.amax(dim=2), rms], dim=1)
    valid = torch.arange(features.shape[2], device=features.device) < lengths[:, None]
    valid = valid[:, None, :]
    count = lengths.to(features.dtype)[:, None]
    zeroed = features * valid
    mean = zeroed.sum(dim=2) / count
    peak = features.masked_fill(~valid, float("-inf")).amax(dim=2)
    rms = (zeroed.square().sum(dim=2) / count + RMS_EPS).sqrt()
    return torch.cat([mean, peak, rms], dim=1)


class ContentEncoder(nn.Module, ABC):
    """Waveform or model input -> predicted latent factors (B, n_factors) float32
    (`forward`, `forward_mel`), and with them the content embedding (`embed_mel`).

    The protocol every architecture implements (see the module docstring); `dims` and
    `config` (its front end) are what `training.checkpoint` saves beside the weights.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    dims_type: ClassVar[type[EncoderDims]]
    default_front_end: ClassVar[FrontEndConfig]
    small_dims: ClassVar[EncoderDims]
    teacher: ClassVar[str | None] = None

    dims: EncoderDims
    config: FrontEndConfig
    front_end: nn.Module
    head: nn.Module
    content_projection: Tensor

    def __init__(self, dims: EncoderDims, config: FrontEndConfig) -> None:
        super().__init__()
        if not isinstance(dims, self.dims_type):
            raise TypeError(
                f"{self.name} takes {self.dims_type.__name__}, got {type(dims).__name__}"
            )
        self.dims = dims
        self.config = config
        if dims.content_dims is not None:
            # Saved with the weights; identity-like until `set_content_projection`.
            self.register_buffer(
                "content_projection", torch.eye(dims.pooled_dims)[:, : dims.projected_dims]
            )

    @classmethod
    def fresh(cls, dims: EncoderDims, config: FrontEndConfig) -> Self:
        """The encoder a fit from scratch starts from: `cls(dims, config)`, its weights drawn
        from torch's generator (an architecture that starts from trained weights loads them
        here, raising `EncoderWeightsError` when they cannot be had)."""
        return cls(dims, config)

    @property
    def tag_names(self) -> tuple[str, ...]:
        """The labels of the tag head over the pooled features; empty: no tag head."""
        return ()

    def tag_probabilities(self, pooled: Tensor) -> Tensor:
        """Pooled features (B, pooled_dims) -> each tag's probability (B, len(tag_names))."""
        return pooled[:, :0]

    @property
    def input_bands(self) -> int:
        """Rows of the model input per frame (the front end's mel bands)."""
        return self.config.n_mels

    @abstractmethod
    def pool(self, mel: Tensor, lengths: Tensor | None) -> Tensor:
        """Model input (B, input_bands, T) float32 -> pooled features (B, pooled_dims);
        `lengths` (B,) int: real frames per row of a zero-padded batch, or None."""

    def pooled_mel(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Model input (B, input_bands, T) float -> globally pooled features (B, pooled_dims).

        `lengths` (B,) int: the real frames of each row of a padded batch (None: all T).
        Each row must hold at least `dims.min_frames` frames (`ClipTooShortError`).
        """
        if mel.ndim != 3 or mel.shape[1] != self.input_bands:
            raise ValueError(
                f"expected (B, {self.input_bands}, T) model input, got {tuple(mel.shape)}"
            )
        shortest = int(lengths.min()) if lengths is not None else mel.shape[2]
        if shortest < self.dims.min_frames:
            raise ClipTooShortError(
                f"clip of {shortest} frames; the encoder needs at least {self.dims.min_frames}"
            )
        return self.pool(mel.float(), None if lengths is None else lengths.to(mel.device))

    def forward_mel(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Model input (B, input_bands, T) -> factors (B, n_factors) float32 (see `pooled_mel`)."""
        return self.head(self.pooled_mel(mel, lengths))

    def embed_mel(self, mel: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Model input (B, input_bands, T) -> (factors (B, n_factors), content (B,
        embedding_dims)) from one pass (see `pooled_mel`)."""
        factors, content, _ = self.embed_tagged(mel, lengths)
        return factors, content

    def embed_tagged(
        self, mel: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Model input (B, input_bands, T) -> (factors (B, n_factors), content (B,
        embedding_dims), tag probabilities (B, len(tag_names))) from one pass: all that a
        served embedding holds (see `pooled_mel`). An architecture whose content or tags
        need more than the pooled features (`dieleman-msd`) overrides this."""
        pooled = self.pooled_mel(mel, lengths)
        factors, content = self.embed_pooled(pooled)
        return factors, content, self.tag_probabilities(pooled)

    def embed_pooled(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled features (B, pooled_dims) -> (factors (B, n_factors), projected content
        (B, projected_dims), or the factors when `content_dims` is None)."""
        factors = self.head(pooled)
        if self.dims.content_dims is None:
            return factors, factors
        return factors, pooled @ self.content_projection

    def set_content_projection(self, projection: Tensor) -> None:
        """Fix the content embedding `pooled @ projection`, `projection` (pooled_dims,
        projected_dims) (`training.content_space` fits it)."""
        if self.dims.content_dims is None:
            raise ValueError("this encoder's content embedding is its factors: no projection")
        expected = tuple(self.content_projection.shape)
        if tuple(projection.shape) != expected:
            raise ValueError(
                f"content projection of shape {tuple(projection.shape)}; expected {expected}"
            )
        self.content_projection.copy_(projection)

    def with_content_dims(self, content_dims: int | None) -> ContentEncoder:
        """This encoder's weights behind a content embedding of `content_dims` (itself when
        that is its own; else the projection starts as in a fresh encoder, to be fitted)."""
        if content_dims == self.dims.content_dims:
            return self
        other = type(self)(dataclasses.replace(self.dims, content_dims=content_dims), self.config)
        weights = {k: v for k, v in self.state_dict().items() if not k.startswith("content_")}
        other.load_state_dict({**other.state_dict(), **weights})
        return other.to(next(self.parameters()).device).train(self.training)

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Mono waveforms (B, samples) or (samples,) at the front end's rate -> (B, n_factors).

        `lengths` (B,) int: real samples per row of a zero-padded batch. Rows of
        different lengths go through the front end one by one, so that each clip's last
        frames are framed exactly as when it is alone (centred frames reach past the end).
        """
        if waveform.ndim == 1:
            waveform = waveform[None]
        if lengths is None or bool((lengths == waveform.shape[1]).all()):
            return self.forward_mel(self.front_end(waveform))
        mels = [
            self.front_end(row[: int(n)][None])[0] for row, n in zip(waveform, lengths, strict=True)
        ]
        frames = torch.tensor([m.shape[1] for m in mels], device=waveform.device)
        return self.forward_mel(
            nn.utils.rnn.pad_sequence([m.T for m in mels], batch_first=True).transpose(1, 2), frames
        )
