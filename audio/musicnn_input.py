"""musicnn's input (Pons & Serra 2019): 16 kHz mono -> 96 Slaney mel bands, log10(1 + 10000 x).

The MSD and MTT musicnn models were trained on librosa's mel power spectrogram with its
defaults (Slaney scale and area normalisation, 0 to sr/2), n_fft 512, hop 256, centred
frames (the padding reflected, librosa's default then), compressed as log10(1 + 10000 x),
and cut into non-overlapping patches of 187 frames (2.98 s; `audio.frontend.mel_windows`,
a tail shorter than a patch dropped).

The project's one front end (`audio.mel.LogMel`) cannot yet say "Slaney" or "log10(1 + x)":
`MUSICNN_FRONT_END` holds the constants `FrontEndConfig` has today and `MUSICNN_MEL_SCALE`,
`MUSICNN_MEL_NORM` and `MUSICNN_LOG_COMPRESSION` the three it lacks. Once `FrontEndConfig`
carries them, `LogMel` takes its filterbank and log from `audio.mel_scales` as this module
does, and this module shrinks to the one config.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from audio.config import FrontEndConfig
from audio.mel_scales import LogCompression, MelNorm, MelScale, log_compress, mel_filterbank

MUSICNN_FRONT_END = FrontEndConfig(
    sample_rate=16000,
    n_fft=512,
    hop_length=256,
    n_mels=96,
    f_min=0.0,
    f_max=8000.0,
    window_frames=187,
    log_offset=1e-4,  # log10(1 + x / 1e-4) = log10(1 + 10000 x)
)
MUSICNN_MEL_SCALE: MelScale = "slaney"
MUSICNN_MEL_NORM: MelNorm = "slaney"
MUSICNN_LOG_COMPRESSION: LogCompression = "log10_1p"


class MusicnnLogMel(nn.Module):
    """Waveform (batch, samples) or (samples,) at 16 kHz -> musicnn's log-mel
    (batch, 96, 1 + samples // 256) float32.

    Centred frames (reflect padding, so more than n_fft / 2 samples are needed) under a
    periodic Hann window of n_fft, power spectrum, Slaney mel filters, log10(1 + 10000 x).
    """

    window: Tensor
    filters: Tensor

    def __init__(self, config: FrontEndConfig = MUSICNN_FRONT_END) -> None:
        super().__init__()
        self.config = config
        # Functions of the config, not weights: left out of the state dict.
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.register_buffer(
            "filters",
            mel_filterbank(
                config.sample_rate,
                config.n_fft,
                config.n_mels,
                config.f_min,
                config.f_max,
                MUSICNN_MEL_SCALE,
                MUSICNN_MEL_NORM,
            ),
            persistent=False,
        )

    def forward(self, waveform: Tensor) -> Tensor:
        if waveform.ndim == 1:
            waveform = waveform[None]
        if waveform.ndim != 2:
            raise ValueError(
                f"expected (batch, samples) or (samples,), got {tuple(waveform.shape)}"
            )
        spectrum = torch.stft(
            waveform.float(),
            self.config.n_fft,
            self.config.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spectrum.real.square() + spectrum.imag.square()
        return log_compress(self.filters @ power, MUSICNN_LOG_COMPRESSION, self.config.log_offset)
