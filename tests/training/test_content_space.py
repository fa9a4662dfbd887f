"""The content embedding's projection: the pooled features' leading singular directions."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from training.content_space import fit_content_space, pooled_cached, projection_of
from training.encoders.base import ContentEncoder


def test_projection_keeps_the_leading_directions_uncentred() -> None:
    """Orthonormal columns, the strongest direction first; within the kept subspace inner
    products (and so cosines) are those of the raw features; too few songs pad with zeros."""
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    pooled = (rng.normal(size=(400, 3)) * [5.0, 2.0, 1.0]) @ basis[:3] + 10 * basis[3]
    projection = projection_of(pooled, 4)
    assert projection.shape == (6, 4) and projection.dtype == np.float32
    np.testing.assert_allclose(projection.T @ projection, np.eye(4), atol=1e-6)
    # Uncentred: the common offset (10 along basis[3]) is the strongest direction.
    assert abs(float(projection[:, 0] @ basis[3])) > 0.99
    kept = pooled @ projection
    np.testing.assert_allclose(kept @ kept.T, pooled @ pooled.T, rtol=1e-4, atol=1e-2)
    few = projection_of(pooled[:2], 3)
    assert few.shape == (6, 3) and not few[:, 2].any()


def test_fit_sets_the_encoders_projection(encoder: ContentEncoder, synthetic_world) -> None:
    """Fitted on cached songs: the embedding is those songs' pooled features projected on
    their own leading singular directions."""
    fresh = copy.deepcopy(encoder)
    songs = synthetic_world.song_ids[:30]
    summary = fit_content_space(fresh, synthetic_world, songs, batch_size=8)
    assert summary == {"songs": 30, "dims": 12}
    pooled = pooled_cached(fresh, synthetic_world, songs)
    assert pooled.shape == (30, fresh.dims.pooled_dims)
    np.testing.assert_allclose(
        fresh.content_projection.numpy(), projection_of(pooled, 12), rtol=1e-4, atol=1e-5
    )


def test_fit_is_a_no_op_without_an_embedding(encoder: ContentEncoder, synthetic_world) -> None:
    plain = encoder.with_content_dims(None)
    assert fit_content_space(plain, synthetic_world, synthetic_world.song_ids[:5]) == {
        "songs": 0,
        "dims": 8,
    }
    with pytest.raises(ValueError, match="at least one song"):
        fit_content_space(copy.deepcopy(encoder), synthetic_world, [])
