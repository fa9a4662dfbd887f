"""Confidence weighting of play counts (van den Oord et al. 2013, after Hu, Koren & Volinsky 2008).

A play count says little about how much a user likes a song beyond "heard it": one play
already earns most of the confidence, a hundred plays only a bit more. With `eps = 1e-6`
the confidence is about 29 at one play and 38 at a hundred (alpha = 2), and 1 for every
pair never played, which WMF treats as a weak "not interested".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def confidence(
    play_counts: ArrayLike,
    alpha: float = 2.0,
    eps: float = 1e-6,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """`1 + alpha * log(1 + r / eps)` for play counts `r`, float32 of the input's shape.

    Computed in float32 (relative error ~1e-7) without float64 temporaries, into a new
    array or into `out` (float32, the input's shape; may be the input itself), so that
    Taste Profile's 48M counts need at most one extra 194 MB array.
    """
    if alpha < 0 or eps <= 0:
        raise ValueError(f"confidence needs alpha >= 0 and eps > 0 (got alpha={alpha}, eps={eps})")
    counts = np.asarray(play_counts)
    if counts.size and counts.min() < 0:
        raise ValueError("play counts must be >= 0")
    if out is None:
        weights = counts.astype(np.float32)
    else:
        if out.dtype != np.float32 or out.shape != counts.shape:
            raise ValueError(f"out must be float32 of shape {counts.shape}")
        weights = out
        weights[...] = counts
    weights /= np.float32(eps)
    np.log1p(weights, out=weights)
    weights *= np.float32(alpha)
    weights += np.float32(1.0)
    return weights
