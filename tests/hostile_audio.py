"""Awkward and hostile uploads, made here with numpy, struct and PyAV (no outside files).

`hostile_corpus()` gives every case by name as a `Hostile` (file name, bytes, and what the
front end should make of it), for the upload routes (tests/service/test_hostile_uploads.py),
featurize and `coldstart validate`. WAVs are written by hand (`wav_bytes`) so that their
headers can lie; MP3, FLAC, Ogg and MP4 come from FFmpeg's encoders through PyAV.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

Outcome = Literal["ok", "normalised", "refused"]
RATE = 22050


@dataclass(frozen=True)
class Hostile:
    """One upload: `outcome` "ok" (embeds), "normalised" (embeds, peak-normalised) or
    "refused" (a 4xx with a stable code); `code` the expected error code when known."""

    filename: str
    data: bytes
    outcome: Outcome
    code: str | None = None


def tone(seconds: float, rate: int = RATE, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A sine with a little seeded noise (not silence, not one pure bin): (n,) float64."""
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(int(hz)).normal(0, 0.05, t.size)
    return amplitude * np.sin(2 * np.pi * hz * t) + amplitude * noise


def wav_bytes(
    frames: np.ndarray,
    rate: int,
    *,
    float32: bool = False,
    declared_data_bytes: int | None = None,
) -> bytes:
    """A WAV of `frames` (n,) or (n, channels): PCM16 (values in [-1, 1]) or IEEE float32
    (any value, NaN included); `declared_data_bytes` forges the data chunk's size."""
    frames = frames if frames.ndim == 2 else frames[:, None]
    channels = frames.shape[1]
    if float32:
        payload = frames.astype("<f4").tobytes()
        tag, width = 3, 4
    else:
        payload = np.clip(np.round(frames * 32767), -32768, 32767).astype("<i2").tobytes()
        tag, width = 1, 2
    size = len(payload) if declared_data_bytes is None else declared_data_bytes
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", min(36 + size, 2**32 - 1), b"WAVE", b"fmt ", 16, tag, channels, rate),
        *(rate * channels * width, channels * width, 8 * width, b"data", size),
    )
    return header + payload


def encoded(
    container: str, codec: str, samples: np.ndarray, rate: int, layout: str = "mono"
) -> bytes:
    """`samples` (n,) in [-1, 1] encoded by FFmpeg's `codec` into `container`."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        sample_format = stream.codec_context.format.name
        channels = stream.codec_context.layout.nb_channels
        pcm = np.repeat(samples[None, :].astype(np.float32), channels, axis=0)
        if not sample_format.endswith("p"):
            pcm = pcm.T.reshape(1, -1)
        if sample_format.startswith("s16"):
            pcm = np.round(pcm * 32767).astype(np.int16)
        elif sample_format.startswith("s32"):
            pcm = np.round(pcm * (2**31 - 1)).astype(np.int32)
        frame_size = stream.codec_context.frame_size or 4096
        for start in range(0, samples.size, frame_size):
            frame = av.AudioFrame.from_ndarray(
                _slice(pcm, start, frame_size, channels, sample_format),
                format=sample_format,
                layout=layout,
            )
            frame.sample_rate = rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def _slice(pcm: np.ndarray, start: int, size: int, channels: int, sample_format: str) -> np.ndarray:
    if sample_format.endswith("p"):
        return np.ascontiguousarray(pcm[:, start : start + size])
    return np.ascontiguousarray(pcm[:, start * channels : (start + size) * channels])


def video_only_mp4() -> bytes:
    """An MP4 holding one short MPEG-4 video track and no audio."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(20):
            image = np.full((32, 32, 3), i * 10, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        out.mux(stream.encode(None))
    return buffer.getvalue()


def png_bytes() -> bytes:
    """A real 4x4 grey PNG image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + b"\x80" * 4 for _ in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def forged_flac_length(flac: bytes) -> bytes:
    """`flac` with STREAMINFO's 36-bit total-samples field set to its maximum."""
    assert flac[:4] == b"fLaC"
    data = bytearray(flac)
    streaminfo = 8  # after "fLaC" and the 4-byte metadata block header
    data[streaminfo + 13] |= 0x0F
    data[streaminfo + 14 : streaminfo + 18] = b"\xff\xff\xff\xff"
    return bytes(data)


def nan_samples(seconds: float = 4.0) -> np.ndarray:
    """A tone with NaN at every 1000th sample, from the very first one."""
    samples = tone(seconds).astype(np.float32)
    samples[::1000] = np.nan
    return samples


def hostile_corpus() -> dict[str, Hostile]:
    """Every case by name (see the module docstring)."""
    music = tone(4.0)
    mp3 = encoded("mp3", "libmp3lame", music, RATE)
    flac = encoded("flac", "flac", music, RATE)
    infinite = tone(4.0).astype(np.float32)
    infinite[5] = np.inf
    infinite[6] = -np.inf
    rng = np.random.default_rng(15)
    surround = np.repeat(tone(3.2, 96000)[:, None], 8, axis=1)
    return {
        "empty": Hostile("empty.mp3", b"", "refused", "audio_empty"),
        "text": Hostile("notes.txt", b"these are not the droids\n" * 40, "refused"),
        "text-named-wav": Hostile("song.wav", b"RIFF but not really\n" * 40, "refused"),
        "png": Hostile("cover.png", png_bytes(), "refused"),
        "png-named-mp3": Hostile("cover.mp3", png_bytes(), "refused"),
        "random-bytes": Hostile("noise.flac", rng.bytes(50_000), "refused"),
        "mp3": Hostile("fine.mp3", mp3, "ok"),
        "mp3-truncated": Hostile("cut.mp3", mp3[: len(mp3) // 3], "refused", "audio_too_short"),
        "mp3-junk-appended": Hostile("junk.mp3", mp3 + rng.bytes(20_000), "ok"),
        "ogg-opus": Hostile("fine.opus", encoded("ogg", "libopus", tone(4.0, 48000), 48000), "ok"),
        "flac": Hostile("fine.flac", flac, "ok"),
        "flac-forged-length": Hostile("forged.flac", forged_flac_length(flac), "ok"),
        "float-wav-nan": Hostile(
            "nan.wav",
            wav_bytes(nan_samples(), RATE, float32=True),
            "refused",
            "audio_invalid_samples",
        ),
        "float-wav-inf": Hostile(
            "inf.wav", wav_bytes(infinite, RATE, float32=True), "refused", "audio_invalid_samples"
        ),
        "float-wav-1e30": Hostile(
            "huge.wav", wav_bytes(tone(4.0) * 1e30, RATE, float32=True), "normalised"
        ),
        "float-wav-plus-6-dbfs": Hostile(
            "hot.wav", wav_bytes(tone(4.0, amplitude=1.6), RATE, float32=True), "normalised"
        ),
        "float-wav-full-scale-stereo-1e38": Hostile(
            "edge.wav",
            wav_bytes(np.repeat((tone(4.0) * 1e38)[:, None], 2, axis=1), RATE, float32=True),
            "normalised",
        ),
        "8-channels-96k": Hostile("surround.wav", wav_bytes(surround, 96000), "ok"),
        "192k": Hostile("hires.wav", wav_bytes(tone(3.2, 192000), 192000), "ok"),
        "255-channels": Hostile(
            "many.wav", wav_bytes(np.repeat(tone(3.2, 8000)[:, None], 255, axis=1), 8000), "ok"
        ),
        "mono-1-hz": Hostile("slow.wav", wav_bytes(np.array([0.5, -0.5] * 5), 1), "refused"),
        "wav-zero-length-data": Hostile("nothing.wav", wav_bytes(np.zeros(0), RATE), "refused"),
        "wav-data-size-too-large": Hostile(
            "liar.wav", wav_bytes(music, RATE, declared_data_bytes=2**31), "ok"
        ),
        "wav-data-size-too-small": Hostile(
            "short-liar.wav", wav_bytes(music, RATE, declared_data_bytes=1000), "refused"
        ),
        "wav-header-only": Hostile("header.wav", wav_bytes(music, RATE)[:44], "refused"),
        "mp4-video-only": Hostile("clip.m4a", video_only_mp4(), "refused", "audio_undecodable"),
        "silent-float-wav": Hostile(
            "quiet.wav",
            wav_bytes(np.zeros(4 * RATE), RATE, float32=True),
            "refused",
            "audio_silent",
        ),
    }
