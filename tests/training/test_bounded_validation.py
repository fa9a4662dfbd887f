"""A night on a catalogue's songs trains on a bounded amount: the models are scored on at
most `max_valid_songs` validation songs (the same seeded draw for every model), and the
classical models fit on at most `max_train_songs` training songs."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from artifacts.run_layout import FACTORIZATION_DIR, MODELS_DIR, TEST_FACTORS_FILE
from training.baseline import BaselineParams, fit_baseline
from training.run import train_classical
from training.run_data import RunData, load_run_data


def _bounded(trained_run: Path, tiny_world: Path, max_valid_songs: int) -> RunData:
    data = load_run_data(trained_run, dataset_root=tiny_world)
    return dataclasses.replace(data, max_valid_songs=max_valid_songs)


def test_validation_is_every_song_with_audio_below_the_bound(
    tiny_world: Path, trained_run: Path
) -> None:
    data = load_run_data(trained_run, dataset_root=tiny_world)
    with_audio = data.cached(data.factorization.valid_song_ids)[1]
    assert with_audio.size > 5
    np.testing.assert_array_equal(data.validation_rows(), with_audio)
    ids, rows = data.validation()
    assert ids == [data.factorization.valid_song_ids[row] for row in with_audio]


def test_validation_above_the_bound_is_one_seeded_draw_in_order(
    tiny_world: Path, trained_run: Path
) -> None:
    data = _bounded(trained_run, tiny_world, max_valid_songs=5)
    with_audio = data.cached(data.factorization.valid_song_ids)[1]
    rows = data.validation_rows()
    assert rows.size == 5 and np.all(np.diff(rows) > 0)
    assert set(rows.tolist()) <= set(with_audio.tolist())
    # the same songs for every model of the run, and for a fresh load of it
    np.testing.assert_array_equal(_bounded(trained_run, tiny_world, 5).validation_rows(), rows)
    ids, same_rows = data.validation()
    np.testing.assert_array_equal(same_rows, rows)
    assert ids == [data.factorization.valid_song_ids[row] for row in rows]
    every_song = data.validation_rows(with_audio=False)
    n_valid = len(data.factorization.valid_song_ids)
    assert every_song.size == 5 and every_song.max() < n_valid and np.all(np.diff(every_song) > 0)


def test_a_classical_model_fits_on_at_most_its_bound_of_songs(
    tiny_world: Path, trained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run / FACTORIZATION_DIR, run / FACTORIZATION_DIR)
    data = dataclasses.replace(load_run_data(run, dataset_root=tiny_world), max_valid_songs=4)
    seen: dict[str, list[str]] = {}

    def recording_fit(*args: Any, **kwargs: Any) -> tuple[Any, dict[float, float]]:
        """`fit_baseline`, noting the songs it is given (`train_classical` passes them by
        position: load_mel, train ids, train factors, valid ids, ...)."""
        seen["train"], seen["valid"] = list(args[1]), list(args[3])
        assert args[2].shape[0] == len(args[1])
        return fit_baseline(*args, **kwargs)

    params = BaselineParams(n_words=16, frames_per_song=20, alphas=(1.0, 10.0))
    manifest = train_classical(data, "linear", recording_fit, params, max_train_songs=30)

    f = data.factorization
    assert manifest["train_songs"] == 30 and len(set(seen["train"])) == 30
    assert set(seen["train"]) <= set(f.song_ids)
    assert seen["valid"] == data.validation()[0] and len(seen["valid"]) == 4
    test_factors = np.load(run / MODELS_DIR / "linear" / TEST_FACTORS_FILE)
    assert test_factors.shape == (len(f.test_song_ids), f.n_factors)
    assert np.isfinite(test_factors).all() and np.abs(test_factors).sum() > 0
    first_draw = seen["train"]
    train_classical(
        data, "linear", recording_fit, dataclasses.replace(params, seed=1), max_train_songs=30
    )
    assert len(seen["train"]) == 30 and seen["train"] != first_draw  # another seed, other songs
