"""Choosing the regularization on held-out pairs: the hold-out, the negatives, the score."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from factorization.matrices import confidence_matrix, listening_users
from factorization.regularization import (
    choose_regularization,
    hold_out_pairs,
    sample_negatives,
    sampled_auc,
)
from factorization.wmf import ImplicitALSEngine


@pytest.fixture(scope="module")
def user_song_confidence(listens_and_catalogue: tuple[pd.DataFrame, list[str]]) -> sp.csr_matrix:
    listens, catalogue = listens_and_catalogue
    songs = catalogue[:150]
    return confidence_matrix(listens, listening_users(listens, songs), songs, alpha=2.0, eps=1e-6)


def test_hold_out_hides_pairs_and_keeps_the_rest(user_song_confidence: sp.csr_matrix) -> None:
    held = hold_out_pairs(user_song_confidence, 0.1, 10_000, np.random.default_rng(0))
    assert held.users.size == round(0.1 * user_song_confidence.nnz)
    assert held.train.nnz + held.users.size == user_song_confidence.nnz
    assert np.all(np.asarray(held.train[held.users, held.songs]) == 0)
    assert np.all(np.asarray(user_song_confidence[held.users, held.songs]) > 0)
    restored = held.train + sp.csr_matrix(
        (
            np.asarray(user_song_confidence[held.users, held.songs]).ravel(),
            (held.users, held.songs),
        ),
        shape=held.train.shape,
    )
    assert (restored != user_song_confidence).nnz == 0
    assert np.all(np.diff(user_song_confidence.indptr)[held.users] >= 2)
    assert hold_out_pairs(user_song_confidence, 0.5, 7, np.random.default_rng(0)).users.size == 7


def test_negatives_are_never_observed(user_song_confidence: sp.csr_matrix) -> None:
    users = np.repeat(np.arange(user_song_confidence.shape[0]), 3)
    negatives, valid = sample_negatives(user_song_confidence, users, 5, np.random.default_rng(1))
    assert negatives.shape == valid.shape == (users.size, 5)
    observed = np.asarray(user_song_confidence[np.repeat(users, 5), negatives.ravel()]).ravel()
    assert np.all(observed[valid.ravel()] == 0)
    assert valid.mean() > 0.99


def test_sampled_auc() -> None:
    user_factors = np.array([[1.0], [2.0]], dtype=np.float32)
    song_factors = np.array([[3.0], [1.0], [1.0]], dtype=np.float32)
    users = np.array([0, 1])
    negatives = np.array([[1, 2], [1, 1]])
    valid = np.ones((2, 2), dtype=bool)
    assert sampled_auc(user_factors, song_factors, users, np.array([0, 0]), negatives, valid) == 1.0
    assert sampled_auc(user_factors, song_factors, users, np.array([1, 2]), negatives, valid) == 0.5
    valid[1] = False
    assert sampled_auc(user_factors, song_factors, users, np.array([0, 0]), negatives, valid) == 1.0


def test_choose_regularization_prefers_a_sensible_scale(
    make_listens: Callable[..., tuple[pd.DataFrame, list[str]]],
) -> None:
    # more users than the shared fixture, so that the held-out score separates the values
    listens, catalogue = make_listens(n_users=1000, n_songs=300, seed=0)
    songs = catalogue[:300]
    user_song_confidence = confidence_matrix(
        listens, listening_users(listens, songs), songs, alpha=2.0, eps=1e-6
    )

    def make_engine(regularization: float, iterations: int) -> ImplicitALSEngine:
        return ImplicitALSEngine(10, regularization, iterations, seed=0)

    seen: list[tuple[float, float]] = []
    search = choose_regularization(
        user_song_confidence,
        make_engine,
        grid=(0.01, 100.0, 1e5),
        iterations=5,
        on_value=lambda value, score: seen.append((value, score)),
    )
    assert search.grid == [0.01, 100.0, 1e5]
    assert [value for value, _ in seen] == search.grid
    assert search.scores == [score for _, score in seen]
    # 0.01 is no regularization at all on confidences of ~30; 1e5 crushes every factor
    assert search.chosen == 100.0
    assert search.iterations == 5 and search.metric == "sampled_auc"
    assert search == choose_regularization(
        user_song_confidence, make_engine, grid=(0.01, 100.0, 1e5), iterations=5
    )
