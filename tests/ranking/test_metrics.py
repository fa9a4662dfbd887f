"""mAP@k, AUC and the top-k metrics against hand-computed cases, scikit-learn, brute force
and the random expectation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import ndcg_score, recall_score, roc_auc_score

from ranking.metrics import (
    EXPECTED_RANDOM_AUC,
    expected_random_map,
    expected_random_top_k,
    ranking_metrics,
)

# Five songs on a line: a user with factor +1 ranks them 0, 1, 2, 3, 4; with -1, 4, 3, 2, 1, 0.
LINE = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], dtype=np.float32)


def relevance(rows: list[list[int]], n_songs: int) -> sp.csr_array:
    dense = np.zeros((len(rows), n_songs), dtype=bool)
    for user, songs in enumerate(rows):
        dense[user, songs] = True
    return sp.csr_array(dense)


def test_hand_computed_three_users() -> None:
    users = np.array([[1.0], [-1.0], [1.0]], dtype=np.float32)
    listened = relevance([[1, 3], [0], [0, 1, 2]], 5)
    result = ranking_metrics(users, LINE, listened, k=500)
    # user 0: hits at positions 2 and 4 -> (1/2 + 2/4) / 2; AUC: song 1 beats 2 of the 3
    #         non-listened songs (2, 4), song 3 beats 1 (4) -> 3/6.
    # user 1: ranking 4,3,2,1,0, the one hit last -> AP 1/5; AUC 0/4.
    # user 2: hits at 1, 2, 3 -> AP 1; AUC 6/6.
    np.testing.assert_allclose(result.per_user_ap, [0.5, 0.2, 1.0])
    np.testing.assert_allclose(result.per_user_auc, [0.5, 0.0, 1.0])
    assert result.map == pytest.approx((0.5 + 0.2 + 1.0) / 3)
    assert result.auc == pytest.approx(0.5)
    assert result.n_users == 3
    assert result.n_users_without_relevant == 0


def test_truncation_at_k_counts_only_hits_in_the_top_k() -> None:
    users = np.array([[1.0]], dtype=np.float32)
    result = ranking_metrics(users, LINE, relevance([[1, 3]], 5), k=2)
    # Hit at position 2 (precision 1/2) counts, the one at 4 does not: (1/2) / min(2, 2).
    assert result.map == pytest.approx(0.25)
    assert result.auc == pytest.approx(0.5)  # AUC ignores k


def test_ties_are_pessimistic_for_ap_and_half_for_auc() -> None:
    # Scores 1, 1, 1, 0, 2 for songs 0..4.
    songs = np.array([[1.0], [1.0], [1.0], [0.0], [2.0]], dtype=np.float32)
    users = np.array([[1.0], [1.0]], dtype=np.float32)
    result = ranking_metrics(users, songs, relevance([[0], [0, 1]], 5))
    # user 0: song 4, then the tied non-listened 1 and 2, then song 0 at position 4 -> AP 1/4;
    #         AUC (1/2 + 1/2 + 1 + 0) / 4 (songs 1, 2 tied, 3 below, 4 above).
    # user 1: song 4, tied non-listened 2, then hits 0 and 1 at 3 and 4 -> (1/3 + 2/4) / 2;
    #         AUC per hit (1/2 + 1 + 0) / 3, both hits alike.
    np.testing.assert_allclose(result.per_user_ap, [0.25, 5 / 12])
    np.testing.assert_allclose(result.per_user_auc, [0.5, 0.5])


def test_constant_scores_get_the_worst_ap_not_the_catalogue_order() -> None:
    songs = np.zeros((5, 3), dtype=np.float32)
    users = np.ones((1, 3), dtype=np.float32)
    result = ranking_metrics(users, songs, relevance([[0]], 5))
    assert result.map == pytest.approx(1 / 5)  # song 0 would be first by index; ties say last
    assert result.auc == pytest.approx(0.5)


def test_user_with_more_than_k_relevant_songs_divides_by_k() -> None:
    # 1000 songs ranked in index order; 600 relevant: ranks 1..300 and 701..1000.
    songs = np.arange(1000, 0, -1, dtype=np.float32)[:, None]
    users = np.ones((1, 1), dtype=np.float32)
    listened = relevance([list(range(300)) + list(range(700, 1000))], 1000)
    result = ranking_metrics(users, songs, listened, k=500)
    # 300 hits of precision 1 in the top 500, none at 301..500: 300 / min(600, 500).
    assert result.map == pytest.approx(0.6)
    # AUC: the first 300 hits beat all 400 misses, the last 300 beat none.
    assert result.auc == pytest.approx(300 * 400 / (600 * 400))
    perfect = ranking_metrics(users, songs, relevance([list(range(600))], 1000), k=500)
    assert perfect.map == pytest.approx(1.0)  # 500 / 500, not 500 / 600


def test_users_without_relevant_songs_are_excluded_and_counted() -> None:
    users = np.array([[1.0], [-1.0], [1.0], [-1.0]], dtype=np.float32)
    listened = sp.csr_array(
        (np.array([True, True, False]), np.array([1, 3, 2]), np.array([0, 2, 2, 3, 3])),
        shape=(4, 5),
    )  # user 1 has no entry, user 2 only an explicit zero, user 3 nothing
    result = ranking_metrics(users, LINE, listened)
    assert result.n_users == 1
    assert result.n_users_without_relevant == 3
    assert result.map == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no user has a relevant song"):
        ranking_metrics(users, LINE, sp.csr_array((4, 5), dtype=bool))


def test_user_who_listened_to_everything_has_no_auc() -> None:
    users = np.array([[1.0], [1.0]], dtype=np.float32)
    result = ranking_metrics(users, LINE, relevance([[0, 1, 2, 3, 4], [4]], 5))
    assert np.isnan(result.per_user_auc[0])
    assert result.auc == pytest.approx(0.0)  # user 1 alone: the hit is last
    np.testing.assert_allclose(result.per_user_ap, [1.0, 0.2])


def random_instance(
    seed: int, n_users: int = 150, n_songs: int = 120, density: float = 0.05, levels: int = 0
) -> tuple[np.ndarray, np.ndarray, sp.csr_array]:
    """Gaussian factors (rounded to `levels` values per unit when given, to create ties)."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, 6)).astype(np.float32)
    songs = rng.standard_normal((n_songs, 6)).astype(np.float32)
    if levels:
        users, songs = np.round(users * levels) / levels, np.round(songs * levels) / levels
        users[:, 1:] = 0  # scores then take few distinct values
    listened = sp.csr_array(rng.random((n_users, n_songs)) < density)
    return users, songs, listened


def brute_force_ap(scores: np.ndarray, listened: np.ndarray, k: int) -> float:
    """AP@k of one user, sorting by (score descending, non-listened first among ties)."""
    order = np.lexsort((listened, -scores))
    hits = listened[order][:k]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / min(listened.sum(), k))


@pytest.mark.parametrize("levels", [0, 2])
def test_matches_sklearn_auc_and_brute_force_ap_per_user(levels: int) -> None:
    users, songs, listened = random_instance(seed=levels, levels=levels)
    result = ranking_metrics(users, songs, listened, k=20)
    scores = users @ songs.T
    dense = listened.toarray()
    kept = np.flatnonzero(dense.any(axis=1))
    expected_auc = [roc_auc_score(dense[u], scores[u]) for u in kept]
    expected_ap = [brute_force_ap(scores[u], dense[u], k=20) for u in kept]
    np.testing.assert_allclose(result.per_user_auc, expected_auc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.per_user_ap, expected_ap, rtol=0, atol=1e-12)


@pytest.mark.parametrize("levels", [0, 2])
def test_chunking_does_not_change_the_result(levels: int) -> None:
    users, songs, listened = random_instance(seed=3, levels=levels)
    whole = ranking_metrics(users, songs, listened, k=10, chunk_users=len(users))
    for chunk in (1, 7):
        chunked = ranking_metrics(users, songs, listened, k=10, chunk_users=chunk)
        np.testing.assert_allclose(chunked.per_user_ap, whole.per_user_ap, rtol=1e-6)
        np.testing.assert_allclose(chunked.per_user_auc, whole.per_user_auc, rtol=1e-6)
        assert chunked.map == pytest.approx(whole.map, rel=1e-6)
        assert chunked.n_users == whole.n_users


def test_expected_random_map_hand_computed() -> None:
    # N=2, R=1, k=1: the hit is first half the time.
    assert expected_random_map(np.array([1]), n_songs=2, k=1) == pytest.approx(0.5)
    # N=3, R=2, k=3: hits at {1,2}: 1; {1,3}: (1 + 2/3)/2; {2,3}: (1/2 + 2/3)/2 -> 29/36.
    assert expected_random_map(np.array([2]), n_songs=3, k=3) == pytest.approx(29 / 36)
    # Every song relevant: AP is 1 whatever the order; users with none are left out.
    assert expected_random_map(np.array([4, 0]), n_songs=4, k=2) == pytest.approx(1.0)


@pytest.mark.parametrize(("n_songs", "relevant", "k"), [(6, 2, 3), (7, 3, 7), (5, 1, 2)])
def test_expected_random_map_equals_enumeration(n_songs: int, relevant: int, k: int) -> None:
    aps = []
    for hits in itertools.combinations(range(n_songs), relevant):
        listened = np.zeros(n_songs, dtype=bool)
        listened[list(hits)] = True
        aps.append(brute_force_ap(-np.arange(n_songs, dtype=float), listened, k))
    expected = expected_random_map(np.array([relevant]), n_songs, k)
    assert expected == pytest.approx(np.mean(aps))


def test_random_vectors_score_the_analytic_expectation() -> None:
    rng = np.random.default_rng(11)
    n_users, n_songs, k = 3000, 400, 50
    users = rng.standard_normal((n_users, 10)).astype(np.float32)
    songs = rng.standard_normal((n_songs, 10)).astype(np.float32)
    counts = rng.integers(1, 30, n_users)
    rows = np.repeat(np.arange(n_users), counts)
    columns = np.concatenate([rng.choice(n_songs, c, replace=False) for c in counts])
    listened = sp.csr_array((np.ones(rows.size, bool), (rows, columns)), shape=(n_users, n_songs))
    result = ranking_metrics(users, songs, listened, k=k)
    # Relevance is independent of the scores, so users are independent draws around the
    # expectation: allow 4 standard errors.
    ap_error = result.per_user_ap.std() / np.sqrt(n_users)
    auc_error = result.per_user_auc.std() / np.sqrt(n_users)
    assert abs(result.map - expected_random_map(counts, n_songs, k)) < 4 * ap_error
    assert abs(result.auc - EXPECTED_RANDOM_AUC) < 4 * auc_error
    expected = expected_random_top_k(counts, n_songs, result.cutoffs)
    assert expected.keys() == result.top_k().keys()
    for name, value in result.top_k().items():
        metric, cutoff = name.split("@")
        column = result.cutoffs.index(int(cutoff))
        error = result.per_user_top_k[metric][:, column].std() / np.sqrt(n_users)
        assert abs(value - expected[name]) <= 4 * error + 1e-12, name
    assert expected["recall@500"] == 1.0  # the whole catalogue is in the top 500


def test_rejects_mismatched_shapes_and_nan() -> None:
    users = np.ones((2, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        ranking_metrics(users, LINE, relevance([[0]], 5))
    with pytest.raises(ValueError, match="factors"):
        ranking_metrics(np.ones((2, 2), np.float32), LINE, relevance([[0], [1]], 5))
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(np.full((2, 1), np.nan, np.float32), LINE, relevance([[0], [1]], 5))


def brute_force_top_k(scores: np.ndarray, listened: np.ndarray, cutoff: int) -> dict[str, float]:
    """Recall, precision and NDCG at `cutoff` of one user, sorting as `brute_force_ap` does."""
    order = np.lexsort((listened, -scores))
    hits = listened[order][:cutoff]
    gains = hits / np.log2(np.arange(2, hits.size + 2))
    ideal = (1.0 / np.log2(np.arange(2, min(listened.sum(), cutoff) + 2))).sum()
    return {
        "recall": hits.sum() / listened.sum(),
        "precision": hits.sum() / cutoff,
        "ndcg": gains.sum() / ideal,
    }


def test_top_k_metrics_match_scikit_learn_per_user() -> None:
    users, songs, listened = random_instance(seed=5, n_users=80, n_songs=90, density=0.08)
    cutoffs = (1, 10, 50, 500)  # 500 > n_songs: the whole ranking
    result = ranking_metrics(users, songs, listened, k=20, cutoffs=cutoffs)
    scores = users.astype(np.float64) @ songs.T.astype(np.float64)
    dense = listened.toarray()
    kept = np.flatnonzero(dense.any(axis=1))
    for column, cutoff in enumerate(cutoffs):
        ndcg = [ndcg_score(dense[[u]], scores[[u]], k=cutoff) for u in kept]
        predicted = [np.isin(np.arange(90), np.argsort(-scores[u])[:cutoff]) for u in kept]
        recall = [recall_score(dense[u], p) for u, p in zip(kept, predicted, strict=True)]
        hits = [(dense[u] & p).sum() for u, p in zip(kept, predicted, strict=True)]
        top = result.per_user_top_k
        np.testing.assert_allclose(top["ndcg"][:, column], ndcg, rtol=0, atol=1e-12)
        np.testing.assert_allclose(top["recall"][:, column], recall, rtol=0, atol=1e-12)
        np.testing.assert_allclose(top["precision"][:, column], np.divide(hits, cutoff), atol=1e-12)
    means = result.top_k()
    assert list(means) == [f"{m}@{c}" for m in ("recall", "precision", "ndcg") for c in cutoffs]
    assert means["ndcg@10"] == pytest.approx(result.per_user_top_k["ndcg"][:, 1].mean())


def test_top_k_ties_are_pessimistic_and_chunking_keeps_them() -> None:
    users, songs, listened = random_instance(seed=2, levels=2)
    whole = ranking_metrics(users, songs, listened, k=10, cutoffs=(5, 30))
    chunked = ranking_metrics(users, songs, listened, k=10, cutoffs=(5, 30), chunk_users=7)
    scores = users @ songs.T
    dense = listened.toarray()
    kept = np.flatnonzero(dense.any(axis=1))
    for column, cutoff in enumerate((5, 30)):
        expected = [brute_force_top_k(scores[u], dense[u], cutoff) for u in kept]
        for metric in ("recall", "precision", "ndcg"):
            got = whole.per_user_top_k[metric][:, column]
            np.testing.assert_allclose(got, [e[metric] for e in expected], atol=1e-12)
            np.testing.assert_array_equal(chunked.per_user_top_k[metric][:, column], got)


def test_expected_random_top_k_equals_enumeration() -> None:
    n_songs, relevant, cutoff = 6, 2, 3
    values: dict[str, list[float]] = {"recall": [], "precision": [], "ndcg": []}
    for hits in itertools.combinations(range(n_songs), relevant):
        listened = np.zeros(n_songs, dtype=bool)
        listened[list(hits)] = True
        for metric, value in brute_force_top_k(
            -np.arange(n_songs, dtype=float), listened, cutoff
        ).items():
            values[metric].append(value)
    expected = expected_random_top_k(np.array([relevant]), n_songs, (cutoff,))
    for metric, observed in values.items():
        assert expected[f"{metric}@{cutoff}"] == pytest.approx(np.mean(observed))


def test_cutoffs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cutoffs"):
        ranking_metrics(np.ones((1, 1), np.float32), LINE, relevance([[0]], 5), cutoffs=(0,))
