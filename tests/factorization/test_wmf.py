"""WMF through implicit's CPU ALS: shapes, seeding, and the exact fold-in item step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from factorization.matrices import confidence_matrix, listening_users
from factorization.wmf import ImplicitALSEngine, WMFEngine, WMFParams


@pytest.fixture(scope="module")
def user_song_confidence(listens_and_catalogue: tuple[pd.DataFrame, list[str]]) -> sp.csr_matrix:
    listens, catalogue = listens_and_catalogue
    songs = catalogue[:150]
    return confidence_matrix(listens, listening_users(listens, songs), songs, alpha=2.0, eps=1e-6)


def dense_item_step(
    user_factors: np.ndarray, song_user_confidence: sp.csr_matrix, regularization: float
) -> np.ndarray:
    """The normal equations (XᵀC_iX + λI) y_i = XᵀC_i p_i solved densely in float64."""
    x = user_factors.astype(np.float64)
    stored = song_user_confidence.toarray().astype(np.float64)
    weight = np.where(stored > 0, stored, 1.0)  # unobserved pairs: confidence 1, preference 0
    preference = (stored > 0).astype(np.float64)
    solutions = []
    for c, p in zip(weight, preference, strict=True):
        a = x.T @ (c[:, None] * x) + regularization * np.eye(x.shape[1])
        solutions.append(np.linalg.solve(a, x.T @ (c * p)))
    return np.array(solutions)


def test_params_validate() -> None:
    assert WMFParams().regularization == "auto"
    assert WMFParams(regularization=10.0).to_json()["regularization"] == 10.0
    for bad in ({"factors": 0}, {"iterations": 0}, {"regularization": 0.0}):
        with pytest.raises(ValueError):
            WMFParams(**bad)  # type: ignore[arg-type]


def test_fit_shapes_and_seeding(user_song_confidence: sp.csr_matrix) -> None:
    engine = ImplicitALSEngine(factors=8, regularization=100.0, iterations=4, seed=3)
    assert isinstance(engine, WMFEngine)
    done: list[tuple[int, int]] = []
    user_factors, song_factors = engine.fit(
        user_song_confidence, on_iteration=lambda *a: done.append(a)
    )
    assert done == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert user_factors.shape == (user_song_confidence.shape[0], 8)
    assert song_factors.shape == (user_song_confidence.shape[1], 8)
    assert user_factors.dtype == song_factors.dtype == np.float32
    again = ImplicitALSEngine(8, 100.0, 4, seed=3, num_threads=1).fit(user_song_confidence)
    np.testing.assert_array_equal(again[0], user_factors)  # same seed, any thread count
    np.testing.assert_array_equal(again[1], song_factors)
    other = ImplicitALSEngine(8, 100.0, 4, seed=4).fit(user_song_confidence)
    assert not np.allclose(other[1], song_factors)


def test_fold_in_is_the_exact_item_step(user_song_confidence: sp.csr_matrix) -> None:
    engine = ImplicitALSEngine(factors=6, regularization=30.0, iterations=3, seed=0)
    user_factors, _ = engine.fit(user_song_confidence)
    song_user = user_song_confidence.T.tocsr()[:20]
    folded = engine.fold_in_songs(user_factors, song_user)
    assert folded.shape == (20, 6) and folded.dtype == np.float32
    np.testing.assert_allclose(
        folded, dense_item_step(user_factors, song_user, 30.0), rtol=1e-3, atol=1e-5
    )


def test_fold_in_reproduces_fitted_songs_after_convergence(
    user_song_confidence: sp.csr_matrix,
) -> None:
    engine = ImplicitALSEngine(factors=8, regularization=100.0, iterations=40, seed=0)
    user_factors, song_factors = engine.fit(user_song_confidence)
    folded = engine.fold_in_songs(user_factors, user_song_confidence.T.tocsr())
    scale = np.abs(song_factors).max()
    np.testing.assert_allclose(folded, song_factors, atol=1e-3 * scale)


def test_fold_in_edge_cases(user_song_confidence: sp.csr_matrix) -> None:
    engine = ImplicitALSEngine(factors=4, regularization=100.0, iterations=2)
    user_factors, _ = engine.fit(user_song_confidence)
    n_users = user_factors.shape[0]
    unheard = sp.csr_matrix((2, n_users), dtype=np.float32)
    np.testing.assert_array_equal(engine.fold_in_songs(user_factors, unheard), 0.0)
    assert engine.fold_in_songs(user_factors, sp.csr_matrix((0, n_users))).shape == (0, 4)
    with pytest.raises(ValueError, match="user columns"):
        engine.fold_in_songs(user_factors, sp.csr_matrix((1, n_users + 1)))


@pytest.mark.parametrize("bad", [np.inf, np.nan, 1e38])
def test_a_diverged_fit_fails_at_the_fit_with_the_fact(
    user_song_confidence: sp.csr_matrix, bad: float
) -> None:
    """A confidence that is not finite (or overflows float32 in the solve) makes factors
    that are not finite: the fit refuses them, saying how many rows, instead of handing them
    to fold-in, the index and the service."""
    poisoned = user_song_confidence.copy().astype(np.float32)
    poisoned.data[0] = bad
    engine = ImplicitALSEngine(factors=8, regularization=10.0, iterations=2, num_threads=1)
    with pytest.raises(ValueError, match=r"non-finite factors: \d+ of \d+ user rows"):
        engine.fit(poisoned)
