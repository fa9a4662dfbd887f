"""Any audio file -> mono float32 at the front end's sample rate, bounded in time and size.

PyAV (FFmpeg) decodes every container the dataset contract allows; channels are
averaged (as librosa's `to_mono` does: FFmpeg's own downmix adds stereo channels at
-3 dB, which lifts peaks above full scale) and FFmpeg's resampler brings the mono signal
to `config.sample_rate` as it streams. Decoding stops once `limits.max_seconds` are
out, so a two-hour upload costs no more than a ten-minute one, and a file above
`limits.max_bytes` is refused before it is read. Every failure is an `AudioError`, except
running out of memory (`MemoryError`, FFmpeg's included): that is the machine's limit,
not the file's fault (the service's decode workers answer it with its own code).

The one rule on sample values lives here (`sample_peak`), so that the service, `coldstart
featurize` and `coldstart validate` judge a file alike: a NaN or infinite sample refuses
the file ("invalid_samples": the power spectrum of one such value is NaN everywhere);
finite samples above full scale (float exports at +6 dBFS, or 1e30 from a broken writer,
whose power spectrum overflows float32) are peak-normalised: the whole recording is
scaled so that its peak sits at full scale, and `DecodedAudio.normalised` says so. Every
path from audio to a model decodes with `decode_usable`, which also refuses what cannot
make model input (shorter than one window, silent). No torch here: the service's decode
workers import this module alone.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from audio.config import FRONT_END, FrontEndConfig
from audio.errors import AudioError

# Demuxers FFmpeg may pick: the containers of `corpus.dataset.AUDIO_EXTENSIONS` (mov is
# mp4/m4a, aac is raw ADTS). Playlists and concat lists, which open other files or URLs,
# are thereby refused.
ALLOWED_FORMATS = ("wav", "flac", "ogg", "mp3", "mov", "aac")
# The file extension (one of `AUDIO_EXTENSIONS`) a recording read by each demuxer is filed
# under: what the audio store names an upload by. Raw ADTS is what an .m4a name may hold.
CONTAINER_EXTENSIONS = {
    "wav": "wav",
    "flac": "flac",
    "ogg": "ogg",
    "mp3": "mp3",
    "mov": "m4a",
    "aac": "m4a",
}

# Mono samples gathered before each call into the resampler: one call per ~1.5 s at
# 44.1 kHz instead of one per codec frame (1152 samples for MP3).
_BLOCK_SAMPLES = 1 << 16
# Full scale of the decoded samples: integer formats cannot exceed it, float ones may.
FULL_SCALE = 1.0


@dataclass(frozen=True)
class DecodeLimits:
    """How much of one input the front end accepts: the first `max_seconds` of at most
    `max_bytes` of file."""

    max_seconds: float = 600.0
    max_bytes: int = 200 * 1024 * 1024


DEFAULT_LIMITS = DecodeLimits()


@dataclass
class DecodedAudio:
    """`samples` (n,) float32 mono at `sample_rate`, finite; `truncated` when the input was
    longer than `DecodeLimits.max_seconds` and only that much was decoded; `peak` the
    largest |sample| of the input's mono mix before any normalisation; `container` the
    demuxer that read it (one of `ALLOWED_FORMATS`)."""

    samples: np.ndarray
    sample_rate: int
    truncated: bool
    peak: float
    container: str

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate

    @property
    def normalised(self) -> bool:
        """The input peaked above full scale and `samples` were scaled to peak at it."""
        return self.peak > FULL_SCALE

    @property
    def peak_dbfs(self) -> float:
        """The input's peak in dB relative to full scale (-inf for digital silence)."""
        return float(20 * np.log10(self.peak)) if self.peak > 0 else float("-inf")

    @property
    def extension(self) -> str:
        """The file extension its container is filed under (`CONTAINER_EXTENSIONS`)."""
        return CONTAINER_EXTENSIONS[self.container]


def decode_audio(
    source: str | Path | bytes,
    config: FrontEndConfig = FRONT_END,
    limits: DecodeLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> DecodedAudio:
    """Decode a file path or the bytes of a file to mono `config.sample_rate` float32.

    `name` labels error messages (default: the file name, or "<bytes>"). Raises
    `AudioError` with code "too_large" (over `limits.max_bytes`), "empty" (zero bytes),
    "undecodable" (not audio in an allowed container, or not one sample decodes) or
    "invalid_samples" (a NaN or infinite sample). A file damaged part-way (a cut-off
    download) gives the samples decoded before the damage. Samples above full scale are
    peak-normalised (see the module docstring).
    """
    label = source_name(source, name)
    if isinstance(source, bytes):
        check_size(len(source), limits, label)
        return _decode(io.BytesIO(source), config, limits, label)
    with open(source, "rb") as handle:
        check_size(os.fstat(handle.fileno()).st_size, limits, label)
        return _decode(handle, config, limits, label)


# Below this RMS (-80 dBFS) a clip is treated as silence: a few LSBs of 16-bit dither,
# whose mel power sits at the `log_offset` floor and carries nothing to learn from.
SILENCE_RMS = 1e-4


def check_usable(
    samples: np.ndarray, config: FrontEndConfig = FRONT_END, name: str = "audio"
) -> None:
    """Refuse mono `samples` (n,) float32 that cannot make one window of model input.

    Raises `AudioError` "too_short" below `config.min_samples` (one `window_frames`
    window, 3 s) and "silent" when the RMS is below `SILENCE_RMS` of full scale.
    """
    if samples.size < config.min_samples:
        raise AudioError(
            "too_short",
            name,
            f"{samples.size / config.sample_rate:.2f} s is shorter than one "
            f"{config.window_seconds:.2f} s window",
        )
    rms = float(np.sqrt(np.dot(samples, samples) / samples.size))
    if rms < SILENCE_RMS:
        raise AudioError("silent", name, f"silent (RMS {rms:.1e} is below {SILENCE_RMS:.0e})")


def decode_usable(
    source: str | Path | bytes,
    config: FrontEndConfig = FRONT_END,
    limits: DecodeLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> DecodedAudio:
    """Decode `source` (see `decode_audio`) and refuse it unless it can make model input
    (`check_usable`): every path from audio to a model starts here. Raises `AudioError`."""
    decoded = decode_audio(source, config, limits, name)
    check_usable(decoded.samples, config, source_name(source, name))
    return decoded


def source_name(source: str | Path | bytes, name: str | None = None) -> str:
    """The label of a source in messages: `name`, else the file name, else "<bytes>"."""
    if name:
        return name
    return "<bytes>" if isinstance(source, bytes) else Path(source).name


def sample_peak(samples: np.ndarray, name: str) -> float:
    """The largest |value| of decoded `samples` (any shape); `AudioError` "invalid_samples"
    when one is NaN or infinite. The one rule on sample values (see the module docstring)."""
    # max and min, not max(abs): no temporary the size of the samples (a 30-s upload's 2.6 MB
    # would be fresh pages in the service each time); NaN and inf carry through both.
    peak = max(float(np.max(samples, initial=0.0)), -float(np.min(samples, initial=0.0)))
    if not np.isfinite(peak):
        n_bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AudioError("invalid_samples", name, f"{n_bad:,} sample values are NaN or infinite")
    return peak


def check_size(n_bytes: int, limits: DecodeLimits, name: str) -> None:
    """Refuse a file of `n_bytes` before reading it: `AudioError` "empty" or "too_large"."""
    if n_bytes == 0:
        raise AudioError("empty", name, "the file is empty (0 bytes)")
    if n_bytes > limits.max_bytes:
        raise AudioError(
            "too_large", name, f"{n_bytes:,} bytes is over the limit of {limits.max_bytes:,}"
        )


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _decode(
    handle: BinaryIO, config: FrontEndConfig, limits: DecodeLimits, name: str
) -> DecodedAudio:
    try:
        container = av.open(
            handle,
            "r",
            options={"format_whitelist": ",".join(ALLOWED_FORMATS)},
            metadata_errors="replace",
        )
    except MemoryError:  # FFmpeg's ENOMEM (`av.MemoryError`): a limit, not a bad file
        raise
    except av.FFmpegError as error:
        raise AudioError("undecodable", name, f"not an audio file ({_reason(error)})") from error
    with container:
        if not container.streams.audio:
            raise AudioError("undecodable", name, f"no audio stream in {container.format.name}")
        demuxer = container.format.name.split(",")[0]  # "mov,mp4,m4a,3gp,3g2,mj2" -> "mov"
        return _resample_mono(_mono_blocks(container, name), config, limits, name, demuxer)


def _resample_mono(
    blocks: Iterator[tuple[np.ndarray, int]],
    config: FrontEndConfig,
    limits: DecodeLimits,
    name: str,
    demuxer: str,
) -> DecodedAudio:
    """Stream native-rate mono blocks through FFmpeg's resampler; stop past the limit."""
    target = config.sample_rate
    max_samples = round(limits.max_seconds * target)
    chunks: list[np.ndarray] = []
    n_out = 0
    resampler: av.AudioResampler | None = None
    rate = 0
    peak = 0.0

    def take(block: np.ndarray | None) -> None:
        nonlocal n_out
        for chunk in _resample(resampler, block, rate):
            chunks.append(chunk)
            n_out += chunk.size

    for block, block_rate in blocks:
        if block_rate != rate:  # a chained stream may change rate: start a new resampler
            if resampler is not None:
                take(None)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
            rate = block_rate
        peak = max(peak, sample_peak(block, name))
        take(block)
        if n_out > max_samples:
            break
    else:
        if resampler is not None:
            take(None)
    if n_out == 0:  # a header with nothing (or nothing readable) after it
        raise AudioError("undecodable", name, "no audio frame decodes")
    samples = np.concatenate(chunks)[:max_samples]
    if peak > FULL_SCALE:  # the same gain for the whole recording: its balance is kept
        samples *= np.float32(FULL_SCALE / peak)
        if not np.isfinite(samples).all():  # values near float32's limit overflow the filter
            raise AudioError(
                "invalid_samples", name, f"samples up to {peak:.3g} overflow the resampler"
            )
    return DecodedAudio(
        samples=samples,
        sample_rate=target,
        truncated=n_out > max_samples,
        peak=peak,
        container=demuxer,
    )


def _resample(
    resampler: av.AudioResampler, block: np.ndarray | None, rate: int
) -> list[np.ndarray]:
    """Feed one mono block (None flushes); return the output samples as float32 arrays."""
    frame = None
    if block is not None:
        frame = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
    return [out.to_ndarray()[0] for out in resampler.resample(frame)]


def _mono_blocks(
    container: av.container.InputContainer, name: str
) -> Iterator[tuple[np.ndarray, int]]:
    """Decoded audio as (mono float32 block of ~`_BLOCK_SAMPLES`, sample rate) pairs.

    Frames are gathered and converted a block at a time (per frame, numpy's overhead
    costs as much as the decoding). A decoder error ends the stream if some audio came
    before it; otherwise the input is undecodable.
    """
    pending: list[av.AudioFrame] = []
    n_pending = 0
    decoded_any = False
    frames = container.decode(container.streams.audio[0])
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except MemoryError:  # not damage: the caller's limit (see `_decode`)
            raise
        except av.FFmpegError as error:
            if decoded_any:
                break
            raise AudioError("undecodable", name, f"no frame decodes ({_reason(error)})") from error
        if frame.samples == 0:
            continue
        decoded_any = True
        if pending and _shape(frame) != _shape(pending[0]):  # a chained stream changed
            yield frames_to_mono(pending), pending[0].sample_rate
            pending, n_pending = [], 0
        pending.append(frame)
        n_pending += frame.samples
        if n_pending >= _BLOCK_SAMPLES:
            yield frames_to_mono(pending), frame.sample_rate
            pending, n_pending = [], 0
    if pending:
        yield frames_to_mono(pending), pending[0].sample_rate


def _shape(frame: av.AudioFrame) -> tuple[int, str, int]:
    return frame.sample_rate, frame.format.name, frame.layout.nb_channels


# numpy types of FFmpeg's sample formats (planar ones end in "p": "fltp", "s16p").
_SAMPLE_TYPES = {
    "u8": np.uint8,
    "s16": np.int16,
    "s32": np.int32,
    "s64": np.int64,
    "flt": np.float32,
    "dbl": np.float64,
}


def frames_to_mono(frames: list[av.AudioFrame]) -> np.ndarray:
    """Frames of one sample format and channel count -> (samples,) float32 at their own
    rate, channels averaged, integers scaled to [-1, 1): what `sample_peak` judges."""
    first = frames[0]
    dtype = np.dtype(_SAMPLE_TYPES[first.format.name.removesuffix("p")])
    channels = first.layout.nb_channels
    if first.format.is_planar:
        data = np.stack(
            [
                np.concatenate([np.frombuffer(f.planes[c], dtype, f.samples) for f in frames])
                for c in range(channels)
            ]
        )
    else:
        interleaved = [np.frombuffer(f.planes[0], dtype, f.samples * channels) for f in frames]
        data = np.concatenate(interleaved).reshape(-1, channels).T
    if dtype.kind == "f":  # summed in float64: channels near float32's limit do not overflow
        if channels == 1:
            return data[0].astype(np.float32)
        return data.mean(axis=0, dtype=np.float64).astype(np.float32)
    mono = data.mean(axis=0, dtype=np.float64)
    if dtype.kind == "u":  # u8 is unsigned around 128
        mono -= 128.0
    return (mono / float(2 ** (8 * dtype.itemsize - 1))).astype(np.float32)
