"""The one log-mel transform of the project, as an `nn.Module`.

Training (through the mel cache), the content encoder (which holds one, so that a
checkpoint carries its front end) and the service all call this class; nothing else in
the project computes a mel spectrogram. Each front end (`audio.config.FrontEndConfig`)
names its mel scale, band normalisation and log compression: the project's default is HTK
bands and ln(mel + 1e-5), musicnn's Slaney bands with Slaney's normalisation and
log10(1 + 10000 x).

Written on `torch.stft` rather than taken from torchaudio, whose last release holds torch
back (and knows no Slaney normalisation): for the default front end the numbers are
torchaudio's `MelSpectrogram` (centred reflect-padded frames, periodic Hann window, power 2,
HTK bands without normalisation) within 1e-5 (tests/audio/test_mel.py, against a reference
torchaudio made); for musicnn's, librosa's `feature.melspectrogram` (tests/audio/test_mel.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from audio.config import FRONT_END, FrontEndConfig

MelScale = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]

# The Slaney (Auditory Toolbox) scale, librosa's default: linear below 1 kHz at 200/3 Hz a
# mel, then logarithmic with 27 mels per factor 6.4 of frequency.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def _slaney_hz_to_mel(hz: Tensor) -> Tensor:
    logarithmic = _SLANEY_BREAK_MEL + torch.log(
        hz.clamp(min=_SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ
    ) / (_SLANEY_LOG_STEP)
    return torch.where(hz >= _SLANEY_BREAK_HZ, logarithmic, hz / _SLANEY_HZ_PER_MEL)


def _slaney_mel_to_hz(mel: Tensor) -> Tensor:
    logarithmic = _SLANEY_BREAK_HZ * torch.exp(
        _SLANEY_LOG_STEP * (mel.clamp(min=_SLANEY_BREAK_MEL) - _SLANEY_BREAK_MEL)
    )
    return torch.where(mel >= _SLANEY_BREAK_MEL, logarithmic, mel * _SLANEY_HZ_PER_MEL)


# Mel scales by name (`FrontEndConfig.mel_scale`): (hz -> mel, mel -> hz). HTK's
# (O'Shaughnessy 1987) is the project's front end's; Slaney's is musicnn's.
MEL_SCALES: dict[str, MelScale] = {
    "htk": (
        lambda hz: 2595.0 * torch.log10(1.0 + hz / 700.0),
        lambda mel: 700.0 * (10.0 ** (mel / 2595.0) - 1.0),
    ),
    "slaney": (_slaney_hz_to_mel, _slaney_mel_to_hz),
}
# The precision each scale's filters are built in: the one the models trained behind them
# saw (torchaudio built HTK's in float32, librosa Slaney's in float64; they differ by up to
# 2e-5, which moves a log-mel near silence by up to 1e-3).
_BUILT_IN: dict[str, torch.dtype] = {"htk": torch.float32, "slaney": torch.float64}

# A clip's spectrum is computed a block of frames at a time, each block's temporaries under
# glibc's mmap threshold of 128 KiB (which the service fixes, service/memory.py): they then
# come from the heap and are reused block after block, where a whole 30-s clip's (some 20 MB
# of frames, spectrum and power) would be fresh pages every call: 6,000 page faults, half the
# front end's time in the service (BENCHMARKS.md, serving). The numbers are the same.
BLOCK_BYTES = 120 * 1024
MIN_BLOCK_FRAMES = 8

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
    norm: str | None = None,
) -> Tensor:
    """Triangular mel filters (1 + n_fft // 2, n_mels) float32: power spectrum @ filters.

    Band edges are `n_mels + 2` points equally spaced on `mel_scale` (a name in
    `MEL_SCALES`) from `f_min` to `f_max`; each filter rises from 0 at its left edge to 1
    at its centre and falls to 0 at its right edge (librosa's `filters.mel`, transposed);
    `norm` "slaney" then divides each by its width in Hz over 2 (equal area), None leaves
    its peak at 1. HTK's filters are built in float32 in torchaudio's order of operations
    (bit for bit its `melscale_fbanks`), Slaney's in float64 as librosa builds them.
    """
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"unknown mel scale {mel_scale!r}; known: {sorted(MEL_SCALES)}")
    if norm not in (None, "slaney"):
        raise ValueError(f"unknown mel norm {norm!r} (slaney or None)")
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}"
        )
    if n_mels < 1 or n_fft < 2:
        raise ValueError(f"n_mels {n_mels} and n_fft {n_fft} must be positive")
    hz_to_mel, mel_to_hz = MEL_SCALES[mel_scale]
    dtype = _BUILT_IN[mel_scale]
    bin_hz = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=dtype)
    mel_low, mel_high = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64)).tolist()
    edges_hz = mel_to_hz(torch.linspace(mel_low, mel_high, n_mels + 2, dtype=dtype))
    widths = edges_hz.diff()  # (n_mels + 1,)
    offsets = edges_hz[None, :] - bin_hz[:, None]  # (n_bins, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    filters = torch.minimum(rising, falling).clamp(min=0.0)
    if norm == "slaney":
        filters = filters * (2.0 / (edges_hz[2:] - edges_hz[:-2]))
    return filters.float()


def log_compress(mel_power: Tensor, compression: str, log_offset: float) -> Tensor:
    """Mel power (any shape) -> its log (`FrontEndConfig.log_compression`), float32.

    "log": ln(power + log_offset), silence floored at ln(log_offset) (the project's front
    end, log_offset 1e-5); "log10_1p": log10(1 + power / log_offset), silence at 0
    (musicnn's log10(1 + 10000 x), log_offset 1e-4).
    """
    power = mel_power.float()
    if compression == "log":
        return torch.log(power + log_offset)
    if compression == "log10_1p":
        return torch.log10(1.0 + power * (1.0 / log_offset))
    raise ValueError(f"unknown log compression {compression!r} (log or log10_1p)")


def power_spectrum(spectrum: Tensor) -> Tensor:
    """|X|^2 of a complex spectrum (any shape), float32: re^2 + im^2 as the real part of
    X times its conjugate. `abs().pow(2)` (torchaudio's) takes a `hypot` and then squares
    it: the same values within 2 ulp, and a 30-s clip's log-mel 1.3x slower (BENCHMARKS.md,
    the front end)."""
    return (spectrum * spectrum.conj()).real


def waveform_batch(waveform: Tensor) -> Tensor:
    """Samples (batch, n) or (n,) -> (batch, n) float32: what every front end module takes."""
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2:
        raise ValueError(f"expected (batch, samples) or (samples,), got {tuple(waveform.shape)}")
    return waveform.float()


def centred_frames(batch: Tensor, start: int, stop: int, n_fft: int, hop: int) -> Tensor:
    """Frames `start` to `stop - 1` of `torch.stft`'s centred, reflect-padded framing of
    `batch` (batch, n): (batch, stop - start, n_fft), the same values bit for bit
    (tests/audio/test_mel.py). A view of `batch` where the frames lie inside it; near an
    edge, built from the samples they cover: the whole padded clip is never copied (a 30-s
    upload's 2.6 MB of fresh pages in the service). Needs n > n_fft // 2, as reflect
    padding does."""
    n, half = batch.shape[-1], n_fft // 2
    if n <= half:
        raise ValueError(f"{n} samples are too few to reflect-pad frames of {n_fft}")
    first = start * hop - half  # the first frame's first sample, in the unpadded clip
    end = first + (stop - 1 - start) * hop + n_fft  # one past the last frame's last sample
    if first >= 0 and end <= n:
        segment = batch[:, first:end]
    else:
        index = torch.arange(first, end, device=batch.device).abs()  # reflected at 0
        index = torch.where(index >= n, 2 * (n - 1) - index, index)  # and at n - 1
        segment = batch[:, index]
    return segment.unfold(-1, n_fft, hop)


class LogMel(nn.Module):
    """Waveform (batch, samples) or (samples,) at `config.sample_rate` -> log-mel
    (batch, n_mels, 1 + samples // hop_length) float32.

    Centred frames (reflect padding) with a periodic Hann window of `n_fft`, power
    spectrum, the config's mel bands from `f_min` to `f_max` (`mel_filterbank`), then its
    log compression (`log_compress`; the offset keeps silence finite). Needs more than
    n_fft / 2 samples (reflect padding).
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
                config.sample_rate,
                config.n_fft,
                config.n_mels,
                config.f_min,
                config.f_max,
                config.mel_scale,
                config.mel_norm,
            ),
        )

    def forward(self, waveform: Tensor) -> Tensor:
        batch = waveform_batch(waveform)
        n_fft, hop = self.config.n_fft, self.config.hop_length
        n_frames = 1 + (batch.shape[-1] + 2 * (n_fft // 2) - n_fft) // hop
        # Written in the order it is returned: no transposed copy for the model to make.
        log_mel = torch.empty(
            (batch.shape[0], self.config.n_mels, n_frames), dtype=torch.float32, device=batch.device
        )
        step = self._block_frames(batch, n_frames)
        for start in range(0, n_frames, step):
            stop = min(start + step, n_frames)
            spectrum = torch.fft.rfft(centred_frames(batch, start, stop, n_fft, hop) * self.window)
            mel = torch.matmul(power_spectrum(spectrum), self.filterbank)
            log_mel[:, :, start:stop] = log_compress(
                mel, self.config.log_compression, self.config.log_offset
            ).transpose(-1, -2)
        return log_mel

    def _block_frames(self, batch: Tensor, n_frames: int) -> int:
        """Frames per block of `batch` (batch, samples): on a CPU with one thread (the
        service's, featurize's processes), as many as keep a block's largest temporary (its
        complex spectrum) under `BLOCK_BYTES`, at least `MIN_BLOCK_FRAMES`; on several
        threads or an accelerator, all of them (each small block's operations would be split
        across the threads and joined again: 3x slower for a 30-s clip on 2 threads)."""
        if batch.device.type != "cpu" or torch.get_num_threads() > 1:
            return max(n_frames, 1)
        spectrum_bytes_per_frame = batch.shape[0] * (1 + self.config.n_fft // 2) * 8
        return max(MIN_BLOCK_FRAMES, BLOCK_BYTES // spectrum_bytes_per_frame)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A checkpoint from the torchaudio days names the same two buffers otherwise.
        for old, new in _TORCHAUDIO_BUFFERS.items():
            if prefix + old in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
