"""Encoding: write a rendered clip in one of the contract's formats, byte-for-byte reproducibly.

A real catalogue arrives in many containers, codecs, sample rates and channel counts, so
each song draws one (mostly FLAC and WAV, some Vorbis, MP3, Opus and AAC at 16 to 48 kHz,
mono or stereo) and the decoder downstream is exercised on all of them. Every muxer and
encoder runs with `bitexact` flags, which drop the random Ogg serial numbers, version
strings and timestamps that would otherwise make two runs differ.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from scipy import signal

from world.synth import SAMPLE_RATE

_QP2LAMBDA = 118  # FFmpeg's FF_QP2LAMBDA: global_quality units per quality step
# Faster encoder settings (2 to 3 times faster, files of about the same size and quality).
_SPEED = {
    "libmp3lame": {"compression_level": "7"},
    "aac": {"aac_coder": "fast"},
    "libopus": {"compression_level": "5"},
}


@dataclass(frozen=True)
class AudioFormat:
    """How one file is written: extension, PyAV container and codec, rate, channels, bitrate."""

    ext: str
    container: str
    codec: str
    sample_fmt: str
    sample_rate: int
    channels: int
    bit_rate: int = 0  # bits per second; Vorbis: quality level (0-10); lossless: unused


# (share of the catalogue, ext, container, codec, sample format, rates, channel counts,
#  bitrates or, for Vorbis, quality levels). Mostly FLAC and WAV, the cheap ones to write
# (FLAC 0.03-0.09 s for 12 s, WAV under 0.04 s, where Vorbis takes 0.4-0.6 s, MP3 0.2-0.8 s,
# AAC 0.1-0.3 s, Opus 0.1-0.2 s: bench/world_generation.py), with a share of each lossy
# format, at its cheaper rates, so that every decoder of the front end is exercised.
_FORMATS = (
    (0.08, "ogg", "ogg", "vorbis", "fltp", (22050, 22050, 32000), (2,), (3, 4, 5)),
    (0.50, "flac", "flac", "flac", "s16", (16000, 22050, 22050, 32000), (1, 1, 2), (0,)),
    (0.08, "mp3", "mp3", "libmp3lame", "fltp", (22050, 22050, 32000), (1, 2), (96000, 128000)),
    (0.10, "opus", "opus", "libopus", "flt", (48000, 24000, 16000), (1, 2), (48000, 64000)),
    (0.16, "wav", "wav", "pcm_s16le", "s16", (16000, 22050, 44100), (1, 1, 2), (0,)),
    (0.08, "m4a", "ipod", "aac", "fltp", (22050, 44100), (2,), (96000, 128000)),
)


def draw_format(rng: np.random.Generator) -> AudioFormat:
    """A format for one song (the Vorbis encoder of this FFmpeg takes stereo only)."""
    shares = np.array([row[0] for row in _FORMATS])
    _, ext, container, codec, sample_fmt, rates, channels, bit_rates = _FORMATS[
        int(rng.choice(len(_FORMATS), p=shares / shares.sum()))
    ]
    return AudioFormat(
        ext=ext,
        container=container,
        codec=codec,
        sample_fmt=sample_fmt,
        sample_rate=int(rng.choice(rates)),
        channels=int(rng.choice(channels)),
        bit_rate=int(rng.choice(bit_rates)),
    )


def _resample(clip: np.ndarray, rate: int) -> np.ndarray:
    """(n, channels) at 22050 Hz to `rate` with a polyphase filter (deterministic)."""
    if rate == SAMPLE_RATE:
        return clip
    ratio = Fraction(rate, SAMPLE_RATE)
    return signal.resample_poly(clip, ratio.numerator, ratio.denominator, axis=0).astype(np.float32)


def _frame(samples: np.ndarray, audio_format: AudioFormat) -> av.AudioFrame:
    """An AudioFrame from (n, channels) float32 in [-1, 1], in the codec's sample format."""
    planar = audio_format.sample_fmt.endswith("p")
    if audio_format.sample_fmt.startswith("s16"):
        samples = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    data = samples.T if planar else samples.reshape(1, -1)
    layout = "stereo" if audio_format.channels == 2 else "mono"
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data), format=audio_format.sample_fmt, layout=layout
    )
    frame.sample_rate = audio_format.sample_rate
    frame.pts = 0
    return frame


def encode(clip: np.ndarray, audio_format: AudioFormat, title: str, artist: str) -> bytes:
    """Encode a (n, 2) float32 clip at 22050 Hz into the bytes of a file in `audio_format`.

    Title and artist go into the container's tags, as a shop's files carry them.
    """
    samples = clip if audio_format.channels == 2 else clip.mean(axis=1, keepdims=True)
    peak = np.max(np.abs(samples))
    samples = _resample(samples, audio_format.sample_rate)
    samples = samples * min(1.0, peak / (np.max(np.abs(samples)) + 1e-9))  # no new overshoot
    buffer = io.BytesIO()
    with av.open(
        buffer, "w", format=audio_format.container, options={"fflags": "+bitexact"}
    ) as container:
        container.metadata["title"] = title
        container.metadata["artist"] = artist
        options = {"flags": "+bitexact", "strict": "experimental"} | _SPEED.get(
            audio_format.codec, {}
        )
        if audio_format.codec == "vorbis":  # FFmpeg's own Vorbis encoder is quality-driven
            options |= {
                "flags": "+bitexact+qscale",
                "global_quality": str(audio_format.bit_rate * _QP2LAMBDA),
            }
        stream = container.add_stream(
            audio_format.codec, rate=audio_format.sample_rate, options=options
        )
        stream.layout = "stereo" if audio_format.channels == 2 else "mono"
        stream.format = audio_format.sample_fmt
        if audio_format.bit_rate and audio_format.codec != "vorbis":
            stream.bit_rate = audio_format.bit_rate
        for packet in stream.encode(_frame(samples, audio_format)):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
