"""The one log-mel transform of the project, as an `nn.Module`.

Training (through the mel cache), the content encoder (which holds one, so that a
checkpoint carries its front end) and the service all call this class; nothing else in
the project computes a mel spectrogram.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from audio.config import FRONT_END, FrontEndConfig


class LogMel(nn.Module):
    """Waveform (batch, samples) or (samples,) at `config.sample_rate` -> log-mel
    (batch, n_mels, 1 + samples // hop_length) float32.

    Centred frames with a Hann window of `n_fft`, power spectrum, HTK mel bands from
    `f_min` to `f_max`, then log(mel + `log_offset`): the offset floors silence at
    log(1e-5) instead of -inf. Needs more than n_fft / 2 samples (reflect padding).
    """

    def __init__(self, config: FrontEndConfig = FRONT_END) -> None:
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            f_min=config.f_min,
            f_max=config.f_max,
            center=True,
            power=2.0,
        )

    def forward(self, waveform: Tensor) -> Tensor:
        if waveform.ndim == 1:
            waveform = waveform[None]
        if waveform.ndim != 2:
            raise ValueError(
                f"expected (batch, samples) or (samples,), got {tuple(waveform.shape)}"
            )
        return torch.log(self.mel(waveform.float()) + self.config.log_offset)
