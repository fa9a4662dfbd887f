"""The content encoder: audio in, a song's latent factor vector and its content embedding out.

Architecture after van den Oord, Dieleman & Schrauwen (NIPS 2013) and Dieleman &
Schrauwen (ICASSP 2014): the shared log-mel front end (`audio.mel.LogMel`, inside the
module so that a checkpoint carries its own front end), a normalisation of the mel bands,
1-D convolutions over time with the mel bands as input channels (filter width 4,
max-pooling by 4 then 2, batch norm, ReLU), global temporal pooling (mean, max and L2
over time, concatenated), then dense layers with dropout down to the factor vector.

All convolutions are 'valid' (no padding) and every pooling floors, so an output frame
only ever sees input frames inside the clip: with the lengths of a padded batch carried
through the stack and padded frames masked out of the global pooling, a padded batch
gives the same vectors as one clip at a time. The global pooling is what lets a whole
clip of any length (at least `min_frames`) go through in one forward pass; training
uses 3-second crops, serving the whole clip.

Two outputs from one pass: the head's predicted factors (the cf space's placement of a new
song, and what the evaluation scores), and the content embedding (the service's "content"
space): the globally pooled convolution features projected onto their leading singular
directions over the training songs (`set_content_projection`, fitted once training is done
by `training.content_space`). The head, trained to regress listening,
discards much of what tells recordings apart (BENCHMARKS.md, real music); the pooled
features keep it. `EncoderDims.content_dims` None: the content embedding is the factors
themselves (encoders saved before the embedding existed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from audio.config import FRONT_END, FrontEndConfig
from audio.mel import LogMel

# Leading singular directions of the pooled features kept as the content embedding: on the
# real-music check (BENCHMARKS.md) they group as the full 384 do, at a third of the bytes.
CONTENT_DIMS = 128


@dataclass(frozen=True)
class EncoderDims:
    """Sizes of the encoder; saved beside its weights (`encoder.json`).

    `channels[i]` is the width of conv layer i; `pools[i]` the max-pooling after conv
    layer i (the last conv layer is followed by the global pooling instead, so
    `len(pools) == len(channels) - 1`). `hidden` lists the dense layers between the
    global pooling and the output. `content_dims`: the content embedding's size, the
    pooled features' leading singular directions (all of them for a narrower stack; None:
    the factors themselves, as in encoders saved before the embedding existed). The
    defaults (about 0.2 M weights) train on two CPU cores in minutes on the demo world;
    the paper's network was of the order of channels=(256, 256, 512), hidden=(2048, 2048).
    """

    n_factors: int = 32
    channels: tuple[int, ...] = (64, 64, 128)
    kernel_size: int = 4
    pools: tuple[int, ...] = (4, 2)
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.1
    content_dims: int | None = CONTENT_DIMS

    def __post_init__(self) -> None:
        if len(self.pools) != len(self.channels) - 1:
            raise ValueError(
                f"EncoderDims: {len(self.channels)} conv layers need {len(self.channels) - 1} "
                f"poolings, got {len(self.pools)}"
            )
        if self.n_factors < 1 or self.kernel_size < 1 or min(self.pools, default=1) < 1:
            raise ValueError(f"EncoderDims: sizes must be positive ({self})")
        if self.content_dims is not None and self.content_dims < 1:
            raise ValueError(f"EncoderDims: content_dims must be positive or None ({self})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderDims:
        """Inverse of `to_dict` (JSON turns the tuples into lists)."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"EncoderDims: unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @property
    def pooled_dims(self) -> int:
        """Width of the global pooling's output: mean, max and L2 of the last conv layer."""
        return 3 * self.channels[-1]

    @property
    def embedding_dims(self) -> int:
        """Width of the content embedding: `content_dims` (at most `pooled_dims`), or
        `n_factors` when the factors are the content embedding."""
        if self.content_dims is None:
            return self.n_factors
        return min(self.content_dims, self.pooled_dims)

    def frames_out(self, frames: Tensor) -> Tensor:
        """Frames left after the conv stack for inputs of `frames` frames (any int tensor)."""
        for pool in self.pools:
            frames = torch.div(frames - self.kernel_size + 1, pool, rounding_mode="floor")
        return frames - self.kernel_size + 1

    @property
    def min_frames(self) -> int:
        """Fewest input frames that leave one frame for the global pooling."""
        frames = 1
        for pool in reversed(self.pools):
            frames = (frames + self.kernel_size - 1) * pool
        return frames + self.kernel_size - 1


RMS_EPS = 1e-6


class ClipTooShortError(ValueError):
    """A clip has fewer frames than the conv stack needs (`EncoderDims.min_frames`)."""


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


class ContentEncoder(nn.Module):
    """Waveform or log-mel -> predicted latent factors (B, n_factors) float32 (`forward`,
    `forward_mel`), and with them the content embedding (`embed_mel`)."""

    content_projection: Tensor

    def __init__(self, dims: EncoderDims, config: FrontEndConfig = FRONT_END) -> None:
        super().__init__()
        self.dims = dims
        self.config = config
        self.front_end = LogMel(config)
        # Log-mel values have a band-dependent offset and scale; learn to standardise them.
        self.input_norm = nn.BatchNorm1d(config.n_mels)
        layers: list[nn.Module] = []
        in_channels = config.n_mels
        for index, out_channels in enumerate(dims.channels):
            layers += [
                nn.Conv1d(in_channels, out_channels, dims.kernel_size, bias=False),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(inplace=True),
            ]
            if index < len(dims.pools):
                layers.append(nn.MaxPool1d(dims.pools[index]))
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        dense: list[nn.Module] = []
        width = 3 * in_channels
        for hidden in dims.hidden:
            dense += [nn.Dropout(dims.dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        dense += [nn.Dropout(dims.dropout), nn.Linear(width, dims.n_factors)]
        self.head = nn.Sequential(*dense)
        if dims.content_dims is not None:
            # Saved with the weights; identity-like until `set_content_projection`.
            self.register_buffer(
                "content_projection", torch.eye(dims.pooled_dims)[:, : dims.embedding_dims]
            )

    def pooled_mel(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Log-mels (B, n_mels, T) float -> globally pooled conv features (B, pooled_dims).

        `lengths` (B,) int: the real frames of each row of a padded batch (None: all T).
        Each row must hold at least `dims.min_frames` frames.
        """
        if mel.ndim != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(
                f"expected (B, {self.config.n_mels}, T) log-mels, got {tuple(mel.shape)}"
            )
        shortest = int(lengths.min()) if lengths is not None else mel.shape[2]
        if shortest < self.dims.min_frames:
            raise ClipTooShortError(
                f"clip of {shortest} frames; the encoder needs at least {self.dims.min_frames}"
            )
        features = self.convs(self.input_norm(mel.float()))
        pooled_lengths = None if lengths is None else self.dims.frames_out(lengths.to(mel.device))
        return masked_global_pool(features, pooled_lengths)

    def forward_mel(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Log-mels (B, n_mels, T) float -> factors (B, n_factors) float32 (see `pooled_mel`)."""
        return self.head(self.pooled_mel(mel, lengths))

    def embed_mel(self, mel: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Log-mels (B, n_mels, T) -> (factors (B, n_factors), content (B, embedding_dims))
        from one pass (see `pooled_mel`)."""
        pooled = self.pooled_mel(mel, lengths)
        factors = self.head(pooled)
        if self.dims.content_dims is None:
            return factors, factors
        return factors, pooled @ self.content_projection

    def set_content_projection(self, projection: Tensor) -> None:
        """Fix the content embedding `pooled @ projection`, `projection` (pooled_dims,
        embedding_dims) (`training.content_space` fits it)."""
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
        other = ContentEncoder(
            dataclasses.replace(self.dims, content_dims=content_dims), self.config
        )
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
