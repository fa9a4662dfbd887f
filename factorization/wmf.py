"""Weighted matrix factorization (WMF) of the confidence matrix, behind an engine seam.

WMF (Hu, Koren & Volinsky 2008) gives every user and every training song a latent vector;
the content model later learns to predict song vectors from audio. The seam (`WMFEngine`)
keeps the rest of the code free of any one library: an engine fits user and song factors
from a user x song confidence matrix, and folds new songs in against fixed user factors.
`ImplicitALSEngine` is the one engine today (implicit's CPU ALS); a GPU or Spark engine
would implement the same two methods.

Convention shared by every engine: a stored value of the confidence matrix is the whole
confidence `c_ui` of an observed pair (`p_ui = 1`); pairs not stored have `c_ui = 1`,
`p_ui = 0`. That is what implicit's ALS reads when its own `alpha` is 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

IterationCallback = Callable[[int, int], None]
"""Called after each fit iteration with (iterations done, iterations in all)."""


@dataclass(frozen=True)
class WMFParams:
    """Hyperparameters of one factorization.

    `regularization` is the ridge weight lambda on both factor sets; it has to be on the
    scale of the confidences (about 29-38 per observed pair with the default alpha and eps),
    so the default `"auto"` picks it on held-out listens (see `factorization.regularization`).
    `alpha` and `eps` belong to the confidence transform, `seed` to the factor initialisation.
    """

    factors: int = 50
    regularization: float | Literal["auto"] = "auto"
    iterations: int = 15
    alpha: float = 2.0
    eps: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ValueError(
                f"factors and iterations must be >= 1 (got {self.factors}, {self.iterations})"
            )
        if self.regularization != "auto" and not float(self.regularization) > 0:
            raise ValueError(f"regularization must be > 0 or 'auto', got {self.regularization!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class WMFEngine(Protocol):
    """What the rest of the code needs from a WMF implementation."""

    def fit(
        self,
        user_song_confidence: sp.csr_matrix,
        on_iteration: IterationCallback | None = None,
        initial: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Factorize `(n_users, n_songs)` confidences (module convention).

        `initial` = `(user_factors (n_users, F), song_factors (n_songs, F))` to start from
        (a warm start, see `factorization.warm_start`) instead of the seeded random draw;
        they are not modified. Returns `(user_factors (n_users, F) float32, song_factors
        (n_songs, F) float32)`; a user or song without any stored value gets a zero vector.
        """
        ...

    def fold_in_songs(
        self, user_factors: np.ndarray, song_user_confidence: sp.csr_matrix
    ) -> np.ndarray:
        """Song factors `(n_new_songs, F)` float32 for new songs, user factors held fixed.

        `song_user_confidence` is `(n_new_songs, n_users)`, users in `user_factors` row order.
        Each row is the exact ALS item step: solve
        `(XᵀX + Xᵀ(C_i − I)X + λI) y_i = Xᵀ C_i p_i`.
        """
        ...


class ImplicitALSEngine:
    """implicit's CPU alternating least squares (conjugate-gradient solver, 3 steps per solve).

    The CPU class is named explicitly: `implicit.als.AlternatingLeastSquares` would switch
    to the GPU one when CUDA is present, with other numerics. Runs under a one-thread BLAS
    limit, as implicit asks (its threads parallelise over rows; a threaded BLAS inside them
    only contends). Results do not depend on `num_threads` (each row is solved on its own).
    """

    name = "implicit.cpu.als"

    def __init__(
        self,
        factors: int = 50,
        regularization: float = 100.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = float(regularization)
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _model(self) -> Any:
        # imported here: loaders of factors (evaluation, the service) never need implicit
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=1.0,  # the stored values already are the confidences
            dtype=np.float32,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=self.num_threads,
        )

    def fit(
        self,
        user_song_confidence: sp.csr_matrix,
        on_iteration: IterationCallback | None = None,
        initial: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        def callback(iteration: int, _elapsed: float, _loss: float | None) -> None:
            if on_iteration is not None:
                on_iteration(iteration + 1, self.iterations)

        from implicit.recommender_base import ModelFitError

        with threadpool_limits(1, "blas"):
            model = self._model()
            if initial is not None:
                # implicit's fit keeps factors already set and skips its random draw; it
                # checks no shapes and updates them in place, hence the checks and copies.
                n_users, n_songs = user_song_confidence.shape
                model.user_factors = self._initial("user", initial[0], n_users)
                model.item_factors = self._initial("song", initial[1], n_songs)
            try:
                model.fit(
                    sp.csr_matrix(user_song_confidence), show_progress=False, callback=callback
                )
            except ModelFitError as error:  # implicit's own check: NaN, not inf
                raise self._non_finite(model) from error
        if not (np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()):
            raise self._non_finite(model)
        return model.user_factors, model.item_factors

    def _non_finite(self, model: Any) -> ValueError:
        """The fact of a diverged fit: how many factor rows are not finite, of which."""
        users = int((~np.isfinite(model.user_factors)).any(axis=1).sum())
        songs = int((~np.isfinite(model.item_factors)).any(axis=1).sum())
        return ValueError(
            f"implicit ALS returned non-finite factors: {users} of {len(model.user_factors)}"
            f" user rows, {songs} of {len(model.item_factors)} song rows"
            f" (regularization {self.regularization:g}; are the confidences finite?)"
        )

    def _initial(self, subject: str, factors: np.ndarray, rows: int) -> np.ndarray:
        if factors.shape != (rows, self.factors):
            raise ValueError(
                f"initial {subject} factors are {factors.shape}, expected {(rows, self.factors)}"
            )
        return np.array(factors, dtype=np.float32, order="C", copy=True)

    def fold_in_songs(
        self, user_factors: np.ndarray, song_user_confidence: sp.csr_matrix
    ) -> np.ndarray:
        song_user_confidence = sp.csr_matrix(song_user_confidence)
        if song_user_confidence.shape[1] != user_factors.shape[0]:
            raise ValueError(
                f"song_user_confidence has {song_user_confidence.shape[1]} user columns,"
                f" user_factors {user_factors.shape[0]} rows"
            )
        n_new = song_user_confidence.shape[0]
        if n_new == 0:
            return np.zeros((0, user_factors.shape[1]), dtype=np.float32)

        with threadpool_limits(1, "blas"):
            model = self._model()
            model.factors = user_factors.shape[1]
            model.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
            # recalculate_item is the exact Cholesky item step (measured equal to a dense
            # solve of the normal equations to 5e-7): it is partial_fit_items without storing.
            return model.recalculate_item(np.arange(n_new), song_user_confidence)
