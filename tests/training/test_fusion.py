"""The artist prior and the CNN + artist fusion, on tiny hand-made factors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.artist_prior import ArtistPriors, artist_priors, fit_artist_priors
from training.fusion import FusionWeights, fit_fusion, hybrid_vectors, placement, score_metric

# Three training songs by "a" (at (1,0), (3,0), (2,3)), one by "b" at (0,4), one without
# an artist at (2,-7): global mean (1.6, 0).
SONG_ARTISTS = ["a", "a", "b", "", "a"]
SONG_FACTORS = np.array([[1, 0], [3, 0], [0, 4], [2, -7], [2, 3]], np.float32)


def test_prior_is_the_artist_mean_shrunk_toward_the_global_mean() -> None:
    priors = artist_priors(SONG_ARTISTS, SONG_FACTORS, shrinkage=1.0)
    assert priors.artist_ids == ["a", "b"]  # the song without an artist has no prior
    np.testing.assert_array_equal(priors.counts, [3, 1])
    mean = SONG_FACTORS.astype(np.float64).mean(axis=0)  # (1.6, 0)
    np.testing.assert_allclose(priors.priors[0], ([6, 3] + mean) / 4, rtol=1e-6)
    np.testing.assert_allclose(priors.priors[1], ([0, 4] + mean) / 2, rtol=1e-6)
    assert priors.priors.dtype == np.float32


def test_more_shrinkage_pulls_the_sparse_artist_further() -> None:
    weak = artist_priors(SONG_ARTISTS, SONG_FACTORS, shrinkage=0.25)
    strong = artist_priors(SONG_ARTISTS, SONG_FACTORS, shrinkage=8.0)
    mean = SONG_FACTORS.mean(axis=0)
    for row in (0, 1):
        assert np.linalg.norm(strong.priors[row] - mean) < np.linalg.norm(weak.priors[row] - mean)
    # the one-song artist moves relatively more than the three-song one
    moved = np.linalg.norm(strong.priors - weak.priors, axis=1)
    span = np.linalg.norm(weak.priors - mean, axis=1)
    assert moved[1] / span[1] > moved[0] / span[0]


def test_an_unknown_artist_has_no_prior() -> None:
    priors = artist_priors(SONG_ARTISTS, SONG_FACTORS, shrinkage=1.0)
    vectors, counts = priors.lookup(["b", "never heard", "", "a"])
    np.testing.assert_array_equal(counts, [1, 0, 0, 3])
    assert not vectors[1:3].any()
    np.testing.assert_array_equal(vectors[[0, 3]], priors.priors[[1, 0]])


def test_priors_round_trip(tmp_path: Path) -> None:
    priors = artist_priors(["é", "Ω", "é"], SONG_FACTORS[:3], shrinkage=2.0)
    priors.save(tmp_path)
    loaded = ArtistPriors.load(tmp_path, 2.0)
    assert loaded.artist_ids == priors.artist_ids
    np.testing.assert_array_equal(loaded.priors, priors.priors)
    np.testing.assert_array_equal(loaded.counts, priors.counts)


def test_shrinkage_is_chosen_by_the_score() -> None:
    chosen, scores = fit_artist_priors(
        SONG_ARTISTS,
        SONG_FACTORS,
        ["b"],
        # prefers the prior of b closest to b's own song: the least shrinkage
        lambda vectors: -float(np.linalg.norm(vectors[0] - [0, 4])),
        grid=(0.5, 4.0),
    )
    assert chosen.shrinkage == 0.5
    assert scores[0.5] > scores[4.0]


WEIGHTS = FusionWeights(edges=(1, 3), cnn=(0.5, 0.2), prior=(0.25, 1.0), songs=(9, 9))


def test_hybrid_mixes_by_the_artist_song_count() -> None:
    cnn = np.array([[2, 0], [2, 0], [2, 0], [2, 0]], np.float32)
    prior = np.array([[0, 4], [0, 4], [0, 4], [0, 0]], np.float32)
    counts = np.array([1, 2, 7, 0])
    fused = hybrid_vectors(cnn, prior, counts, WEIGHTS)
    np.testing.assert_allclose(fused, [[1, 1], [1, 1], [0.4, 4], [2, 0]], rtol=1e-6)
    assert fused.dtype == np.float32
    assert [placement(int(n)) for n in counts] == ["hybrid", "hybrid", "hybrid", "audio"]


def test_without_a_prior_the_hybrid_is_the_cnn_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    cnn = rng.standard_normal((5, 3)).astype(np.float32)
    fused = hybrid_vectors(cnn, np.zeros_like(cnn), np.zeros(5, np.int64), WEIGHTS)
    assert fused.tobytes() == cnn.tobytes()


def test_one_song_at_a_time_gives_the_same_bits() -> None:
    rng = np.random.default_rng(1)
    cnn = rng.standard_normal((40, 8)).astype(np.float32)
    prior = rng.standard_normal((40, 8)).astype(np.float32)
    counts = rng.integers(0, 20, size=40)
    batch = hybrid_vectors(cnn, prior, counts, WEIGHTS)
    for i in range(40):
        single = hybrid_vectors(cnn[i : i + 1], prior[i : i + 1], counts[i : i + 1], WEIGHTS)
        assert single.tobytes() == batch[i : i + 1].tobytes()


def test_fusion_recovers_known_weights_per_bucket() -> None:
    """Targets made as 0.3 cnn + 0.9 prior for one-song artists and 0.1 cnn + 1.2 prior
    for prolific ones: the fit finds each bucket's pair, and a thin bucket takes the pooled
    fit."""
    rng = np.random.default_rng(2)
    cnn = rng.standard_normal((60, 4))
    prior = rng.standard_normal((60, 4))
    counts = np.r_[np.ones(30, np.int64), np.full(28, 20), [3, 3]]
    target = np.where(counts[:, None] == 1, 0.3 * cnn + 0.9 * prior, 0.1 * cnn + 1.2 * prior)
    weights = fit_fusion(cnn, prior, counts, target, edges=(1, 2, 17), min_bucket_songs=8)
    np.testing.assert_allclose([weights.cnn[0], weights.prior[0]], [0.3, 0.9], atol=1e-6)
    np.testing.assert_allclose([weights.cnn[2], weights.prior[2]], [0.1, 1.2], atol=1e-6)
    assert weights.songs == (30, 0, 28)
    pooled = fit_fusion(cnn, prior, counts, target, edges=(1,), min_bucket_songs=1)
    assert (weights.cnn[1], weights.prior[1]) == (pooled.cnn[0], pooled.prior[0])
    assert FusionWeights.from_json(weights.to_json()) == weights


def test_score_metric_fits_what_users_see_and_ignores_what_they_do_not() -> None:
    """Users who look only at factor 0: the targets are 2 cnn + 0.5 prior there and noise
    on factor 1. Fitting the users' scores recovers (2, 0.5); fitting the factors does not."""
    rng = np.random.default_rng(4)
    cnn = rng.standard_normal((40, 2))
    prior = rng.standard_normal((40, 2))
    target = np.c_[2 * cnn[:, 0] + 0.5 * prior[:, 0], 10 * rng.standard_normal(40)]
    users = np.c_[rng.standard_normal(30), np.zeros(30)]
    metric = score_metric(users)
    np.testing.assert_allclose(metric @ metric.T, np.diag([1, 0]) + 1e-6 * np.eye(2), atol=1e-12)
    counts = np.full(40, 4)
    seen = fit_fusion(cnn, prior, counts, target, edges=(1,), metric=metric)
    np.testing.assert_allclose([seen.cnn[0], seen.prior[0]], [2, 0.5], atol=1e-3)
    plain = fit_fusion(cnn, prior, counts, target, edges=(1,))
    assert abs(plain.cnn[0] - 2) + abs(plain.prior[0] - 0.5) > 0.1


def test_fusion_ignores_songs_without_a_prior_and_falls_back_to_audio() -> None:
    rng = np.random.default_rng(3)
    cnn = rng.standard_normal((10, 2))
    weights = fit_fusion(cnn, np.zeros_like(cnn), np.zeros(10, np.int64), cnn * 5)
    assert set(weights.cnn) == {1.0} and set(weights.prior) == {0.0}
    assert set(weights.songs) == {0}


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="edges"):
        FusionWeights(edges=(0, 2), cnn=(1, 1), prior=(0, 0), songs=(0, 0))
    with pytest.raises(ValueError, match="one cnn and prior"):
        FusionWeights(edges=(1, 2), cnn=(1,), prior=(0, 0), songs=(0, 0))
    with pytest.raises(ValueError, match="finite"):
        FusionWeights(edges=(1,), cnn=(float("nan"),), prior=(0,), songs=(0,))
    with pytest.raises(ValueError, match="same songs"):
        hybrid_vectors(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2, np.int64), WEIGHTS)
