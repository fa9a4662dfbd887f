"""musicnn (Pons & Serra 2019), the musically motivated spectrogram CNN, in PyTorch.

The network of the `musicnn` wheel's `models.build_musicnn` (its `MSD_musicnn` and
`MTT_musicnn` weights load into it: `training.encoders.musicnn_weights`), layer for layer:

- input: musicnn's log-mel (`MUSICNN_FRONT_END` through `audio.mel.LogMel`: 16 kHz, 96
  Slaney bands with Slaney's normalisation, log10(1 + 10000 x)), (B, 96, T),
  batch-normalised as one channel;
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

The widths are the wheel's parameters (`width` 1.6 scales the front end's 128 and 32
filters, `mid_end_filters` 64, `penultimate_units` 200: MSD_musicnn and MTT_musicnn; its
"big" variant has 512 and 500), so a narrower one can be trained from scratch.
TensorFlow's batch norm epsilon (1e-3) and momentum (0.99, torch's 0.01) are kept.

The pooling over time is global, so a batch of 187-frame patches (what it was trained on)
and one whole clip of any length of at least a patch go through the same forward pass; a
whole clip's max pooling sees more frames than a patch's, so its features are not the
mean of its patches' (see `clip_patches`). A zero-padded batch of clips of different
lengths gives each clip's own features when `lengths` is given: the "same" convolutions
see zeros past each clip's end, as its own padding would be, and the pooling skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from audio.config import FrontEndConfig
from audio.frontend import mel_windows
from audio.mel import LogMel

# musicnn's input (Pons & Serra 2019): the MSD and MTT models were trained on librosa's mel
# power spectrogram with its defaults (Slaney scale and area normalisation, 0 to sr/2),
# n_fft 512, hop 256, centred frames (reflect padding, librosa's default then), compressed as
# log10(1 + 10000 x), cut into non-overlapping patches of 187 frames (2.98 s).
MUSICNN_FRONT_END = FrontEndConfig(
    sample_rate=16000,
    n_fft=512,
    hop_length=256,
    n_mels=96,
    f_min=0.0,
    f_max=8000.0,
    window_frames=187,
    log_offset=1e-4,  # log10(1 + x / 1e-4) = log10(1 + 10000 x)
    mel_scale="slaney",
    mel_norm="slaney",
    log_compression="log10_1p",
)

BN_EPS = 1e-3  # TensorFlow's default
BN_MOMENTUM = 0.01  # TensorFlow's 0.99 decay
TIMBRAL_FRAMES = 7
TIMBRAL_BANDS = (38, 67)  # int(0.4 * 96), int(0.7 * 96)
TEMPORAL_FRAMES = (128, 64, 32)
MID_END_FRAMES = 7
MID_END_LAYERS = 3
DROPOUT = 0.5


class MusicnnFeatures(NamedTuple):
    """One forward pass: `pooled` (B, pooled_dims: 1,506) the max and mean over time of the
    frame features (753), interleaved, before the back end's batch norm (the wheel's
    `max_pool` and `mean_pool`); `penultimate` (B, penultimate_units: 200) after the last
    batch norm; `logits` (B, n_tags), or (B, 0) for a network without a tag head."""

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
    no tag head (logits of width 0). The defaults of the widths are the wheel's; `config`
    the front end (96 bands: the timbral filters span 38 and 67 of them).
    """

    def __init__(
        self,
        tag_names: Sequence[str] = (),
        width: float = 1.6,
        mid_end_filters: int = 64,
        penultimate_units: int = 200,
        config: FrontEndConfig = MUSICNN_FRONT_END,
    ) -> None:
        super().__init__()
        if config.n_mels != MUSICNN_FRONT_END.n_mels:
            raise ValueError(
                f"musicnn's timbral filters span {TIMBRAL_BANDS} of"
                f" {MUSICNN_FRONT_END.n_mels} mel bands; this front end has {config.n_mels}"
            )
        self.tag_names = tuple(tag_names)
        self.config = config
        self.front_end = LogMel(self.config)
        timbral_filters, temporal_filters = int(width * 128), int(width * 32)
        front_dims = len(TIMBRAL_BANDS) * timbral_filters + len(TEMPORAL_FRAMES) * temporal_filters
        self.frame_dims = front_dims + MID_END_LAYERS * mid_end_filters
        self.pooled_dims = 2 * self.frame_dims
        self.penultimate_dims = penultimate_units

        def norm2d(channels: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)

        def norm1d(channels: int) -> nn.BatchNorm1d:
            return nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)

        self.input_norm = norm2d(1)
        self.timbral = nn.ModuleList(
            _conv_relu_norm(
                nn.Conv2d(
                    1, timbral_filters, (TIMBRAL_FRAMES, bands), padding=(TIMBRAL_FRAMES // 2, 0)
                ),
                norm2d(timbral_filters),
            )
            for bands in TIMBRAL_BANDS
        )
        self.temporal = nn.ModuleList(
            _conv_relu_norm(nn.Conv2d(1, temporal_filters, (frames, 1)), norm2d(temporal_filters))
            for frames in TEMPORAL_FRAMES
        )
        self.mid_end = nn.ModuleList(
            _conv_relu_norm(
                nn.Conv1d(channels, mid_end_filters, MID_END_FRAMES, padding=MID_END_FRAMES // 2),
                norm1d(mid_end_filters),
            )
            for channels in [front_dims] + [mid_end_filters] * (MID_END_LAYERS - 1)
        )
        self.pooled_norm = norm1d(self.pooled_dims)
        self.penultimate = nn.Sequential(
            nn.Dropout(DROPOUT),
            nn.Linear(self.pooled_dims, penultimate_units),
            nn.ReLU(inplace=True),
            norm1d(penultimate_units),
        )
        self.tags = (
            nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(penultimate_units, len(self.tag_names)))
            if self.tag_names
            else None
        )

    @property
    def min_frames(self) -> int:
        """Fewest input frames: one patch, what the network was trained on."""
        return self.config.window_frames

    def frame_features(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Log-mels (B, 96, T) -> the front and mid end's features (B, frame_dims, T).

        `lengths` (B,) int: the real frames of each row of a zero-padded batch (None: all
        T); the features past a row's length are zero. Raises `ValueError` for another
        shape or a row shorter than `min_frames`.
        """
        if mel.ndim != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(
                f"expected (B, {self.config.n_mels}, T) log-mels, got {tuple(mel.shape)}"
            )
        shortest = mel.shape[2] if lengths is None else int(lengths.min())
        if shortest < self.min_frames:
            raise ValueError(
                f"clip of {shortest} frames; musicnn needs at least {self.min_frames} (one patch)"
            )
        valid = None
        if lengths is not None:  # (B, 1, T): what each row's own zero padding would be
            valid = (torch.arange(mel.shape[2], device=mel.device) < lengths[:, None])[:, None]

        def in_clip(features: Tensor) -> Tensor:
            return features if valid is None else features * valid

        spectrogram = self.input_norm(mel.float().transpose(1, 2)[:, None])  # (B, 1, T, 96)
        if valid is not None:  # zero past the end after the norm, as TensorFlow pads
            spectrogram = spectrogram * valid[..., None]
        maps = [block(spectrogram).amax(dim=3) for block in self.timbral]
        for frames, block in zip(TEMPORAL_FRAMES, self.temporal, strict=True):
            padded = functional.pad(spectrogram, (0, 0, (frames - 1) // 2, frames // 2))
            maps.append(block(padded).amax(dim=3))
        layers = [in_clip(torch.cat(maps, dim=1))]  # (B, front dims, T)
        layers.append(in_clip(self.mid_end[0](layers[0])))
        for block in self.mid_end[1:]:
            layers.append(in_clip(block(layers[-1]) + layers[-1]))
        return torch.cat(layers, dim=1)

    def pool(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Log-mels (B, 96, T) -> the max and mean over time of the frame features,
        interleaved (B, pooled_dims); `lengths` as in `frame_features`."""
        frames = self.frame_features(mel, lengths)
        if lengths is None:
            peak, mean = frames.amax(dim=2), frames.mean(dim=2)
        else:
            valid = torch.arange(frames.shape[2], device=frames.device) < lengths[:, None]
            peak = frames.masked_fill(~valid[:, None], float("-inf")).amax(dim=2)
            mean = frames.sum(dim=2) / lengths.to(frames.dtype)[:, None]  # zero past the end
        return torch.stack([peak, mean], dim=2).flatten(1)  # max0, mean0, max1, ...

    def back_end(self, pooled: Tensor) -> Tensor:
        """Pooled features (B, pooled_dims) -> the penultimate features (B, penultimate_dims)."""
        return self.penultimate(self.pooled_norm(pooled))

    def tag_logits(self, penultimate: Tensor) -> Tensor:
        """Penultimate features (B, penultimate_dims) -> tag logits (B, n_tags); (B, 0)
        without a tag head."""
        return penultimate[:, :0] if self.tags is None else self.tags(penultimate)

    def forward(self, mel: Tensor, lengths: Tensor | None = None) -> MusicnnFeatures:
        """Log-mels (B, 96, T) -> `MusicnnFeatures`; `lengths` as in `frame_features`."""
        pooled = self.pool(mel, lengths)
        penultimate = self.back_end(pooled)
        return MusicnnFeatures(pooled, penultimate, self.tag_logits(penultimate))

    def features(self, waveform: Tensor) -> MusicnnFeatures:
        """Mono waveforms (B, samples) or (samples,) at 16 kHz -> `MusicnnFeatures`."""
        return self(self.front_end(waveform))

    def tag_probabilities(self, mel: Tensor) -> Tensor:
        """Log-mels (B, 96, T) -> each tag's probability (B, n_tags), the sigmoid of its logit."""
        return torch.sigmoid(self(mel).logits)

    def network_weights(self) -> dict[str, Tensor]:
        """The state dict without the front end's window and filterbank (functions of the
        config, not learned): what a converted checkpoint holds."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("front_end.")}

    def load_network_weights(self, weights: dict[str, Tensor]) -> None:
        """Load every learned weight of `weights` (strict), whether or not it also holds the
        front end's window and filterbank: those are functions of the config, not learned
        (converted checkpoints carry none)."""
        self.load_state_dict({**self.front_end.state_dict(prefix="front_end."), **weights})


def clip_patches(mel: np.ndarray | Tensor) -> Tensor:
    """A clip's log-mel (96, T) -> its non-overlapping 187-frame patches (n, 96, 187)
    float32, a tail shorter than a patch dropped: the wheel's `extractor` input."""
    values = mel.numpy() if isinstance(mel, Tensor) else mel
    return torch.from_numpy(mel_windows(values, MUSICNN_FRONT_END.window_frames)).float()
