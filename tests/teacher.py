"""The teacher's weights for the tests: fetched from PyPI once into the repository's ignored
`.cache/coldstart/` (tests read nothing outside the repository), or the test skipped with
the reason (the fixture `musicnn_cache`, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.encoders.musicnn_weights import CACHE_ENV, MusicnnWeightsError, fetch_weights

TEST_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "coldstart"
# Architectures whose fresh encoder needs the teacher's weights (read from the cache): it
# starts from them, distils the teacher and serves its tags, or hears beside it.
PRETRAINED = ("musicnn-msd", "student", "dieleman-msd")


def teacher_cache() -> Path:
    """A cache root holding the wheel and the converted weights (`musicnn_weights`); skips
    the calling test when they can be neither found nor fetched."""
    try:
        fetch_weights(TEST_CACHE)
    except MusicnnWeightsError as error:
        pytest.skip(f"the musicnn weights are unavailable: {error}")
    return TEST_CACHE


def use_teacher_cache(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the weights' cache (`$COLDSTART_CACHE`) at `musicnn_cache`."""
    monkeypatch.setenv(CACHE_ENV, str(request.getfixturevalue("musicnn_cache")))
