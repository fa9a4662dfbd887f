"""Multiscale spherical k-means features on hand-made spectrograms and the tiny synthetic world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio.config import FrontEndConfig, FrontEndMismatchError
from audio.errors import AudioError
from ranking.metrics import ranking_metrics
from training.inference import load_predictor
from training.kmeans import (
    KMeansModel,
    KMeansParams,
    expand_time,
    fit_kmeans,
    gaussian_pyramid,
    laplacian_pyramid,
    patches,
    spherical_kmeans,
    unit_rows,
)
from training.ridge import head_label

TRAIN, VALID = slice(0, 120), slice(120, 160)
SMALL = KMeansParams(
    n_levels=3, patch_frames=2, n_components=16, n_atoms=24, patches_per_song=40, iterations=8
)


def test_pyramids_levels_and_shapes() -> None:
    """Each Gaussian level halves the frames (rounding up); a constant spectrogram stays
    constant, so its Laplacian details are exactly zero and its top level is the constant."""
    constant = np.full((3, 13), 2.5, dtype=np.float16)
    gaussian = gaussian_pyramid(constant, 4)
    assert [level.shape for level in gaussian] == [(3, 13), (3, 7), (3, 4), (3, 2)]
    for level in gaussian:
        np.testing.assert_allclose(level, 2.5, rtol=1e-6)
    laplacian = laplacian_pyramid(constant, 4)
    assert [level.shape for level in laplacian] == [(3, 13), (3, 7), (3, 4), (3, 2)]
    for detail in laplacian[:-1]:
        np.testing.assert_allclose(detail, 0.0, atol=1e-6)
    np.testing.assert_allclose(laplacian[-1], 2.5, rtol=1e-6)


def test_pyramid_smooths_and_keeps_the_detail() -> None:
    """An alternating frame pattern (the fastest change) is gone from the coarser Gaussian
    level and sits in the first Laplacian detail; the pyramid reconstructs the input."""
    frames = np.tile([1.0, -1.0], 8)[None, :].repeat(2, axis=0).astype(np.float32)
    gaussian = gaussian_pyramid(frames, 2)
    assert np.abs(gaussian[1][:, 1:-1]).max() < 1e-6  # away from the repeated edges
    laplacian = laplacian_pyramid(frames, 2)
    rebuilt = laplacian[0] + expand_time(laplacian[1], frames.shape[1])
    np.testing.assert_allclose(rebuilt, frames, atol=1e-6)
    assert np.abs(laplacian[0]).mean() > 0.9


def test_patches_are_runs_of_frames() -> None:
    level = np.arange(12, dtype=np.float32).reshape(2, 6)
    runs = patches(level, 3)
    assert runs.shape == (4, 6)
    np.testing.assert_array_equal(runs[1], np.concatenate([level[:, 1:4]]).ravel())


def test_spherical_kmeans_atoms_have_unit_norm() -> None:
    rng = np.random.default_rng(0)
    centres = unit_rows(rng.normal(size=(5, 8)))
    points = unit_rows(np.repeat(centres, 50, axis=0) + rng.normal(scale=0.05, size=(250, 8)))
    atoms = spherical_kmeans(points, 5, 10, np.random.default_rng(1))
    assert atoms.shape == (5, 8) and atoms.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(atoms, axis=1), 1.0, rtol=1e-5)
    # Every true direction has an atom close to it.
    assert (centres @ atoms.T).max(axis=1).min() > 0.95


@pytest.fixture(scope="module")
def fitted(synthetic_world) -> tuple[KMeansModel, dict[str, float]]:
    world = synthetic_world
    relevance = world.relevance(VALID)

    def score(vectors: np.ndarray) -> float:
        return ranking_metrics(world.users, vectors, relevance, k=10).map

    return fit_kmeans(
        world.load,
        world.song_ids[TRAIN],
        world.factors[TRAIN],
        world.song_ids[VALID],
        score,
        SMALL,
    )


def test_fit_predict_beats_random(fitted, synthetic_world) -> None:
    model, scores = fitted
    world = synthetic_world
    n_features = SMALL.n_levels * 2 * SMALL.n_atoms
    assert model.atoms.shape == (SMALL.n_levels, SMALL.n_atoms, SMALL.n_components)
    np.testing.assert_allclose(np.linalg.norm(model.atoms, axis=2), 1.0, rtol=1e-5)
    clips = [world.load(song) for song in world.song_ids[VALID]]
    assert model.features(clips).shape == (40, n_features)
    predictions = model.predict(clips)
    assert predictions.shape == (40, 4) and predictions.dtype == np.float32
    assert set(scores) == {head_label("ridge", alpha) for alpha in SMALL.alphas} | {
        head_label("mlp", alpha) for alpha in SMALL.mlp_alphas
    }
    assert max(scores, key=scores.__getitem__) == model.head.label
    relevance = world.relevance(VALID)
    predicted = ranking_metrics(world.users, predictions, relevance, k=10)
    noise = np.random.default_rng(1).normal(size=predictions.shape)
    random = ranking_metrics(world.users, noise, relevance, k=10)
    assert predicted.map == pytest.approx(scores[model.head.label])
    assert predicted.map > random.map + 0.2 and predicted.auc > 0.75 > random.auc


def test_save_load_round_trip(fitted, synthetic_world, tmp_path: Path) -> None:
    model, _ = fitted
    model.save(tmp_path / "kmeans", parents={"factorization": "abc"})
    assert {path.name for path in (tmp_path / "kmeans").iterdir()} == {
        "kmeans.npz",
        "kmeans.json",
        "manifest.json",
    }
    loaded = KMeansModel.load(tmp_path / "kmeans")
    assert loaded.params == SMALL and loaded.head.label == model.head.label
    clips = [synthetic_world.load(song) for song in synthetic_world.song_ids[:5]]
    # Equal up to BLAS's rounding: a loaded array's layout may take another kernel path.
    np.testing.assert_allclose(loaded.predict(clips), model.predict(clips), rtol=1e-5, atol=1e-6)
    with pytest.raises(FrontEndMismatchError, match="n_mels"):
        KMeansModel.load(tmp_path / "kmeans", FrontEndConfig(n_mels=64))


def test_served_file_and_short_clip(fitted, tmp_path: Path) -> None:
    """Through the serving path a file gets its factors, and a clip shorter than one
    window the front end's `too_short` error (the service's `audio_too_short`)."""
    from tests.hostile_audio import tone, wav_bytes

    model, _ = fitted
    model.save(tmp_path / "kmeans")
    predict = load_predictor(tmp_path / "kmeans")
    rate = model.config.sample_rate
    song = tmp_path / "song.wav"
    song.write_bytes(wav_bytes(tone(4.0, rate), rate))
    factors = predict(song)
    assert factors.shape == (4,) and np.isfinite(factors).all()
    short = tmp_path / "short.wav"
    short.write_bytes(wav_bytes(tone(1.0, rate), rate))
    with pytest.raises(AudioError) as caught:
        predict(short)
    assert caught.value.code == "too_short"


def test_too_short_log_mel_and_bad_params_are_refused(fitted) -> None:
    model, _ = fitted
    with pytest.raises(ValueError, match="shorter than"):
        model.predict([np.zeros((128, SMALL.frames_needed() - 1), np.float16)])
    with pytest.raises(ValueError, match="pyramid"):
        KMeansParams(pyramid="steerable")
