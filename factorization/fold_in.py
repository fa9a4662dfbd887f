"""Fold-in: one side's factors for new rows, the other side's held fixed (numpy only).

WMF's alternating step solves, for a row u (a user, or a song) with confidences c_ui over
the fixed side's factors y_i (`Y`, `(n_fixed, F)`),

    (YᵀY + Σ_i (c_ui − 1) y_i y_iᵀ + λ_u I) x_u = Σ_i c_ui y_i,   c_ui = 1 + alpha log(1 + r/eps)

(`factorization.confidence`; pairs never played have c = 1 and drop out of the sums but
for YᵀY). `FixedFactors` computes YᵀY once, so a row costs O(n_u F² + F³) for its n_u
listens, whatever the size of the fixed side. λ_u is one λ for every row (implicit's ALS),
or `regParam · n_u` (Spark's ALS-WR, `factorization.spark_als`): `Regularization`.

Written by hand rather than calling implicit's `recalculate_user`, which solves the same
equations (`tests/factorization/test_fold_in.py` compares them): the service folds users
in at request time and imports neither implicit nor Lightning; the Spark engine folds its
songs in with the per-row λ implicit cannot take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from numpy.typing import ArrayLike

from factorization.confidence import confidence


@dataclass(frozen=True)
class Regularization:
    """λ of the fold-in: `value` for every row, or `value · n_u` with `per_listen` (Spark)."""

    value: float
    per_listen: bool = False

    def __post_init__(self) -> None:
        if not float(self.value) > 0:
            raise ValueError(f"regularization must be > 0, got {self.value!r}")

    def of_row(self, n_listens: int) -> float:
        return self.value * n_listens if self.per_listen else self.value


@dataclass(frozen=True)
class FoldInRule:
    """What folding a user in needs besides the song factors: the confidence transform
    (`alpha`, `eps`) and the regularization the factorization used. A model version
    records it (`parameters.wmf`, see `from_parameters`)."""

    regularization: Regularization
    alpha: float = 2.0
    eps: float = 1e-6

    def to_json(self) -> dict[str, Any]:
        return {
            "regularization": self.regularization.value,
            "regularization_per_listen": self.regularization.per_listen,
            "alpha": self.alpha,
            "eps": self.eps,
        }

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> FoldInRule:
        """The rule of a factorization manifest's `parameters`: implicit's one λ, or
        Spark's `spark.reg_param` per listen; or of a version's `parameters.wmf`
        (`to_json`)."""
        if "regularization_per_listen" in parameters:
            regularization = Regularization(
                float(parameters["regularization"]), bool(parameters["regularization_per_listen"])
            )
        elif parameters.get("spark"):
            regularization = Regularization(float(parameters["spark"]["reg_param"]), True)
        else:
            regularization = Regularization(float(parameters["regularization"]))
        return cls(regularization, float(parameters["alpha"]), float(parameters["eps"]))


class FixedFactors:
    """The factors held fixed, `(n_fixed, F)` float32, with their Gram matrix YᵀY
    `(F, F)` float64 computed once (the costly part, shared by every row folded in)."""

    def __init__(self, factors: np.ndarray) -> None:
        if factors.ndim != 2 or factors.dtype != np.float32:
            raise ValueError(f"factors must be 2-D float32, got {factors.dtype} {factors.shape}")
        self.factors = factors
        wide = np.asarray(factors, dtype=np.float64)
        self.gram = wide.T @ wide

    @property
    def n_factors(self) -> int:
        return int(self.factors.shape[1])

    def solve(
        self, rows: ArrayLike, confidences: ArrayLike, regularization: Regularization
    ) -> np.ndarray:
        """The `(F,)` float64 vector of one new row whose confidences `(n_u,)` are
        against the fixed rows `rows` `(n_u,)` (distinct); zeros for a row with none."""
        rows = np.asarray(rows, dtype=np.int64)
        weights = np.asarray(confidences, dtype=np.float64)
        if rows.shape != weights.shape or rows.ndim != 1:
            raise ValueError(f"rows {rows.shape} and confidences {weights.shape} must match, 1-D")
        if rows.size == 0:
            return np.zeros(self.n_factors)
        listened = np.asarray(self.factors[rows], dtype=np.float64)
        lhs = self.gram + (listened.T * (weights - 1.0)) @ listened
        lhs[np.diag_indices_from(lhs)] += regularization.of_row(rows.size)
        # YᵀY + λI plus a positive semi-definite sum (c >= 1): symmetric positive definite.
        return scipy.linalg.solve(lhs, listened.T @ weights, assume_a="pos")

    def fold_in(
        self, fixed_confidence: sp.csr_matrix, regularization: Regularization
    ) -> np.ndarray:
        """`(n_new, F)` float32 for the rows of `fixed_confidence` `(n_new, n_fixed)`
        (confidences, fixed rows as columns); one `solve` each: memory stays O(F²) however
        many listens a row has, and the Python step per row (~20 us) is small beside it."""
        matrix = sp.csr_matrix(fixed_confidence)
        if matrix.shape[1] != self.factors.shape[0]:
            raise ValueError(
                f"the confidences have {matrix.shape[1]} columns, the fixed factors"
                f" {self.factors.shape[0]} rows"
            )
        matrix.sum_duplicates()
        folded = np.zeros((matrix.shape[0], self.n_factors), dtype=np.float64)
        for row in np.flatnonzero(np.diff(matrix.indptr)):
            start, stop = matrix.indptr[row], matrix.indptr[row + 1]
            folded[row] = self.solve(
                matrix.indices[start:stop], matrix.data[start:stop], regularization
            )
        return folded.astype(np.float32)


def fold_in_user(
    songs: FixedFactors, song_rows: ArrayLike, play_counts: ArrayLike, rule: FoldInRule
) -> np.ndarray:
    """A user's `(F,)` float32 factors from their play counts `(n_u,)` of the songs at
    `song_rows` `(n_u,)` (distinct rows of `songs`), the confidence and λ of `rule`."""
    weights = confidence(np.asarray(play_counts, dtype=np.float32), rule.alpha, rule.eps)
    return songs.solve(song_rows, weights, rule.regularization).astype(np.float32)
