"""Folding users in against fixed song factors: implicit's `recalculate_user` on the same
matrix is the reference; the rule a factorization records is the one folded with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from factorization.confidence import confidence
from factorization.fold_in import FixedFactors, FoldInRule, Regularization, fold_in_user
from factorization.matrices import listening_users, play_count_matrix
from factorization.wmf import ImplicitALSEngine

RULE = FoldInRule(Regularization(30.0), alpha=2.0, eps=1e-6)


@pytest.fixture(scope="module")
def play_counts(listens_and_catalogue: tuple[pd.DataFrame, list[str]]) -> sp.csr_matrix:
    listens, catalogue = listens_and_catalogue
    songs = catalogue[:150]
    return play_count_matrix(listens, listening_users(listens, songs), songs)


@pytest.fixture(scope="module")
def fitted(play_counts: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    user_song_confidence = play_counts.copy()
    confidence(user_song_confidence.data, RULE.alpha, RULE.eps, out=user_song_confidence.data)
    engine = ImplicitALSEngine(factors=10, regularization=30.0, iterations=8, seed=1)
    return engine.fit(user_song_confidence)


def recalculated(song_factors: np.ndarray, user_song_confidence: sp.csr_matrix) -> np.ndarray:
    """implicit's CPU `recalculate_user` for every row (its stored values the confidences)."""
    model = AlternatingLeastSquares(
        factors=song_factors.shape[1], regularization=30.0, alpha=1.0, dtype=np.float32
    )
    model.item_factors = song_factors
    return model.recalculate_user(np.arange(user_song_confidence.shape[0]), user_song_confidence)


def test_a_folded_in_user_is_implicits_recalculate_user(
    play_counts: sp.csr_matrix, fitted: tuple[np.ndarray, np.ndarray]
) -> None:
    _, song_factors = fitted
    songs = FixedFactors(song_factors)
    rows = play_counts[:60]
    ours = np.stack(
        [
            fold_in_user(songs, rows.indices[start:stop], rows.data[start:stop], RULE)
            for start, stop in zip(rows.indptr[:-1], rows.indptr[1:], strict=True)
        ]
    )
    user_song_confidence = rows.copy()
    confidence(user_song_confidence.data, RULE.alpha, RULE.eps, out=user_song_confidence.data)
    reference = recalculated(song_factors, user_song_confidence)
    assert ours.dtype == np.float32 and ours.shape == (60, 10)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)
    # Every user of the batch at once (`FixedFactors.fold_in`) is the same solve.
    together = songs.fold_in(user_song_confidence, RULE.regularization)
    np.testing.assert_allclose(together, ours, rtol=0, atol=1e-6)


def test_per_listen_regularization_scales_with_the_users_listens(
    fitted: tuple[np.ndarray, np.ndarray],
) -> None:
    """Spark's ALS-WR: λ n_u on the diagonal, as a dense solve of the normal equations."""
    _, song_factors = fitted
    songs = FixedFactors(song_factors)
    rows, counts = np.array([3, 17, 40, 41]), np.array([1, 5, 2, 80])
    per_listen = FoldInRule(Regularization(7.5, per_listen=True), RULE.alpha, RULE.eps)
    got = fold_in_user(songs, rows, counts, per_listen)
    y = song_factors.astype(np.float64)
    c = np.ones(len(y))
    c[rows] = confidence(counts.astype(np.float32), RULE.alpha, RULE.eps)
    p = np.zeros(len(y))
    p[rows] = 1.0
    lhs = y.T @ (c[:, None] * y) + 7.5 * 4 * np.eye(y.shape[1])
    np.testing.assert_allclose(got, np.linalg.solve(lhs, y.T @ (c * p)), rtol=1e-5, atol=1e-6)


def test_rules_from_factorization_and_version_parameters() -> None:
    implicit = {"regularization": 61.5, "alpha": 2.0, "eps": 1e-6, "engine": "implicit.cpu.als"}
    assert FoldInRule.from_parameters(implicit) == FoldInRule(Regularization(61.5), 2.0, 1e-6)
    spark = {**implicit, "engine": "spark.ml.ALS", "spark": {"reg_param": 0.4}}
    rule = FoldInRule.from_parameters(spark)
    assert rule.regularization == Regularization(0.4, per_listen=True)
    assert FoldInRule.from_parameters(rule.to_json()) == rule


def test_edge_cases(fitted: tuple[np.ndarray, np.ndarray]) -> None:
    _, song_factors = fitted
    songs = FixedFactors(song_factors)
    assert not fold_in_user(songs, [], [], RULE).any()
    with pytest.raises(ValueError, match="must match"):
        songs.solve([1, 2], [3.0], RULE.regularization)
    with pytest.raises(ValueError, match="columns, the fixed factors"):
        songs.fold_in(sp.csr_matrix((1, len(song_factors) + 1)), RULE.regularization)
    with pytest.raises(ValueError, match="float32"):
        FixedFactors(song_factors.astype(np.float64))
    with pytest.raises(ValueError, match="regularization must be > 0"):
        Regularization(0.0)
