"""Audio files written by the tests: PCM16 WAVs of any rate, channel count and length."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

WavWriter = Callable[..., Path]


def wav_header(n_frames: int, rate: int, channels: int) -> bytes:
    """The 44-byte header of a PCM16 WAV holding `n_frames` frames."""
    data = n_frames * channels * 2
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1, channels, rate),
        *(rate * channels * 2, channels * 2, 16, b"data", data),
    )


def write_wav(path: Path, samples: np.ndarray, rate: int, total_frames: int | None = None) -> Path:
    """Write `samples` (n,) or (n, channels) in [-1, 1] as PCM16 at `rate`.

    With `total_frames` larger than n, the header announces that many frames and the
    file is extended with a hole (zeros that take no disk): a long file made at once.
    """
    frames = samples if samples.ndim == 2 else samples[:, None]
    n_frames, channels = frames.shape
    total = n_frames if total_frames is None else total_frames
    pcm = np.clip(np.round(frames * 32767), -32768, 32767).astype("<i2")
    with open(path, "wb") as handle:
        handle.write(wav_header(total, rate, channels))
        handle.write(pcm.tobytes())
        handle.truncate(44 + total * channels * 2)
    return path


@pytest.fixture
def wav(tmp_path: Path) -> WavWriter:
    """`wav(name, samples, rate, total_frames=None)` -> path of a WAV in tmp_path."""

    def make(name: str, samples: np.ndarray, rate: int, total_frames: int | None = None) -> Path:
        return write_wav(tmp_path / name, samples, rate, total_frames)

    return make


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread per test: on a shared 2-core machine, two threads that wait
    for each other make the mel several times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
