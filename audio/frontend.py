"""Source -> checked samples -> log-mel -> 3-second windows: the front end end to end.

`read_model_input` is what every path from audio to a model reads: the checked samples
(`decode_usable`) through the front end module of the config (`front_end_module`: `LogMel`,
or `Waveform` for a waveform front end, `FrontEndConfig.representation`), with what
decoding found and each stage's time. `coldstart featurize` stores its values in the mel
cache (`model_input`); the embedding path (`training.inference.embed_audio`) hands them
to the encoder, in process or, for the service's uploads, from a decode worker process
(`service.decode_pool`). Both refuse a log-mel or prediction that is not finite
(`check_finite`) before storing anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from audio.config import FRONT_END, FrontEndConfig
from audio.decode import DEFAULT_LIMITS, DecodedAudio, DecodeLimits, decode_usable, source_name
from audio.errors import AudioError
from audio.mel import LogMel, waveform_batch


def check_finite(values: np.ndarray, name: str, what: str) -> None:
    """Refuse a computed array (a log-mel, a predicted vector) holding NaN or inf, with
    `AudioError` "unembeddable": nothing non-finite may reach the mel cache, the catalogue
    or an index. `what` names the array in the message."""
    if not np.isfinite(values).all():
        raise AudioError("unembeddable", name, f"the {what} holds NaN or infinite values")


@dataclass(frozen=True)
class DecodeFacts:
    """What decoding a recording found (`DecodedAudio`: `seconds` decoded, `truncated`,
    `peak_dbfs`, `normalised`, its `container`) and the wall-clock milliseconds of decoding
    and of the front end module: carried on to the answer (`ModelInput`,
    `training.inference.Embedding`)."""

    seconds: float
    truncated: bool
    peak_dbfs: float
    normalised: bool
    container: str
    decode_ms: float
    features_ms: float


@dataclass(frozen=True)
class ModelInput(DecodeFacts):
    """One recording as a model reads it: `values`, its log-mel (n_mels, n_frames), or for
    a waveform front end its samples (1, n_samples), float32, finite; with its
    `DecodeFacts`."""

    values: np.ndarray


class Waveform(nn.Module):
    """The front end module of a waveform model: samples (batch, n) or (n,) at the
    config's rate -> model input (batch, 1, n) float32, the samples as they are."""

    def forward(self, waveform: Tensor) -> Tensor:
        return waveform_batch(waveform)[:, None, :]


@cache
def front_end_module(config: FrontEndConfig) -> nn.Module:
    """The front end module of `config`, built once per config: `LogMel`, or `Waveform`
    for a waveform front end; in eval mode, the same numbers an encoder's own
    `front_end` computes (its buffers follow from the config alone)."""
    module = Waveform() if config.is_waveform else LogMel(config)
    return module.eval()


def read_model_input(
    source: str | Path | bytes,
    config: FrontEndConfig = FRONT_END,
    limits: DecodeLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> ModelInput:
    """Decode `source` (`decode_usable`: refused if too short or silent) and run the front
    end module of `config` over it (`model_input_of`). Raises `AudioError`."""
    started = time.perf_counter()
    decoded = decode_usable(source, config, limits, name)
    decode_ms = (time.perf_counter() - started) * 1e3
    return model_input_of(decoded, config, source_name(source, name), decode_ms)


def model_input_of(
    decoded: DecodedAudio, config: FrontEndConfig, name: str, decode_ms: float
) -> ModelInput:
    """The front end module of `config` over checked samples (`decode_usable`'s; their centred
    excerpt where `config` bounds one: `FrontEndConfig.excerpt`), with what
    decoding found and took (`decode_ms`); values that are not finite are refused
    (`AudioError` "unembeddable", labelled `name`). The service's decode workers decode an
    upload (no torch there), and the service runs this on what they send."""
    started = time.perf_counter()
    with torch.inference_mode():
        # C order: a model reads the same bytes whether they come from here or a pipe
        # (a transposed view can round differently in its last bits).
        samples = np.ascontiguousarray(config.excerpt(decoded.samples))
        values = np.ascontiguousarray(front_end_module(config)(torch.from_numpy(samples))[0])
    check_finite(values, name, "waveform" if config.is_waveform else "log-mel")
    return ModelInput(
        values=values,
        seconds=decoded.seconds,
        truncated=decoded.truncated,
        peak_dbfs=decoded.peak_dbfs,
        normalised=decoded.normalised,
        container=decoded.container,
        decode_ms=decode_ms,
        features_ms=(time.perf_counter() - started) * 1e3,
    )


def log_mel(
    source: str | Path | bytes,
    config: FrontEndConfig = FRONT_END,
    limits: DecodeLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> np.ndarray:
    """Decode `source`, refuse it if too short or silent, return its log-mel
    (n_mels, 1 + n_samples // hop_length) float32, finite. Raises `AudioError`."""
    if config.is_waveform:
        raise ValueError("log_mel needs a log-mel front end, not a waveform one")
    return read_model_input(source, config, limits, name).values


def model_input(
    source: str | Path | bytes,
    config: FrontEndConfig = FRONT_END,
    limits: DecodeLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> np.ndarray:
    """What a model behind `config` reads of `source`, as the cache stores it: the
    `log_mel`, or for a waveform front end the decoded samples (1, n_samples) float32,
    checked as `log_mel` checks. Raises `AudioError`."""
    return read_model_input(source, config, limits, name).values


def mel_windows(
    mel: np.ndarray, window_frames: int = 130, hop_frames: int | None = None
) -> np.ndarray:
    """Cut a log-mel (n_mels, n_frames) into windows (n_windows, n_mels, window_frames).

    Windows start every `hop_frames` (default `window_frames`: no overlap) and a tail
    shorter than a window is dropped, so n_windows = 1 + (n_frames - window_frames) //
    hop_frames, and zero when n_frames < window_frames. Returns a copy of `mel`'s dtype.
    """
    hop = window_frames if hop_frames is None else hop_frames
    if window_frames < 1 or hop < 1:
        raise ValueError(f"window_frames and hop_frames must be >= 1, got {window_frames}, {hop}")
    n_mels, n_frames = mel.shape
    if n_frames < window_frames:
        return np.empty((0, n_mels, window_frames), dtype=mel.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(mel, window_frames, axis=1)[:, ::hop]
    return np.ascontiguousarray(windows.transpose(1, 0, 2))
