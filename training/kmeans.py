"""Multiscale spherical k-means features, ridge-regressed onto the factors.

Dieleman & Schrauwen (ISMIR 2013, "Multiscale approaches to music audio feature learning")
learn features without gradients at several time scales: the log-mel is turned into a
pyramid over time (Gaussian: smooth with a binomial kernel and keep every other frame, each
level half the frame rate of the one below; Laplacian: each Gaussian level minus the next
coarser one brought back to its length, the top level as it is), and at every level short
patches of `patch_frames` frames are PCA-whitened, scaled to unit length and matched
against a dictionary learned by spherical k-means (unit-norm atoms, K of them per level).
A patch's features are its rectified similarities max(0, D z); a clip's are their mean
and max over time at every level, concatenated (n_levels * 2K). The ridge head
(`training.ridge`) maps them onto the WMF factors, as for the `linear` baseline.

The log-mels are the project's cached ones (`FRONT_END`), as the `linear` baseline's, so
there is no second mel transform. The dictionary is a short spherical k-means of our own
rather than scikit-learn's MiniBatchKMeans: that one minimises Euclidean distance to
unnormalised means, this one maximises cosine similarity with atoms of unit norm at every
step, as the encoding uses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from audio.config import FRONT_END, FrontEndConfig
from training.ridge import ClassicalModel, Head, LazyMels, MLPSettings, RidgeHead, fit_head

KMEANS_FRONT_END = FRONT_END
MODEL_NAME = "kmeans"
CONFIG_FILE = f"{MODEL_NAME}.json"
PYRAMIDS = ("gaussian", "laplacian")
# The 5-tap binomial kernel of Burt & Adelson's pyramids.
BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0
# Added to a whitened patch's squared norm before scaling it to unit length (Coates & Ng
# 2012), so near-empty patches are not blown up into noise.
NORM_EPSILON = 1e-2
# The MLP heads' L2 penalties tried beside the ridges (scikit-learn's `alpha`, over the
# number of training songs in its loss, against the factors' own scale). Of 1, 10 and 100,
# validation kept 10 on both demo worlds; the MLP fits in 9 s there (quiet; 51 s at load 3).
MLP_ALPHAS = (10.0,)


@dataclass(frozen=True)
class KMeansParams:
    """Settings of the multiscale k-means model (saved in `kmeans.json`).

    `n_levels` pyramid levels of `pyramid` ("gaussian" or "laplacian"); patches of
    `patch_frames` frames, whitened onto `n_components` principal components; `n_atoms`
    (K) atoms per level, fit in `iterations` steps on at most `patches_per_song` patches
    of each training song and `max_fit_patches` per level. The head: a ridge for each of
    `alphas` and an MLP of `mlp_hidden` units for each of `mlp_alphas`, the best on
    validation kept.
    """

    n_levels: int = 4
    pyramid: str = "laplacian"
    patch_frames: int = 4
    n_components: int = 64
    n_atoms: int = 200
    patches_per_song: int = 100
    max_fit_patches: int = 30_000
    iterations: int = 20
    alphas: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0, 10000.0)
    mlp_alphas: tuple[float, ...] = MLP_ALPHAS
    mlp_hidden: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.alphas:
            raise ValueError("KMeansParams.alphas: give at least one ridge alpha")
        if self.pyramid not in PYRAMIDS:
            raise ValueError(f"pyramid must be one of {PYRAMIDS}, got {self.pyramid!r}")
        if min(self.n_levels, self.patch_frames, self.n_components, self.n_atoms) < 1:
            raise ValueError("n_levels, patch_frames, n_components and n_atoms must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> KMeansParams:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def frames_needed(self) -> int:
        """Fewest log-mel frames whose top level still holds one patch."""
        return (self.patch_frames - 1) * 2 ** (self.n_levels - 1) + 1


def smooth_time(levels: np.ndarray) -> np.ndarray:
    """Binomial smoothing of (n_mels, T) along time, edges repeated; same shape."""
    n_frames = levels.shape[1]
    padded = np.pad(levels, ((0, 0), (2, 2)), mode="edge")
    return sum(weight * padded[:, tap : tap + n_frames] for tap, weight in enumerate(BINOMIAL))


def gaussian_pyramid(log_mel: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """(n_mels, T) -> `n_levels` arrays (n_mels, T_l) float32, T_0 = T, T_l = ceil(T_{l-1} / 2):
    each level the one below smoothed and taken every other frame."""
    levels = [np.asarray(log_mel, dtype=np.float32)]
    for _ in range(n_levels - 1):
        levels.append(np.ascontiguousarray(smooth_time(levels[-1])[:, ::2]))
    return levels


def expand_time(level: np.ndarray, n_frames: int) -> np.ndarray:
    """A coarser level (n_mels, T) back at twice its frame rate, (n_mels, n_frames): each
    frame repeated, then smoothed (a constant stays exactly constant)."""
    return smooth_time(np.repeat(level, 2, axis=1)[:, :n_frames])


def laplacian_pyramid(log_mel: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """(n_mels, T) -> `n_levels` arrays of the Gaussian pyramid's shapes: the detail each
    Gaussian level adds to the next coarser one (G_l - expand(G_l+1)), the top level as is."""
    gaussian = gaussian_pyramid(log_mel, n_levels)
    details = [
        fine - expand_time(coarse, fine.shape[1])
        for fine, coarse in zip(gaussian[:-1], gaussian[1:], strict=True)
    ]
    return [*details, gaussian[-1]]


def pyramid(log_mel: np.ndarray, params: KMeansParams) -> list[np.ndarray]:
    """The pyramid `params` names, `params.n_levels` levels (n_mels, T_l)."""
    build = laplacian_pyramid if params.pyramid == "laplacian" else gaussian_pyramid
    return build(log_mel, params.n_levels)


def patches(level: np.ndarray, patch_frames: int) -> np.ndarray:
    """Every run of `patch_frames` frames of a level (n_mels, T), flattened:
    (T - patch_frames + 1, n_mels * patch_frames) float32 (a view)."""
    windows = np.lib.stride_tricks.sliding_window_view(level, patch_frames, axis=1)
    return windows.transpose(1, 0, 2).reshape(windows.shape[1], -1)


def unit_rows(vectors: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """Each row of (N, D) divided by sqrt(|row|^2 + epsilon)."""
    return vectors / np.sqrt(np.einsum("nd,nd->n", vectors, vectors) + epsilon)[:, None]


def spherical_kmeans(
    vectors: np.ndarray, n_atoms: int, iterations: int, rng: np.random.Generator
) -> np.ndarray:
    """Unit-norm atoms (n_atoms, D) float32 maximising the summed cosine similarity of the
    unit rows `vectors` (N, D) to their nearest atom; an atom left empty is re-drawn."""
    n_atoms = min(n_atoms, vectors.shape[0])
    atoms = vectors[rng.choice(vectors.shape[0], n_atoms, replace=False)]
    for _ in range(iterations):
        nearest = np.argmax(vectors @ atoms.T, axis=1)
        members = sp.csr_matrix(
            (np.ones(nearest.size, np.float32), (nearest, np.arange(nearest.size))),
            shape=(n_atoms, nearest.size),
        )
        sums = np.asarray(members @ vectors)
        empty = np.einsum("kd,kd->k", sums, sums) < 1e-12
        sums[empty] = vectors[rng.choice(vectors.shape[0], int(empty.sum()), replace=False)]
        atoms = unit_rows(sums)
    return atoms.astype(np.float32)


@dataclass
class KMeansModel(ClassicalModel):
    """A fitted multiscale k-means model. Per level l: `patch_mean[l]` (P,), `whitening[l]`
    (C, P) (PCA components over their standard deviations), `atoms[l]` (K, C) unit norm;
    P = n_mels * patch_frames. Features (n_levels * 2K,) are standardised by
    `feature_mean`, `feature_scale` before the ridge head."""

    model_name = MODEL_NAME
    params_type = KMeansParams
    array_names = ("patch_mean", "whitening", "atoms", "feature_mean", "feature_scale")

    params: KMeansParams
    config: FrontEndConfig
    patch_mean: np.ndarray
    whitening: np.ndarray
    atoms: np.ndarray
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    head: Head

    def raw_features(self, log_mels: Sequence[np.ndarray]) -> np.ndarray:
        """Clips' log-mels (n_mels, T_i) -> pooled encodings (n_clips, n_levels * 2K)
        float32: per level the mean, then the max, over time of max(0, atoms @ z)."""
        needed = self.params.frames_needed()
        rows = []
        for log_mel in log_mels:
            if log_mel.shape[1] < needed:
                raise ValueError(
                    f"a log-mel of {log_mel.shape[1]} frames is shorter than the"
                    f" {needed} frames one patch at every level needs"
                )
            pooled = []
            for level, values in enumerate(pyramid(log_mel, self.params)):
                whitened = (patches(values, self.params.patch_frames) - self.patch_mean[level]) @ (
                    self.whitening[level].T
                )
                codes = np.maximum(unit_rows(whitened, NORM_EPSILON) @ self.atoms[level].T, 0.0)
                pooled += [codes.mean(axis=0), codes.max(axis=0)]
            rows.append(np.concatenate(pooled))
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)

    def features(self, log_mels: Sequence[np.ndarray]) -> np.ndarray:
        """Standardised features (n_clips, n_levels * 2K) float32, the ridge head's input."""
        return (self.raw_features(log_mels) - self.feature_mean) / self.feature_scale

    def predict(self, log_mels: Sequence[np.ndarray]) -> np.ndarray:
        """Clips' log-mels (n_mels, T_i) -> predicted factors (n_clips, F) float32."""
        return self.head.predict(self.features(log_mels))


def _fit_level(
    level_patches: np.ndarray, params: KMeansParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA whitening and the dictionary of one level from its sampled patches (N, P):
    (patch_mean (P,), whitening (C, P), atoms (K, C))."""
    n_components = min(params.n_components, *level_patches.shape)
    pca = PCA(n_components=n_components, whiten=True, random_state=params.seed)
    pca.fit(level_patches)
    whitening = pca.components_ / np.sqrt(pca.explained_variance_ + 1e-8)[:, None]
    whitened = (level_patches - pca.mean_) @ whitening.T
    atoms = spherical_kmeans(
        unit_rows(whitened, NORM_EPSILON), params.n_atoms, params.iterations, rng
    )
    return pca.mean_.astype(np.float32), whitening.astype(np.float32), atoms


def fit_kmeans(
    load_mel: Callable[[str], np.ndarray],
    train_song_ids: Sequence[str],
    train_factors: np.ndarray,
    valid_song_ids: Sequence[str],
    score: Callable[[np.ndarray], float],
    params: KMeansParams = KMeansParams(),
    config: FrontEndConfig = KMEANS_FRONT_END,
) -> tuple[KMeansModel, dict[str, float]]:
    """Fit each level's whitening and dictionary on a seeded sample of the training songs'
    patches, then each head (`fit_head`); keep the one that `score`s best.

    `load_mel(song_id)` gives a song's log-mel (n_mels, T); `train_factors` (n_train, F)
    are the targets; `score(valid_predictions (n_valid, F))` is the validation mAP.
    Returns the model and the validation score of every head tried, by its label.
    """
    if config.n_frames(config.min_samples) < params.frames_needed():
        raise ValueError(
            f"{params.n_levels} levels of {params.patch_frames}-frame patches need"
            f" {params.frames_needed()} frames, more than one {config.window_seconds:.2f} s window"
        )
    rng = np.random.default_rng(params.seed)
    per_song = min(params.patches_per_song, max(1, params.max_fit_patches // len(train_song_ids)))
    sampled: list[list[np.ndarray]] = [[] for _ in range(params.n_levels)]
    for song in train_song_ids:
        for level, values in enumerate(pyramid(load_mel(song), params)):
            song_patches = patches(values, params.patch_frames)
            rows = rng.choice(song_patches.shape[0], min(per_song, song_patches.shape[0]), False)
            sampled[level].append(song_patches[np.sort(rows)])
    fitted = [_fit_level(np.concatenate(level), params, rng) for level in sampled]
    n_factors = train_factors.shape[1]
    model = KMeansModel(
        params=params,
        config=config,
        patch_mean=np.stack([mean for mean, _, _ in fitted]),
        whitening=np.stack([whitening for _, whitening, _ in fitted]),
        atoms=np.stack([atoms for _, _, atoms in fitted]),
        feature_mean=np.zeros(0, np.float32),
        feature_scale=np.ones(0, np.float32),
        head=RidgeHead(np.zeros((n_factors, 0), np.float32), np.zeros(n_factors, np.float32), 0),
    )
    train_raw = model.raw_features(LazyMels(load_mel, train_song_ids))
    valid_raw = model.raw_features(LazyMels(load_mel, valid_song_ids))
    model.feature_mean = train_raw.mean(axis=0)
    model.feature_scale = train_raw.std(axis=0) + 1e-6
    model.head, scores = fit_head(
        (train_raw - model.feature_mean) / model.feature_scale,
        train_factors,
        (valid_raw - model.feature_mean) / model.feature_scale,
        params.alphas,
        score,
        MLPSettings(alphas=params.mlp_alphas, hidden=params.mlp_hidden, seed=params.seed),
    )
    return model, scores
