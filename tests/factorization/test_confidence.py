"""Confidence weighting: 1 + alpha * log(1 + r / eps), float32."""

from __future__ import annotations

import numpy as np
import pytest

from factorization.confidence import confidence


def test_confidence_values() -> None:
    weights = confidence(np.array([0, 1, 100], dtype=np.int32))
    assert weights.dtype == np.float32
    expected = 1 + 2.0 * np.log1p(np.array([0.0, 1.0, 100.0]) / 1e-6)
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights[0] == 1.0
    assert 28 < weights[1] < 30 and 37 < weights[2] < 39  # the scale the regularization meets


def test_confidence_parameters_and_shape() -> None:
    counts = np.array([[1.0, 3.0], [10.0, 0.5]])
    weights = confidence(counts, alpha=0.5, eps=1.0)
    assert weights.shape == (2, 2)
    np.testing.assert_allclose(weights, 1 + 0.5 * np.log1p(counts), rtol=1e-6)


def test_confidence_leaves_its_input_alone() -> None:
    counts = np.array([1.0, 2.0], dtype=np.float32)
    confidence(counts)
    np.testing.assert_array_equal(counts, [1.0, 2.0])


@pytest.mark.parametrize(
    ("counts", "alpha", "eps"), [([-1], 2.0, 1e-6), ([1], -1.0, 1e-6), ([1], 2.0, 0.0)]
)
def test_confidence_refuses_nonsense(counts: list[float], alpha: float, eps: float) -> None:
    with pytest.raises(ValueError):
        confidence(counts, alpha=alpha, eps=eps)


def test_confidence_in_place() -> None:
    counts = np.array([1.0, 100.0], dtype=np.float32)
    result = confidence(counts, out=counts)
    assert result is counts
    np.testing.assert_allclose(counts, confidence([1, 100]))
    with pytest.raises(ValueError, match="float32"):
        confidence([1, 2], out=np.empty(2, dtype=np.float64))
