"""The teacher's weights for the tests: fetched from PyPI once into the repository's ignored
`.cache/coldstart/` (tests read nothing outside the repository), or skipped with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.encoders.musicnn_weights import MusicnnWeightsError, fetch_weights

TEST_CACHE = Path(__file__).resolve().parents[3] / ".cache" / "coldstart"


@pytest.fixture(scope="session")
def musicnn_cache() -> Path:
    """A cache root holding the wheel and the converted weights (`musicnn_weights`)."""
    try:
        fetch_weights(TEST_CACHE)
    except MusicnnWeightsError as error:
        pytest.skip(f"the musicnn weights are unavailable: {error}")
    return TEST_CACHE
