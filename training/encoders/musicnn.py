"""musicnn (Pons & Serra 2019), the musically motivated spectrogram CNN, in PyTorch.

The network of the `musicnn` wheel's `models.build_musicnn` (its `MSD_musicnn` and
`MTT_musicnn` weights load into it: `training.encoders.musicnn_weights`), layer for layer:

- input: musicnn's log-mel (`audio.musicnn_input`), (B, 96, T), batch-normalised as one
  channel;
- front end (Pons' word for the first layers): timbral filters tall in frequency (7 frames
  x 38 and x 67 bands, 204 each, the time axis padded 3 + 3) and temporal filters long in
  time (128, 64 and 32 frames x 1 band, 51 each, "same" padding with the extra pad at the
  end), each conv -> ReLU -> batch norm, then max-pooled over the whole frequency axis: 561
  features a frame;
- mid end: 1-D convolutions over time (7 frames; 561 -> 64, then two 64 -> 64 with
  residuals), dense-concatenated with the front end: 561 + 64 + 64 + 64 = 753 a frame;
- back end: max and mean over all frames, interleaved (max0, mean0, max1, ...) into the
  1,506 pooled features, batch norm, dropout, dense 200 -> ReLU -> batch norm (the
  "penultimate" features), dropout, dense to the tag logits (50 for MSD and MTT).

TensorFlow's batch norm epsilon (1e-3) and momentum (0.99, torch's 0.01) are kept. The
pooling over time is global, so a batch of 187-frame patches (what it was trained on) and
one whole clip of any length of at least a patch go through the same forward pass; a
whole clip's max pooling sees more frames than a patch's, so its features are not the
mean of its patches' (see `clip_patches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from audio.frontend import mel_windows
from audio.musicnn_input import MUSICNN_FRONT_END, MusicnnLogMel
from training.encoder import ClipTooShortError

BN_EPS = 1e-3  # TensorFlow's default
BN_MOMENTUM = 0.01  # TensorFlow's 0.99 decay
TIMBRAL_FRAMES = 7
TIMBRAL_BANDS = (38, 67)  # int(0.4 * 96), int(0.7 * 96)
TIMBRAL_FILTERS = 204  # int(1.6 * 128)
TEMPORAL_FRAMES = (128, 64, 32)
TEMPORAL_FILTERS = 51  # int(1.6 * 32)
FRONT_END_DIMS = len(TIMBRAL_BANDS) * TIMBRAL_FILTERS + len(TEMPORAL_FRAMES) * TEMPORAL_FILTERS
MID_END_FILTERS = 64
MID_END_FRAMES = 7
FRAME_DIMS = FRONT_END_DIMS + 3 * MID_END_FILTERS  # 753
POOLED_DIMS = 2 * FRAME_DIMS  # 1,506: max and mean of every frame feature
PENULTIMATE_DIMS = 200
DROPOUT = 0.5


class MusicnnFeatures(NamedTuple):
    """One forward pass: `pooled` (B, 1506) the max and mean over time of the 753 frame
    features, interleaved, before the back end's batch norm (the wheel's `max_pool` and
    `mean_pool`); `penultimate` (B, 200) after the last batch norm; `logits` (B, n_tags),
    or (B, 0) for a network without a tag head."""

    pooled: Tensor
    penultimate: Tensor
    logits: Tensor


def _conv_relu_norm(conv: nn.Module, norm: nn.Module) -> nn.Sequential:
    """The wheel's order: convolution, ReLU, then batch norm."""
    return nn.Sequential(conv, nn.ReLU(inplace=True), norm)


class Musicnn(nn.Module):
    """musicnn's log-mels (B, 96, T >= 187) -> `MusicnnFeatures` (`forward`), or 16 kHz mono
    waveforms -> the same (`features`), the front end (`front_end`) inside.

    `tag_names`: the tag head's labels (the wheel's `MSD_LABELS` for `MSD_musicnn`); empty,
    no tag head (logits of width 0).
    """

    def __init__(self, tag_names: Sequence[str] = ()) -> None:
        super().__init__()
        self.tag_names = tuple(tag_names)
        self.config = MUSICNN_FRONT_END
        self.front_end = MusicnnLogMel(self.config)
        self.input_norm = nn.BatchNorm2d(1, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.timbral = nn.ModuleList(
            _conv_relu_norm(
                nn.Conv2d(
                    1, TIMBRAL_FILTERS, (TIMBRAL_FRAMES, bands), padding=(TIMBRAL_FRAMES // 2, 0)
                ),
                nn.BatchNorm2d(TIMBRAL_FILTERS, eps=BN_EPS, momentum=BN_MOMENTUM),
            )
            for bands in TIMBRAL_BANDS
        )
        self.temporal = nn.ModuleList(
            _conv_relu_norm(
                nn.Conv2d(1, TEMPORAL_FILTERS, (frames, 1)),
                nn.BatchNorm2d(TEMPORAL_FILTERS, eps=BN_EPS, momentum=BN_MOMENTUM),
            )
            for frames in TEMPORAL_FRAMES
        )
        self.mid_end = nn.ModuleList(
            _conv_relu_norm(
                nn.Conv1d(width, MID_END_FILTERS, MID_END_FRAMES, padding=MID_END_FRAMES // 2),
                nn.BatchNorm1d(MID_END_FILTERS, eps=BN_EPS, momentum=BN_MOMENTUM),
            )
            for width in (FRONT_END_DIMS, MID_END_FILTERS, MID_END_FILTERS)
        )
        self.pooled_norm = nn.BatchNorm1d(POOLED_DIMS, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.penultimate = nn.Sequential(
            nn.Dropout(DROPOUT),
            nn.Linear(POOLED_DIMS, PENULTIMATE_DIMS),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(PENULTIMATE_DIMS, eps=BN_EPS, momentum=BN_MOMENTUM),
        )
        self.tags = (
            nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(PENULTIMATE_DIMS, len(self.tag_names)))
            if self.tag_names
            else None
        )

    @property
    def min_frames(self) -> int:
        """Fewest input frames: one patch, what the network was trained on."""
        return self.config.window_frames

    def frame_features(self, mel: Tensor) -> Tensor:
        """Log-mels (B, 96, T) -> the front and mid end's features (B, 753, T)."""
        if mel.ndim != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(
                f"expected (B, {self.config.n_mels}, T) log-mels, got {tuple(mel.shape)}"
            )
        if mel.shape[2] < self.min_frames:
            raise ClipTooShortError(
                f"clip of {mel.shape[2]} frames; musicnn needs at least {self.min_frames}"
            )
        spectrogram = self.input_norm(mel.float().transpose(1, 2)[:, None])  # (B, 1, T, 96)
        maps = [block(spectrogram).amax(dim=3) for block in self.timbral]
        for frames, block in zip(TEMPORAL_FRAMES, self.temporal, strict=True):
            padded = functional.pad(spectrogram, (0, 0, (frames - 1) // 2, frames // 2))
            maps.append(block(padded).amax(dim=3))
        front = torch.cat(maps, dim=1)  # (B, 561, T)
        layers = [front, self.mid_end[0](front)]
        for block in self.mid_end[1:]:
            layers.append(block(layers[-1]) + layers[-1])
        return torch.cat(layers, dim=1)

    def forward(self, mel: Tensor) -> MusicnnFeatures:
        frames = self.frame_features(mel)
        pooled = torch.stack([frames.amax(dim=2), frames.mean(dim=2)], dim=2).flatten(1)
        penultimate = self.penultimate(self.pooled_norm(pooled))
        logits = penultimate[:, :0] if self.tags is None else self.tags(penultimate)
        return MusicnnFeatures(pooled, penultimate, logits)

    def features(self, waveform: Tensor) -> MusicnnFeatures:
        """Mono waveforms (B, samples) or (samples,) at 16 kHz -> `MusicnnFeatures`."""
        return self(self.front_end(waveform))

    def tag_probabilities(self, mel: Tensor) -> Tensor:
        """Log-mels (B, 96, T) -> each tag's probability (B, n_tags), the sigmoid of its logit."""
        return torch.sigmoid(self(mel).logits)


def clip_patches(mel: np.ndarray | Tensor) -> Tensor:
    """A clip's log-mel (96, T) -> its non-overlapping 187-frame patches (n, 96, 187)
    float32, a tail shorter than a patch dropped: the wheel's `extractor` input."""
    values = mel.numpy() if isinstance(mel, Tensor) else mel
    return torch.from_numpy(mel_windows(values, MUSICNN_FRONT_END.window_frames)).float()
