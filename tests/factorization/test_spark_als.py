"""WMF on Spark MLlib's ALS (local[2]): the objective it solves, its fold-in, and a run that
matches implicit's files and upper bound."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from corpus.dataset import load_dataset
from factorization.matrices import confidence_matrix, listening_users, play_count_matrix
from factorization.run import factorize_run, load_factorization
from factorization.spark_als import (
    SparkALSEngine,
    spark_reg_param,
    write_listens_parquet,
)
from factorization.warm_start import WarmStart
from factorization.wmf import WMFEngine, WMFParams
from ranking.metrics import expected_random_map, ranking_metrics

pytest.importorskip("pyspark")

MASTER = "local[2]"
RUN_PARAMS = WMFParams(factors=16, regularization=10.0, iterations=10)
UPPER_BOUND_TOLERANCE = 0.03  # absolute mAP@500; measured gap 0.002 (0.806 vs 0.804)


@pytest.fixture(scope="module")
def small_confidence(
    make_listens: Callable[..., tuple[pd.DataFrame, list[str]]],
) -> sp.csr_matrix:
    """`(users, songs)` confidences with very unequal row counts (power-law activity)."""
    listens, catalogue = make_listens(n_users=60, n_songs=40, n_unheard=2, seed=1)
    return confidence_matrix(listens, listening_users(listens, catalogue), catalogue, 2.0, 1e-6)


@pytest.fixture(scope="module")
def fitted(
    spark: Any, small_confidence: sp.csr_matrix, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SparkALSEngine, np.ndarray, np.ndarray]:
    staging = tmp_path_factory.mktemp("staging")
    engine = SparkALSEngine(
        factors=3,
        regularization=30.0,
        iterations=3,
        seed=0,
        master=MASTER,
        staging_dir=str(staging),
    )
    done: list[tuple[int, int]] = []
    user_factors, song_factors = engine.fit(
        small_confidence, on_iteration=lambda *a: done.append(a)
    )
    assert done == [(3, 3)]
    assert not any(staging.iterdir())  # the listens Parquet is gone once the factors are back
    return engine, user_factors, song_factors


def test_listens_parquet_holds_confidence_minus_one(
    small_confidence: sp.csr_matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    from factorization import spark_als

    monkeypatch.setattr(spark_als, "PARQUET_ROWS_PER_GROUP", 97)  # several row groups
    path = tmp_path / "listens.parquet"
    write_listens_parquet(small_confidence, str(path))
    assert pq.ParquetFile(path).num_row_groups == -(-small_confidence.nnz // 97)
    table = pq.read_table(path)
    users, songs = table["user"].to_numpy(), table["song"].to_numpy()
    back = sp.csr_matrix(
        (table["rating"].to_numpy() + 1.0, (users, songs)), shape=small_confidence.shape
    )
    assert back.nnz == small_confidence.nnz
    np.testing.assert_allclose(back.toarray(), small_confidence.toarray(), rtol=1e-6)


def dense_step(
    fixed: np.ndarray, confidence: sp.csr_matrix, ridge: np.ndarray, data_shift: float = 0.0
) -> np.ndarray:
    """Rows solving `(FᵀC_rF + ridge_r I) x_r = FᵀC_r p_r` densely in float64, with `fixed`
    the other side's factors; unstored pairs have confidence 1 and preference 0.
    `data_shift` adds to every stored confidence (a wrong mapping, for the negative check)."""
    f = fixed.astype(np.float64)
    stored = confidence.toarray().astype(np.float64)
    preference = stored > 0
    weight = np.where(preference, stored + data_shift, 1.0)
    return np.array(
        [
            np.linalg.solve(f.T @ (c[:, None] * f) + r * np.eye(f.shape[1]), f.T @ (c * p))
            for c, p, r in zip(weight, preference, ridge, strict=True)
        ]
    )


def test_fit_solves_our_objective_with_spark_row_regularization(
    small_confidence: sp.csr_matrix, fitted: tuple[SparkALSEngine, np.ndarray, np.ndarray]
) -> None:
    """Spark's last half-step is the user step: the returned user factors must be the exact
    solution of our normal equations (confidence c, preference 1) given the song factors,
    with ridge `reg_param * n_u`. Neither implicit's constant λ nor rating = c fits."""
    engine, user_factors, song_factors = fitted
    assert isinstance(engine, WMFEngine)
    n_u = np.diff(small_confidence.indptr)
    n_s = np.bincount(small_confidence.indices, minlength=small_confidence.shape[1])
    assert n_u.max() >= 5 * n_u.min()  # row counts differ: the regularization rule matters
    expected = 30.0 * (np.count_nonzero(n_u) + np.count_nonzero(n_s)) / (2 * small_confidence.nnz)
    assert engine.reg_param == pytest.approx(expected)
    assert engine.fitted_on == MASTER
    assert user_factors.shape == (small_confidence.shape[0], 3)
    assert user_factors.dtype == song_factors.dtype == np.float32
    assert not song_factors[n_s == 0].any()  # songs nobody played: zero, as implicit

    exact = dense_step(song_factors, small_confidence, engine.reg_param * n_u)
    np.testing.assert_allclose(user_factors, exact, rtol=1e-4, atol=1e-5)
    constant = dense_step(song_factors, small_confidence, np.full(n_u.size, 30.0))
    assert np.abs(user_factors - constant).max() > 100 * np.abs(user_factors - exact).max()
    shifted = dense_step(song_factors, small_confidence, engine.reg_param * n_u, data_shift=1.0)
    assert np.abs(user_factors - shifted).max() > 100 * np.abs(user_factors - exact).max()


def test_fold_in_is_the_exact_item_step(
    small_confidence: sp.csr_matrix, fitted: tuple[SparkALSEngine, np.ndarray, np.ndarray]
) -> None:
    engine, user_factors, _ = fitted
    songs = small_confidence.T.tocsr()
    folded = engine.fold_in_songs(user_factors, songs)
    listeners = np.diff(songs.indptr)
    assert folded.dtype == np.float32 and folded.shape == (songs.shape[0], 3)
    assert not folded[listeners == 0].any()
    expected = dense_step(user_factors, songs, engine.reg_param * listeners)
    np.testing.assert_allclose(folded, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="columns, the fixed factors"):
        engine.fold_in_songs(user_factors[:-1], songs)
    with pytest.raises(ValueError, match="call fit first"):
        SparkALSEngine(factors=3).fold_in_songs(user_factors, songs)


def test_reg_param_is_lambda_when_every_row_has_the_same_count() -> None:
    """A circulant matrix (every user and song with 4 listens): ALS-WR's `reg_param * 4` is
    implicit's λ for every row, so both engines solve the same objective."""
    n, k = 12, 4
    rows = np.repeat(np.arange(n), k)
    columns = (rows + np.tile(np.arange(k), n)) % n
    regular = sp.csr_matrix((np.full(n * k, 29.0, np.float32), (rows, columns)), shape=(n, n))
    assert spark_reg_param(50.0, regular) * k == pytest.approx(50.0)


def test_refused_inputs(small_confidence: sp.csr_matrix, tmp_path: Path) -> None:
    engine = SparkALSEngine(factors=3, master=MASTER)
    with pytest.raises(ValueError, match="cannot start from given factors"):
        engine.fit(small_confidence, initial=(np.zeros((1, 3)), np.zeros((1, 3))))
    ones = small_confidence.copy()
    ones.data[:] = 1.0  # alpha 0: Spark would read rating 0 as "not listened"
    with pytest.raises(ValueError, match="<= 1"):
        engine.fit(ones)
    warm = WarmStart("v1", ["U"], np.zeros((1, 3), np.float32), ["S"], np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="cannot warm start"):
        factorize_run(
            tmp_path, tmp_path / "run", WMFParams(factors=3), engine="spark", warm_start=warm
        )
    with pytest.raises(ValueError, match="engine must be one of"):
        factorize_run(tmp_path, tmp_path / "run", engine="mahout")


def upper_bound_map(run: Path, listens: pd.DataFrame) -> tuple[float, float]:
    """(mAP@500 of the folded-in test songs, expected random mAP@500), as evaluate_run scores."""
    factorization = load_factorization(run)
    plays = play_count_matrix(listens, factorization.user_ids, factorization.test_song_ids)
    evaluated = np.flatnonzero(np.diff(plays.indptr) > 0)
    relevance = sp.csr_array(plays[evaluated] > 0)
    metrics = ranking_metrics(
        factorization.user_factors[evaluated], factorization.test_song_factors, relevance
    )
    return metrics.map, expected_random_map(np.diff(relevance.indptr), relevance.shape[1])


def test_spark_run_matches_implicit_run(spark: Any, tiny_world: Path, tmp_path: Path) -> None:
    """`coldstart factorize --engine spark` writes implicit's files with the same shapes and
    ids, and its upper bound is within UPPER_BOUND_TOLERANCE of implicit's."""
    from cli.main import app

    implicit_run, spark_run = tmp_path / "implicit", tmp_path / "spark"
    factorize_run(tiny_world, implicit_run, RUN_PARAMS, progress=False)
    result = CliRunner().invoke(
        app,
        [
            "factorize",
            str(tiny_world),
            "--run",
            str(spark_run),
            "--factors",
            str(RUN_PARAMS.factors),
            "--regularization",
            str(RUN_PARAMS.regularization),
            "--iterations",
            str(RUN_PARAMS.iterations),
            "--engine",
            "spark",
            "--spark-master",
            MASTER,
        ],
    )
    assert result.exit_code == 0, result.output

    on_implicit, on_spark = load_factorization(implicit_run), load_factorization(spark_run)
    assert on_implicit.manifest["parameters"]["engine"] == "implicit.cpu.als"
    parameters = on_spark.manifest["parameters"]
    assert parameters["engine"] == "spark.ml.ALS"
    assert parameters["regularization"] == RUN_PARAMS.regularization
    assert parameters["spark"]["master"] == MASTER and parameters["spark"]["reg_param"] > 0
    assert on_spark.manifest["files"].keys() == on_implicit.manifest["files"].keys()
    assert on_spark.manifest["counts"] == on_implicit.manifest["counts"]
    for name in ("user", "song", "valid_song", "test_song"):
        assert getattr(on_spark, f"{name}_ids") == getattr(on_implicit, f"{name}_ids")
        spark_factors = getattr(on_spark, f"{name}_factors")
        assert spark_factors.shape == getattr(on_implicit, f"{name}_factors").shape
        assert np.isfinite(spark_factors).all()

    listens = load_dataset(tiny_world).listens
    implicit_map, random_map = upper_bound_map(implicit_run, listens)
    spark_map, _ = upper_bound_map(spark_run, listens)
    assert implicit_map > random_map + 0.3  # a real upper bound, not two random rankings
    assert abs(spark_map - implicit_map) <= UPPER_BOUND_TOLERANCE
