"""A second architecture for the tests, behind a front end of its own: the `dieleman` CNN
hearing 16 kHz audio through 64 mel bands (hop 256, 188 frames = 3 s). It is registered
only where a test asks (`register`), to exercise what one module and one table row must
give a new architecture: its own mel cache, training from it, fine-tuning, serving behind
its own front end, the nightly run switching to it, the report's rows."""

from __future__ import annotations

import pytest

from audio.config import FrontEndConfig
from training.encoders import ARCHITECTURES
from training.encoders.dieleman import DielemanDims, DielemanEncoder

NAME = "dieleman-16k"
FRONT_END_16K = FrontEndConfig(
    sample_rate=16000, n_fft=512, hop_length=256, n_mels=64, f_max=8000.0, window_frames=188
)


class NarrowbandDieleman(DielemanEncoder):
    """`dieleman` behind `FRONT_END_16K`."""

    name = NAME
    summary = "dieleman's CNN behind a 16 kHz, 64-band front end (tests only)"
    default_front_end = FRONT_END_16K
    small_dims = DielemanDims(channels=(16, 16, 32), hidden=(64,))


def register(monkeypatch: pytest.MonkeyPatch) -> str:
    """Add the architecture to the table for one test; returns its name."""
    monkeypatch.setitem(ARCHITECTURES, NAME, f"{__name__}:{NarrowbandDieleman.__name__}")
    return NAME
