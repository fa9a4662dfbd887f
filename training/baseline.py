"""The paper's linear baseline: an MFCC bag of words, ridge-regressed onto the factors.

van den Oord et al. (2013, section 5.1) compare the CNN with a bag-of-words model:
MFCCs plus deltas quantised against a k-means vocabulary, one normalised histogram of
words per clip, and a linear regression from the histogram to the latent factors.

The MFCCs come from the same cached log-mels as the CNN (a type-II DCT over the mel
bands, so there is no second mel transform to drift from the front end); deltas are the
centred difference over time. The vocabulary is fit by mini-batch k-means on a seeded
sample of frames from the training songs; histograms are term frequencies, optionally
weighted by inverse document frequency; ridge's alpha is chosen by validation mAP, the
same criterion as the CNN's early stopping (`training.ridge`, which also saves it as `.npz`
+ JSON).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
from sklearn.cluster import MiniBatchKMeans

from audio.config import FRONT_END, FrontEndConfig
from training.ridge import ClassicalModel, Head, LazyMels, RidgeHead, fit_head

# The front end whose cached log-mels the baseline's MFCCs come from: the project's (the
# paper's 128 bands), whatever the encoders of the run hear through.
BASELINE_FRONT_END = FRONT_END
MODEL_NAME = "linear"
CONFIG_FILE = f"{MODEL_NAME}.json"
WEIGHTINGS = ("tf", "tfidf")


@dataclass(frozen=True)
class BaselineParams:
    """Settings of the bag-of-words baseline (saved in `linear.json`)."""

    n_mfcc: int = 20
    n_words: int = 500
    frames_per_song: int = 200
    max_codebook_frames: int = 200_000
    weighting: str = "tfidf"
    alphas: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.alphas:
            raise ValueError("BaselineParams.alphas: give at least one ridge alpha")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BaselineParams:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def mfcc_frames(log_mel: np.ndarray, n_mfcc: int) -> np.ndarray:
    """Log-mel (n_mels, T) -> MFCCs and their deltas per frame, (T, 2 * n_mfcc) float32."""
    mfcc = scipy.fft.dct(np.asarray(log_mel, dtype=np.float32), type=2, axis=0, norm="ortho")
    mfcc = mfcc[:n_mfcc]
    delta = np.gradient(mfcc, axis=1) if mfcc.shape[1] > 1 else np.zeros_like(mfcc)
    return np.concatenate([mfcc, delta]).T.astype(np.float32)


def nearest_words(frames: np.ndarray, codebook: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Index of the nearest codeword (Euclidean) for each row of `frames` (N, D) -> (N,)."""
    half_norms = 0.5 * np.einsum("kd,kd->k", codebook, codebook)
    words = np.empty(frames.shape[0], dtype=np.int64)
    for start in range(0, frames.shape[0], chunk):
        block = frames[start : start + chunk]
        words[start : start + chunk] = np.argmax(block @ codebook.T - half_norms, axis=1)
    return words


@dataclass
class LinearBaseline(ClassicalModel):
    """A fitted bag-of-words model. Shapes: codebook (K, D); its ridge head maps (K,) -> (F,)."""

    model_name = MODEL_NAME
    params_type = BaselineParams
    array_names = ("frame_mean", "frame_scale", "codebook", "idf")

    params: BaselineParams
    config: FrontEndConfig
    frame_mean: np.ndarray
    frame_scale: np.ndarray
    codebook: np.ndarray
    idf: np.ndarray
    head: Head

    def histograms(self, log_mels: Sequence[np.ndarray]) -> np.ndarray:
        """Clips' log-mels (n_mels, T_i) -> weighted word histograms (n_clips, K) float32."""
        n_words = self.codebook.shape[0]
        counts = np.zeros((len(log_mels), n_words), dtype=np.float64)
        for row, log_mel in enumerate(log_mels):
            frames = (mfcc_frames(log_mel, self.params.n_mfcc) - self.frame_mean) / self.frame_scale
            counts[row] = np.bincount(nearest_words(frames, self.codebook), minlength=n_words)
        term_frequency = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        return (term_frequency * self.idf).astype(np.float32)

    def predict(self, log_mels: Sequence[np.ndarray]) -> np.ndarray:
        """Clips' log-mels (n_mels, T_i) -> predicted factors (n_clips, F) float32."""
        return self.head.predict(self.histograms(log_mels))


def fit_baseline(
    load_mel: Callable[[str], np.ndarray],
    train_song_ids: Sequence[str],
    train_factors: np.ndarray,
    valid_song_ids: Sequence[str],
    score: Callable[[np.ndarray], float],
    params: BaselineParams = BaselineParams(),
    config: FrontEndConfig = FRONT_END,
) -> tuple[LinearBaseline, dict[str, float]]:
    """Fit the vocabulary, then ridge for each alpha; keep the alpha that `score`s best.

    `load_mel(song_id)` gives a song's log-mel (n_mels, T); `train_factors` (n_train, F)
    are the targets; `score(valid_predictions (n_valid, F))` is the validation mAP.
    Returns the model and the validation score of every alpha tried, by the head's label.
    """
    rng = np.random.default_rng(params.seed)
    per_song = min(
        params.frames_per_song, max(1, params.max_codebook_frames // len(train_song_ids))
    )
    sample = []
    for song in train_song_ids:
        frames = mfcc_frames(load_mel(song), params.n_mfcc)
        sample.append(
            frames[rng.choice(frames.shape[0], min(per_song, frames.shape[0]), replace=False)]
        )
    sample_frames = np.concatenate(sample)
    frame_mean = sample_frames.mean(axis=0)
    frame_scale = sample_frames.std(axis=0) + 1e-6
    kmeans = MiniBatchKMeans(
        n_clusters=min(params.n_words, sample_frames.shape[0]),
        random_state=params.seed,
        batch_size=4096,
        n_init=3,
    ).fit((sample_frames - frame_mean) / frame_scale)
    codebook = kmeans.cluster_centers_.astype(np.float32)

    n_factors = train_factors.shape[1]
    model = LinearBaseline(
        params=params,
        config=config,
        frame_mean=frame_mean.astype(np.float32),
        frame_scale=frame_scale.astype(np.float32),
        codebook=codebook,
        idf=np.ones(codebook.shape[0], dtype=np.float32),
        head=RidgeHead(
            np.zeros((n_factors, codebook.shape[0]), np.float32),
            np.zeros(n_factors, np.float32),
            float("nan"),
        ),
    )
    train_tf = model.histograms(LazyMels(load_mel, train_song_ids))
    valid_tf = model.histograms(LazyMels(load_mel, valid_song_ids))
    if params.weighting == "tfidf":
        document_frequency = (train_tf > 0).sum(axis=0)
        model.idf = (
            np.log((1 + len(train_song_ids)) / (1 + document_frequency)).astype(np.float32) + 1
        )
    model.head, scores = fit_head(
        train_tf * model.idf, train_factors, valid_tf * model.idf, params.alphas, score
    )
    return model, scores
