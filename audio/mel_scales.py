"""Mel filterbanks (HTK and Slaney) and the log compressions of a mel power spectrogram.

Pure functions of the front-end constants, so that every front end (the project's HTK
log-mel; musicnn's Slaney log10(1 + 10000 x)) takes its filterbank and its log from one
definition. Written out rather than taken from torchaudio (HTK only, Slaney scale without
its area normalisation in older releases) or librosa (a test-time dependency): the
triangles are librosa's (`librosa.filters.mel`), computed in float64 and returned float32.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

MelScale = Literal["htk", "slaney"]
MelNorm = Literal["slaney"] | None
LogCompression = Literal["log", "log10_1p"]

# The Slaney (Auditory Toolbox) scale: linear below 1 kHz, 200/3 Hz a mel, then
# logarithmic with 27 mels per factor 6.4 of frequency.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: npt.ArrayLike, scale: MelScale) -> np.ndarray:
    """Frequencies in Hz (any shape) -> mels on `scale`, float64."""
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    if scale == "slaney":
        above = hz >= _SLANEY_BREAK_HZ
        logarithmic = (
            _SLANEY_BREAK_MEL
            + np.log(np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
        )
        return np.where(above, logarithmic, hz / _SLANEY_HZ_PER_MEL)
    raise ValueError(f"unknown mel scale {scale!r} (htk or slaney)")


def mel_to_hz(mels: npt.ArrayLike, scale: MelScale) -> np.ndarray:
    """Inverse of `hz_to_mel`, float64."""
    mels = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    if scale == "slaney":
        above = mels >= _SLANEY_BREAK_MEL
        logarithmic = _SLANEY_BREAK_HZ * np.exp(
            _SLANEY_LOG_STEP * (np.maximum(mels, _SLANEY_BREAK_MEL) - _SLANEY_BREAK_MEL)
        )
        return np.where(above, logarithmic, mels * _SLANEY_HZ_PER_MEL)
    raise ValueError(f"unknown mel scale {scale!r} (htk or slaney)")


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    scale: MelScale,
    norm: MelNorm,
) -> Tensor:
    """Triangular mel filters -> (n_mels, n_fft // 2 + 1) float32; `filters @ power` maps a
    power spectrogram (..., n_fft // 2 + 1, frames) to mel bands.

    Band edges are `n_mels + 2` points equally spaced in mels from `f_min` to `f_max`;
    `norm` "slaney" divides each triangle by its width in Hz (equal area: a band's energy
    does not grow with its width), None leaves peaks at 1.
    """
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"mel bands {f_min}-{f_max} Hz do not fit 0-{sample_rate / 2} Hz")
    if n_mels < 1 or n_fft < 2:
        raise ValueError(f"n_mels {n_mels} and n_fft {n_fft} must be positive")
    bin_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges_mel = np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2)
    edges_hz = mel_to_hz(edges_mel, scale)
    widths = np.diff(edges_hz)
    distance = edges_hz[:, None] - bin_hz[None, :]  # (n_mels + 2, n_bins)
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        filters *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    elif norm is not None:
        raise ValueError(f"unknown mel norm {norm!r} (slaney or None)")
    return torch.from_numpy(filters.astype(np.float32))


def log_compress(mel_power: Tensor, compression: LogCompression, log_offset: float) -> Tensor:
    """Mel power (any shape) -> its log, float32.

    "log": ln(power + log_offset), silence floored at ln(log_offset) (the project's front
    end, log_offset 1e-5). "log10_1p": log10(1 + power / log_offset), silence at 0
    (musicnn's log10(1 + 10000 x), log_offset 1e-4).
    """
    power = mel_power.float()
    if compression == "log":
        return torch.log(power + log_offset)
    if compression == "log10_1p":
        return torch.log10(1.0 + power * (1.0 / log_offset))
    raise ValueError(f"unknown log compression {compression!r} (log or log10_1p)")
