"""The classical models read one song's mel at a time: each memmap the cache hands out holds
a file descriptor, so holding every training song's at once ran past the open-files limit
at 28k songs (the scale rehearsal's first night with 38k songs with audio)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from audio.cache import MelCache, default_cache_dir
from training.baseline import BaselineParams, fit_baseline
from training.kmeans import KMeansParams, fit_kmeans
from training.ridge import LazyMels


def _tracking(cache: MelCache) -> tuple[Callable[[str], np.ndarray], list[int]]:
    """`cache.load`, and the most memmaps alive at once after each load."""
    loaded: list[weakref.ref[np.ndarray]] = []
    most: list[int] = [0]

    def load(song_id: str) -> np.ndarray:
        mel = cache.load(song_id)
        loaded.append(weakref.ref(mel))
        most[0] = max(most[0], sum(ref() is not None for ref in loaded))
        return mel

    return load, most


@pytest.mark.parametrize("model", ["linear", "kmeans"])
def test_fitting_a_classical_model_holds_one_songs_mel_at_a_time(
    model: str, tiny_world: Path, trained_run: Path
) -> None:
    """`trained_run`: the tiny world featurized (its 120 songs' mels cached)."""
    cache = MelCache.open(default_cache_dir(tiny_world))
    songs = cache.song_ids
    train, valid = songs[:80], songs[80:100]
    factors = np.random.default_rng(0).standard_normal((len(train), 8)).astype(np.float32)
    load, most = _tracking(cache)
    if model == "linear":
        params = BaselineParams(n_words=16, frames_per_song=20, alphas=(1.0,))
        fitted, _ = fit_baseline(load, train, factors, valid, lambda _: 0.0, params)
    else:
        kmeans = KMeansParams(n_levels=2, n_components=8, n_atoms=16, patches_per_song=10)
        fitted, _ = fit_kmeans(load, train, factors, valid, lambda _: 0.0, kmeans)  # type: ignore[assignment]
    assert most[0] <= 2  # a list of the 80 training songs' memmaps held 80
    predicted = fitted.predict(LazyMels(load, valid))
    assert predicted.shape == (20, 8) and np.isfinite(predicted).all()
    assert most[0] <= 2


def test_lazy_mels_is_a_sequence_of_the_songs_mels(tiny_world: Path, trained_run: Path) -> None:
    cache = MelCache.open(default_cache_dir(tiny_world))
    mels = LazyMels(cache.load, cache.song_ids[:5])
    assert len(mels) == 5 and len(mels[1:3]) == 2
    np.testing.assert_array_equal(mels[3], cache.load(cache.song_ids[3]))
    np.testing.assert_array_equal(mels[1:3][0], cache.load(cache.song_ids[1]))
