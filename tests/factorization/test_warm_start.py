"""Warm-starting WMF from earlier factors, and the drift measure that reports how far they moved.

WMF's loss does not change under a rotation of the factor space, so a fit from random
factors lands anywhere; these tests pin down that a warm start stays put where a cold fit
does not, and that the manifest says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from factorization.matrices import confidence_matrix, listening_users
from factorization.run import Factorization, factorize_run, load_factorization
from factorization.warm_start import INIT_SCALE, WarmStart, factor_drift, initial_factors
from factorization.wmf import ImplicitALSEngine, WMFParams

PARAMS = WMFParams(factors=8, regularization=10.0, iterations=15)


@pytest.fixture(scope="module")
def user_song_confidence(listens_and_catalogue: tuple[pd.DataFrame, list[str]]) -> sp.csr_matrix:
    listens, catalogue = listens_and_catalogue
    songs = catalogue[:150]
    return confidence_matrix(listens, listening_users(listens, songs), songs, alpha=2.0, eps=1e-6)


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def warm_start_from(factorization: Factorization, label: str) -> WarmStart:
    """What a served version holds: user factors, and every song's cf vector."""
    f = factorization
    return WarmStart(
        label=label,
        user_ids=f.user_ids,
        user_factors=f.user_factors,
        song_ids=[*f.song_ids, *f.valid_song_ids, *f.test_song_ids],
        song_factors=np.concatenate([f.song_factors, f.valid_song_factors, f.test_song_factors]),
    )


def all_song_factors(f: Factorization) -> tuple[list[str], np.ndarray]:
    """Every song's factors, fitted and folded in."""
    songs = warm_start_from(f, "")
    return songs.song_ids, songs.song_factors


def write_dataset(root: Path, listens: pd.DataFrame, catalogue: list[str]) -> Path:
    root.mkdir()
    listens.to_csv(root / "listens.tsv", sep="\t", header=False, index=False)
    pd.DataFrame(
        {"song_id": catalogue, "title": catalogue, "artist": ["someone"] * len(catalogue)}
    ).to_csv(root / "songs.csv", index=False)
    return root


# --- factor_drift -------------------------------------------------------------------------


def test_identical_factors_have_not_moved() -> None:
    factors = np.random.default_rng(0).normal(size=(2500, 8)).astype(np.float32)
    drift = factor_drift(ids("s", 2500), factors, ids("s", 2500), factors.copy())
    assert drift["n_shared"] == 2500 and drift["n_zero"] == 0
    assert drift["mean_cosine"] == pytest.approx(1.0) and drift["median_cosine"] == pytest.approx(
        1.0
    )
    assert drift["relative_change"] == 0.0
    assert drift["knn_overlap"] == 1.0  # on a sample of the rows: still exact


def test_drift_of_a_rotation_and_a_scaling() -> None:
    """A rotation by theta in every plane (f0,f1), (f2,f3), ... turns each row by exactly theta:
    cosine cos(theta), relative change 2 sin(theta / 2), neighbours unchanged."""
    old = np.random.default_rng(1).normal(size=(300, 8))
    theta = 0.7
    block = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    rotated = old @ np.kron(np.eye(4), block)
    drift = factor_drift(ids("s", 300), old, ids("s", 300), rotated)
    assert drift["mean_cosine"] == pytest.approx(np.cos(theta))
    assert drift["median_cosine"] == pytest.approx(np.cos(theta))
    assert drift["relative_change"] == pytest.approx(2 * np.sin(theta / 2))
    assert drift["knn_overlap"] == 1.0

    doubled = factor_drift(ids("s", 300), old, ids("s", 300), 2 * old)
    assert doubled["mean_cosine"] == pytest.approx(1.0)
    assert doubled["relative_change"] == pytest.approx(1.0)

    unrelated = np.random.default_rng(2).normal(size=(300, 8))
    moved = factor_drift(ids("s", 300), old, ids("s", 300), unrelated)
    assert abs(moved["mean_cosine"]) < 0.1 and moved["knn_overlap"] < 0.2


def test_drift_matches_rows_by_id() -> None:
    """Only shared ids count, in whatever order; zero rows are kept out of the cosines."""
    rng = np.random.default_rng(3)
    old = rng.normal(size=(100, 6))
    old_ids = ids("s", 100)
    order = rng.permutation(np.arange(20, 100))  # s0..s19 dropped
    new_ids = [old_ids[i] for i in order] + ids("new", 30)
    new = np.concatenate([old[order], rng.normal(size=(30, 6))])
    new[0] = 0.0  # a song nobody listens to any more folds in to zero
    drift = factor_drift(old_ids, old, new_ids, new)
    assert drift["n_shared"] == 80 and drift["n_zero"] == 1
    assert drift["mean_cosine"] == pytest.approx(1.0)
    expected_change = np.linalg.norm(old[order[0]]) / np.linalg.norm(old[order])
    assert drift["relative_change"] == pytest.approx(expected_change)

    none_shared = factor_drift(old_ids, old, ids("new", 30), new[-30:])
    assert none_shared["n_shared"] == 0
    assert none_shared["mean_cosine"] is None and none_shared["knn_overlap"] is None


# --- initial factors and the engine ---------------------------------------------------------


def test_initial_factors_copy_known_rows_and_draw_the_rest() -> None:
    rng = np.random.default_rng(4)
    warm = WarmStart(
        "v1",
        ["u0", "u1"],
        rng.normal(size=(2, 4)).astype(np.float32),
        ["a", "b", "c"],
        rng.normal(size=(3, 4)).astype(np.float32),
    )
    user_init, song_init, counts = initial_factors(warm, ["u9", "u1"], ["c", "d", "a", "e"], 0)
    assert counts == {"users_matched": 1, "users_new": 1, "songs_matched": 2, "songs_new": 2}
    np.testing.assert_array_equal(user_init[1], warm.user_factors[1])
    np.testing.assert_array_equal(song_init[[0, 2]], warm.song_factors[[2, 0]])
    new_rows = np.concatenate([user_init[[0]], song_init[[1, 3]]])
    assert new_rows.dtype == np.float32 and (new_rows >= 0).all() and (new_rows < INIT_SCALE).all()


def test_warm_start_sharing_nothing_is_the_cold_fit(user_song_confidence: sp.csr_matrix) -> None:
    """New rows are implicit's own draw for the seed: no shared id, same fit as a cold one."""
    n_users, n_songs = user_song_confidence.shape
    stranger = WarmStart(
        "other", ["x"], np.ones((1, 8), np.float32), ["y"], np.ones((1, 8), np.float32)
    )
    user_init, song_init, _ = initial_factors(stranger, ids("u", n_users), ids("s", n_songs), 5)
    engine = ImplicitALSEngine(8, 10.0, 3, seed=5)
    cold = engine.fit(user_song_confidence)
    warm = engine.fit(user_song_confidence, initial=(user_init, song_init))
    np.testing.assert_array_equal(warm[0], cold[0])
    np.testing.assert_array_equal(warm[1], cold[1])
    assert song_init.max() < INIT_SCALE  # the initial factors were copied, not overwritten


def test_warm_fit_stays_where_a_cold_fit_does_not(user_song_confidence: sp.csr_matrix) -> None:
    user_factors, song_factors = ImplicitALSEngine(8, 10.0, 40, seed=0).fit(user_song_confidence)
    initial = (user_factors.copy(), song_factors.copy())
    # another seed for both: ignoring `initial` would make the warm fit the cold one
    warm = ImplicitALSEngine(8, 10.0, 15, seed=1).fit(user_song_confidence, initial=initial)
    cold = ImplicitALSEngine(8, 10.0, 40, seed=1).fit(user_song_confidence)
    np.testing.assert_array_equal(initial[1], song_factors)  # left untouched
    song_ids = ids("s", song_factors.shape[0])
    warm_drift = factor_drift(song_ids, song_factors, song_ids, warm[1])
    cold_drift = factor_drift(song_ids, song_factors, song_ids, cold[1])
    assert warm_drift["mean_cosine"] > 0.99 and warm_drift["relative_change"] < 0.15
    assert cold_drift["mean_cosine"] < 0.7 and cold_drift["relative_change"] > 0.5


def test_engine_refuses_initial_factors_of_another_shape(
    user_song_confidence: sp.csr_matrix,
) -> None:
    n_users, n_songs = user_song_confidence.shape
    engine = ImplicitALSEngine(8, 10.0, 2)
    with pytest.raises(ValueError, match="initial song factors"):
        engine.fit(user_song_confidence, initial=(np.zeros((n_users, 8)), np.zeros((n_songs, 6))))
    with pytest.raises(ValueError, match="initial user factors"):
        engine.fit(
            user_song_confidence, initial=(np.zeros((n_users + 1, 8)), np.zeros((n_songs, 8)))
        )


def test_warm_start_checks_its_own_shapes() -> None:
    with pytest.raises(ValueError, match="one row per id"):
        WarmStart("v", ["u"], np.zeros((2, 4)), ["s"], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="repeated song ids"):
        WarmStart("v", ["u"], np.zeros((1, 4)), ["s", "s"], np.zeros((2, 4)))
    with pytest.raises(ValueError, match="differ in width"):
        WarmStart("v", ["u"], np.zeros((1, 4)), ["s"], np.zeros((1, 5)))


# --- the factorization step ----------------------------------------------------------------


def test_factorize_run_warm_started_as_the_data_grew(
    listens_and_catalogue: tuple[pd.DataFrame, list[str]], tmp_path: Path
) -> None:
    """Yesterday: fewer users and songs. Today's fit starts from yesterday's factors, counts
    the users and songs it knew, and records how little the known ones moved."""
    listens, catalogue = listens_and_catalogue
    newcomers = listens["user_id"].isin([f"U{i:04d}" for i in range(260, 300)])
    new_songs = listens["song_id"].isin([f"S{i:04d}" for i in range(135, 150)])
    yesterday = write_dataset(tmp_path / "yesterday", listens[~newcomers & ~new_songs], catalogue)
    today = write_dataset(tmp_path / "today", listens, catalogue)

    factorize_run(yesterday, tmp_path / "run1", PARAMS, progress=False)
    before = load_factorization(tmp_path / "run1")
    warm = warm_start_from(before, "v1")
    manifest = factorize_run(today, tmp_path / "run2", PARAMS, progress=False, warm_start=warm)
    after = load_factorization(tmp_path / "run2")

    assert manifest["parameters"]["warm_start"] == "v1"
    report = after.manifest["warm_start"]
    assert report["from"] == "v1"
    users_known = len(set(after.user_ids) & set(before.user_ids))
    songs_known = len(set(after.song_ids) & set(warm.song_ids))
    assert 0 < users_known < len(after.user_ids) and 0 < songs_known < len(after.song_ids)
    assert (report["users_matched"], report["users_new"]) == (
        users_known,
        len(after.user_ids) - users_known,
    )
    assert (report["songs_matched"], report["songs_new"]) == (
        songs_known,
        len(after.song_ids) - songs_known,
    )
    song_ids, song_factors = all_song_factors(after)
    expected_songs = factor_drift(warm.song_ids, warm.song_factors, song_ids, song_factors)
    assert report["drift"]["songs"] == pytest.approx(expected_songs)
    assert report["drift"]["users"]["n_shared"] == users_known
    warm_cosine = report["drift"]["songs"]["mean_cosine"]
    assert warm_cosine > 0.8  # 13 % more users and new songs move it, but not far

    cold = factorize_run(today, tmp_path / "cold", PARAMS, progress=False)
    assert cold["parameters"]["warm_start"] is None and cold["warm_start"] is None
    cold_song_ids, cold_song_factors = all_song_factors(load_factorization(tmp_path / "cold"))
    cold_drift = factor_drift(warm.song_ids, warm.song_factors, cold_song_ids, cold_song_factors)
    assert cold_drift["mean_cosine"] < warm_cosine - 0.3


def test_factor_count_mismatch_is_refused_before_any_work(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    narrow = WarmStart(
        "v0", ["u"], np.zeros((1, 4), np.float32), ["s"], np.zeros((1, 4), np.float32)
    )
    with pytest.raises(ValueError, match="'v0' has 4 factors, this fit asks for 8"):
        factorize_run(tiny_dataset, tmp_path, PARAMS, progress=False, warm_start=narrow)
    assert list(tmp_path.iterdir()) == []
