"""The one log-mel transform of the project, as an `nn.Module`.

Training (through the mel cache), the content encoder (which holds one, so that a
checkpoint carries its front end) and the service all call this class; nothing else in
the project computes a mel spectrogram.

Written on `torch.stft` rather than taken from torchaudio, whose last release holds torch
back: the numbers are torchaudio's `MelSpectrogram` (centred reflect-padded frames,
periodic Hann window, power 2, HTK bands without normalisation) within 1e-5
(tests/audio/test_mel.py, against a reference torchaudio made).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from audio.config import FRONT_END, FrontEndConfig

MelScale = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]

# Mel scales by name: (hz -> mel, mel -> hz). HTK's (O'Shaughnessy 1987) is the front end's;
# another scale (Slaney's, librosa's default) is one more row.
MEL_SCALES: dict[str, MelScale] = {
    "htk": (
        lambda hz: 2595.0 * torch.log10(1.0 + hz / 700.0),
        lambda mel: 700.0 * (10.0 ** (mel / 2595.0) - 1.0),
    ),
}

# State-dict names of the window and the filterbank when LogMel wrapped torchaudio's
# MelSpectrogram (checkpoints saved before it went), by their names today.
_TORCHAUDIO_BUFFERS = {"mel.spectrogram.window": "window", "mel.mel_scale.fb": "filterbank"}


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    mel_scale: str = "htk",
) -> Tensor:
    """Triangular mel filters (1 + n_fft // 2, n_mels) float32: power spectrum @ filters.

    Band edges are `n_mels + 2` points equally spaced on `mel_scale` (a name in
    `MEL_SCALES`) from `f_min` to `f_max`; each filter rises from 0 at its left edge to 1
    at its centre and falls to 0 at its right edge, unnormalised (librosa's
    `filters.mel(..., htk=True, norm=None)`, transposed). Built in float32 in torchaudio's
    order of operations, so that the models trained behind torchaudio's filters see the
    same numbers; librosa's, built in float64, differ by up to 2e-5.
    """
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"unknown mel scale {mel_scale!r}; known: {sorted(MEL_SCALES)}")
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}"
        )
    hz_to_mel, mel_to_hz = MEL_SCALES[mel_scale]
    bin_hz = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_low, mel_high = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64)).tolist()
    edges_hz = mel_to_hz(torch.linspace(mel_low, mel_high, n_mels + 2))  # (n_mels + 2,)
    widths = edges_hz.diff()  # (n_mels + 1,)
    offsets = edges_hz[None, :] - bin_hz[:, None]  # (n_bins, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return torch.minimum(rising, falling).clamp(min=0.0)


class LogMel(nn.Module):
    """Waveform (batch, samples) or (samples,) at `config.sample_rate` -> log-mel
    (batch, n_mels, 1 + samples // hop_length) float32.

    Centred frames (reflect padding) with a periodic Hann window of `n_fft`, power
    spectrum, HTK mel bands from `f_min` to `f_max` (`mel_filterbank`), then
    log(mel + `log_offset`): the offset floors silence at log(1e-5) instead of -inf. Needs
    more than n_fft / 2 samples (reflect padding).
    """

    window: Tensor
    filterbank: Tensor

    def __init__(self, config: FrontEndConfig = FRONT_END) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("window", torch.hann_window(config.n_fft, periodic=True))
        self.register_buffer(
            "filterbank",
            mel_filterbank(
                config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max
            ),
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
            n_fft=self.config.n_fft,
            hop_length=self.config.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )  # (batch, 1 + n_fft // 2, n_frames)
        power = spectrum.abs().pow(2.0)
        mel = torch.matmul(power.transpose(-1, -2), self.filterbank).transpose(-1, -2)
        return torch.log(mel + self.config.log_offset)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A checkpoint from the torchaudio days names the same two buffers otherwise.
        for old, new in _TORCHAUDIO_BUFFERS.items():
            if prefix + old in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
