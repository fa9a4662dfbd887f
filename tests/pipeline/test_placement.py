"""Which songs a version's cf space holds at their WMF factors, which at the CNN's prediction."""

from __future__ import annotations

import numpy as np

from pipeline.registry.placement import has_factors, place_songs


def test_songs_sit_at_factors_with_enough_listeners_or_no_audio() -> None:
    # a: 5 listeners, audio -> factors       b: 1 listener, audio -> prediction
    # c: 1 listener, no audio -> factors     d: zero factors, audio -> prediction
    # e: zero factors, no audio -> nowhere   f: audio only (added by audio) -> prediction
    factor_ids = np.array(["a", "b", "c", "d", "e"], dtype=object)
    factors = np.array([[1, 0], [0, 1], [2, 2], [0, 0], [0, 0]], np.float32)
    listeners = np.array([5, 1, 1, 4, 0])
    content_ids = np.array(["f", "d", "b", "a"], dtype=object)
    content = np.array([[9, 1], [8, 2], [7, 3], [6, 4]], np.float32)

    cf = place_songs(factor_ids, factors, listeners, content_ids, content, min_listeners=3)

    assert cf.ids.tolist() == ["a", "c", "f", "d", "b"]
    assert cf.n_at_factors == 2 and cf.predicted_ids == ["f", "d", "b"]
    np.testing.assert_array_equal(cf.vectors, [[1, 0], [2, 2], [9, 1], [8, 2], [7, 3]])
    assert cf.vectors.dtype == np.float32


def test_the_listener_threshold_moves_songs_between_the_two() -> None:
    factor_ids = np.array(["a", "b"], dtype=object)
    factors = np.array([[1, 1], [2, 2]], np.float32)
    content = np.array([[5, 5], [6, 6]], np.float32)
    everyone = place_songs(factor_ids, factors, np.array([1, 2]), factor_ids, content, 1)
    assert everyone.ids.tolist() == ["a", "b"] and everyone.predicted_ids == []
    nobody = place_songs(factor_ids, factors, np.array([1, 2]), factor_ids, content, 3)
    assert nobody.n_at_factors == 0
    np.testing.assert_array_equal(nobody.vectors, content)


def test_empty_inputs_give_an_empty_space() -> None:
    none = np.array([], dtype=object)
    cf = place_songs(
        none, np.zeros((0, 3), np.float32), np.zeros(0, int), none, np.zeros((0, 3), np.float32), 3
    )
    assert cf.ids.size == 0 and cf.vectors.shape == (0, 3)
    assert has_factors(np.array([[0, 0], [0, 1e-3]], np.float32)).tolist() == [False, True]
