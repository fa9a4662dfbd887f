"""The MFCC bag-of-words baseline on the tiny synthetic world (timbre follows the factors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio.config import FRONT_END, FrontEndConfig, FrontEndMismatchError
from ranking.metrics import ranking_metrics
from training.baseline import BaselineParams, LinearBaseline, fit_baseline, mfcc_frames

TRAIN, VALID = slice(0, 120), slice(120, 160)


def test_mfcc_frames_shape() -> None:
    log_mel = np.random.default_rng(0).normal(size=(FRONT_END.n_mels, 50)).astype(np.float16)
    frames = mfcc_frames(log_mel, n_mfcc=13)
    assert frames.shape == (50, 26) and frames.dtype == np.float32


@pytest.fixture(scope="module")
def fitted(synthetic_world) -> tuple[LinearBaseline, dict[float, float]]:
    world = synthetic_world
    relevance = world.relevance(VALID)

    def score(vectors: np.ndarray) -> float:
        return ranking_metrics(world.users, vectors, relevance, k=10).map

    params = BaselineParams(n_mfcc=13, n_words=32, frames_per_song=50, alphas=(0.01, 1.0))
    return fit_baseline(
        world.load,
        world.song_ids[TRAIN],
        world.factors[TRAIN],
        world.song_ids[VALID],
        score,
        params,
    )


def test_fit_predict_beats_random(fitted, synthetic_world) -> None:
    model, scores = fitted
    world = synthetic_world
    predictions = model.predict([world.load(song) for song in world.song_ids[VALID]])
    assert predictions.shape == (40, 4) and predictions.dtype == np.float32
    assert set(scores) == {"ridge alpha=0.01", "ridge alpha=1"} and model.head.label in scores
    relevance = world.relevance(VALID)
    predicted = ranking_metrics(world.users, predictions, relevance, k=10)
    noise = np.random.default_rng(1).normal(size=predictions.shape)
    random = ranking_metrics(world.users, noise, relevance, k=10)
    assert predicted.map == pytest.approx(scores[model.head.label])
    assert predicted.map > random.map + 0.2 and predicted.auc > 0.75 > random.auc


def test_save_load_round_trip(fitted, synthetic_world, tmp_path: Path) -> None:
    model, _ = fitted
    model.save(tmp_path / "linear", parents={"factorization": "abc"})
    loaded = LinearBaseline.load(tmp_path / "linear")
    clips = [synthetic_world.load(song) for song in synthetic_world.song_ids[:5]]
    np.testing.assert_array_equal(loaded.predict(clips), model.predict(clips))
    with pytest.raises(FrontEndMismatchError, match="n_mels"):
        LinearBaseline.load(tmp_path / "linear", FrontEndConfig(n_mels=64))
