"""`samplecnn`: the sample-level CNN of Lee, Park, Kim & Nam (2017) on the raw waveform.

"Sample-level deep convolutional neural networks for music auto-tagging using raw
waveforms": no spectrogram at all; a strided convolution of 3 samples (stride 3), then
blocks of convolution (width 3) + batch norm + ReLU + max-pooling by 3, so that each block
sees three times longer stretches of sound; here global pooling over time (mean, max and
L2, as the other encoders) and a dense head down to the factor vector.

The front end is the decoded waveform (decode -> mono -> resample to 16 kHz; the cache
stores the samples as one float16 row under this front end's own fingerprint, see
`audio.config.FrontEndConfig.representation`). A training crop is 3 s, 48,000 samples, as
long as the mel models' windows; the paper's 3^9 model reads 59,049 samples at 22.05 kHz
(2.7 s) through 9 blocks, this one 3 s at 16 kHz through 8, which leave one frame of a
crop (a whole clip leaves more, and the global pooling takes them all).

Sized for two CPU cores: the paper's widths are 128 for the strided convolution and
128-512 in the blocks (about 2.4 M weights); here 16, then 16-128 (about 0.1 M weights in
the convolutions, 0.2 M with the head; some 25 M multiply-adds per 3-s crop, five times
the `dieleman` CNN's). Every convolution
is 'valid' and every pooling floors, so with the lengths carried through the stack a
zero-padded batch gives each clip the vectors it gets alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audio.config import FrontEndConfig
from audio.frontend import Waveform
from training.encoders.base import (
    ContentEncoder,
    EncoderDims,
    dense_head,
    masked_global_pool,
)

# Decoded, mono, resampled to 16 kHz; a training crop of 3 s.
WAVEFORM_FRONT_END = FrontEndConfig(
    representation="waveform",
    sample_rate=16000,
    hop_length=1,
    n_mels=1,
    f_max=8000.0,
    window_frames=48000,
)
FILTER = 3  # the "sample-level" filter: 3 samples, and every pooling by 3


@dataclass(frozen=True, kw_only=True)
class SampleCNNDims(EncoderDims):
    """Sizes of the `samplecnn` network; saved beside its weights (`encoder.json`).

    `stem_channels` is the width of the strided convolution (3 samples, stride 3);
    `channels[i]` the width of block i (conv 3 + max-pool 3); `hidden` the dense layers
    between the global pooling and the output.
    """

    stem_channels: int = 16
    channels: tuple[int, ...] = (16, 16, 32, 32, 64, 64, 128, 128)
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.channels or min(self.stem_channels, *self.channels) < 1:
            raise ValueError(f"SampleCNNDims: give positive widths, at least one block ({self})")

    @property
    def pooled_dims(self) -> int:
        """Width of the global pooling's output: mean, max and L2 of the last block."""
        return 3 * self.channels[-1]

    def frames_out(self, samples: Tensor) -> Tensor:
        """Frames left after the stack for inputs of `samples` samples (any int tensor)."""
        frames = torch.div(samples, FILTER, rounding_mode="floor")
        for _ in self.channels:
            frames = torch.div(frames - FILTER + 1, FILTER, rounding_mode="floor")
        return frames

    @property
    def min_frames(self) -> int:
        """Fewest input samples that leave one frame for the global pooling."""
        frames = 1
        for _ in self.channels:
            frames = frames * FILTER + FILTER - 1
        return frames * FILTER


class SampleCNNEncoder(ContentEncoder):
    """Waveform (B, 1, n) -> strided conv 3 -> blocks of conv 3 + max-pool 3 -> mean/max/L2
    pooling -> dense head."""

    name = "samplecnn"
    summary = "sample-level CNN on the raw 16 kHz waveform (Lee et al. 2017), ~0.2 M weights"
    dims_type = SampleCNNDims
    default_front_end = WAVEFORM_FRONT_END
    small_dims = SampleCNNDims(
        stem_channels=8, channels=(8, 8, 8, 16, 16, 16, 16, 16), hidden=(32,)
    )

    dims: SampleCNNDims

    def __init__(self, dims: SampleCNNDims, config: FrontEndConfig = WAVEFORM_FRONT_END) -> None:
        super().__init__(dims, config)
        if not config.is_waveform:
            raise ValueError(f"samplecnn reads a waveform front end, got {config.representation}")
        self.front_end = Waveform()
        layers: list[nn.Module] = [
            nn.Conv1d(1, dims.stem_channels, FILTER, stride=FILTER, bias=False),
            nn.BatchNorm1d(dims.stem_channels),
            nn.ReLU(inplace=True),
        ]
        in_channels = dims.stem_channels
        for out_channels in dims.channels:
            layers += [
                nn.Conv1d(in_channels, out_channels, FILTER, bias=False),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(FILTER),
            ]
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.head = dense_head(dims.pooled_dims, dims.hidden, dims.dropout, dims.n_factors)

    def pool(self, mel: Tensor, lengths: Tensor | None) -> Tensor:
        features = self.convs(mel)
        return masked_global_pool(
            features, None if lengths is None else self.dims.frames_out(lengths)
        )
