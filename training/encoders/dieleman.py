"""`dieleman`: the CNN of van den Oord, Dieleman & Schrauwen (NIPS 2013) over 3-s log-mels.

Architecture after van den Oord, Dieleman & Schrauwen (NIPS 2013) and Dieleman &
Schrauwen (ICASSP 2014): the project's log-mel front end (`audio.mel.LogMel`, inside the
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

The content embedding (the service's "content" space) is the pooled features projected
onto their leading singular directions over the training songs (`training.encoders.base`,
`training.content_space`): the head, trained to regress listening, discards much of what
tells recordings apart (BENCHMARKS.md, real music); the pooled features keep it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audio.config import FRONT_END, FrontEndConfig
from audio.mel import LogMel
from training.encoders.base import ContentEncoder, EncoderDims, dense_head, masked_global_pool


@dataclass(frozen=True, kw_only=True)
class DielemanDims(EncoderDims):
    """Sizes of the `dieleman` CNN; saved beside its weights (`encoder.json`).

    `channels[i]` is the width of conv layer i; `pools[i]` the max-pooling after conv
    layer i (the last conv layer is followed by the global pooling instead, so
    `len(pools) == len(channels) - 1`). `hidden` lists the dense layers between the
    global pooling and the output. The defaults (about 0.2 M weights) train on two CPU
    cores in minutes on the demo world; the paper's network was of the order of
    channels=(256, 256, 512), hidden=(2048, 2048).
    """

    channels: tuple[int, ...] = (64, 64, 128)
    kernel_size: int = 4
    pools: tuple[int, ...] = (4, 2)
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.pools) != len(self.channels) - 1:
            raise ValueError(
                f"DielemanDims: {len(self.channels)} conv layers need {len(self.channels) - 1} "
                f"poolings, got {len(self.pools)}"
            )
        if self.kernel_size < 1 or min(self.pools, default=1) < 1:
            raise ValueError(f"DielemanDims: sizes must be positive ({self})")

    @property
    def pooled_dims(self) -> int:
        """Width of the global pooling's output: mean, max and L2 of the last conv layer."""
        return 3 * self.channels[-1]

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


class DielemanEncoder(ContentEncoder):
    """Log-mel (B, n_mels, T) -> 1-D convs over time -> mean/max/L2 pooling -> dense head."""

    name = "dieleman"
    summary = "1-D CNN over 3-s log-mels (van den Oord, Dieleman & Schrauwen 2013), ~0.2 M weights"
    dims_type = DielemanDims
    default_front_end = FRONT_END
    small_dims = DielemanDims(channels=(16, 16, 32), hidden=(64,))

    dims: DielemanDims

    def __init__(self, dims: DielemanDims, config: FrontEndConfig = FRONT_END) -> None:
        super().__init__(dims, config)
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
        self.head = dense_head(dims.pooled_dims, dims.hidden, dims.dropout, dims.n_factors)

    def pool(self, mel: Tensor, lengths: Tensor | None) -> Tensor:
        features = self.convs(self.input_norm(mel))
        return masked_global_pool(
            features, None if lengths is None else self.dims.frames_out(lengths)
        )
