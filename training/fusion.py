"""The hybrid placement of a new song: its audio (the CNN) and its artist (the prior), fused.

    hybrid = a(n) * cnn + b(n) * prior        n: the artist's training songs

The weights depend on how much the artist prior knows: songs are grouped by `n` into
buckets (`COUNT_EDGES`: 1, 2, 3-4, 5-8, 9-16, 17 and more), and per bucket `(a, b)` is the
least-squares fit of the validation songs' folded-in WMF factors (closed form, a 2x2
system per bucket over every song and factor). Given the users' factors' Gram matrix
`G = UᵀU`, the squares are those of the *scores* users give the song, `||U (h - t)||² =
(h - t)ᵀ G (h - t)`: an error along a direction that users' tastes spread over costs more
than one along a direction no user looks at, as in the ranking the evaluation makes (on
two 1,000-song worlds +6.3 and +1.9 points of the cold tracks' mAP@500 gap over plain
factors; BENCHMARKS.md). A bucket with fewer than
`MIN_BUCKET_SONGS` validation songs takes the fit pooled over all of them. A song whose
artist has no training song (`n == 0`: a cold artist, or no artist) is placed by its
audio alone: `a = 1, b = 0`, and its hybrid vector *is* its CNN vector, bit for bit.

`hybrid_vectors` is the one implementation of the rule: the training step writes the
test songs' hybrid vectors with it, the evaluation scores those, and the service places
an uploaded track with it, so the three agree to the last bit (elementwise float64
arithmetic, rounded once to float32, has no dependence on batch shape). numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artifacts.manifest import read_manifest
from corpus.artists import normalise_artist
from training.artist_prior import ArtistPriors, load_artist_priors

HYBRID_KIND = "hybrid_fusion"
FUSION_FILE = "fusion.json"
COUNT_EDGES = (1, 2, 3, 5, 9, 17)
MIN_BUCKET_SONGS = 8
PLACEMENT_HYBRID = "hybrid"
PLACEMENT_AUDIO = "audio"


@dataclass(frozen=True)
class FusionWeights:
    """Per bucket of artist song counts (`edges[i] <= n < edges[i+1]`, the last bucket
    open) the CNN's weight `cnn[i]` and the prior's `prior[i]`; `songs[i]` validation
    songs fitted them (0: the pooled fit stood in)."""

    edges: tuple[int, ...]
    cnn: tuple[float, ...]
    prior: tuple[float, ...]
    songs: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.edges)
        if not n or len(self.cnn) != n or len(self.prior) != n or len(self.songs) != n:
            raise ValueError("fusion weights need one cnn and prior weight per bucket")
        if self.edges[0] < 1 or list(self.edges) != sorted(set(self.edges)):
            raise ValueError(f"bucket edges must rise from 1 or more, got {self.edges}")
        if not np.isfinite([*self.cnn, *self.prior]).all():
            raise ValueError("fusion weights must be finite")

    def coefficients(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(a, b)`, each `(len(counts),)` float64, for artists with `counts` training songs;
        `(1, 0)` where the count is 0."""
        counts = np.asarray(counts, dtype=np.int64)
        bucket = np.searchsorted(np.asarray(self.edges), counts, side="right") - 1
        known = bucket >= 0
        a = np.where(known, np.asarray(self.cnn)[np.maximum(bucket, 0)], 1.0)
        b = np.where(known, np.asarray(self.prior)[np.maximum(bucket, 0)], 0.0)
        return a, b

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "cnn": list(self.cnn),
            "prior": list(self.prior),
            "songs": list(self.songs),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> FusionWeights:
        return cls(
            edges=tuple(int(e) for e in payload["edges"]),
            cnn=tuple(float(w) for w in payload["cnn"]),
            prior=tuple(float(w) for w in payload["prior"]),
            songs=tuple(int(n) for n in payload["songs"]),
        )


def hybrid_vectors(
    cnn_vectors: np.ndarray,
    artist_priors: np.ndarray,
    artist_counts: np.ndarray,
    weights: FusionWeights,
) -> np.ndarray:
    """Hybrid placements `(n, F)` float32 of `n` songs from their CNN vectors `(n, F)`, their
    artists' priors `(n, F)` and those artists' training song counts `(n,)` (0: no prior).
    """
    cnn = np.asarray(cnn_vectors, dtype=np.float32)
    prior = np.asarray(artist_priors, dtype=np.float32)
    if cnn.ndim != 2 or prior.shape != cnn.shape or np.shape(artist_counts) != cnn.shape[:1]:
        raise ValueError(
            f"cnn {cnn.shape}, priors {prior.shape} and counts {np.shape(artist_counts)}"
            " must follow the same songs"
        )
    a, b = weights.coefficients(artist_counts)
    fused = a[:, None] * cnn.astype(np.float64) + b[:, None] * prior.astype(np.float64)
    return fused.astype(np.float32)


def placement(artist_count: int) -> str:
    """What placed a song whose artist has `artist_count` training songs."""
    return PLACEMENT_HYBRID if artist_count > 0 else PLACEMENT_AUDIO


@dataclass(frozen=True)
class HybridPlacement:
    """The artist priors and fusion weights a version places new songs with."""

    priors: ArtistPriors
    weights: FusionWeights

    def place(
        self, cnn_vectors: np.ndarray, artists: Sequence[object]
    ) -> tuple[np.ndarray, list[str]]:
        """Hybrid vectors `(n, F)` float32 of songs with CNN vectors `(n, F)` and raw artist
        strings (normalised here; anything unknown or missing is placed by audio), with
        each song's placement (`PLACEMENT_HYBRID` or `PLACEMENT_AUDIO`)."""
        priors, counts = self.priors.lookup([normalise_artist(name) for name in artists])
        vectors = hybrid_vectors(cnn_vectors, priors, counts, self.weights)
        return vectors, [placement(int(n)) for n in counts]


def load_fusion(folder: Path) -> FusionWeights:
    """The weights of a finished `RUN/models/hybrid/` (or a version's copy), manifest
    verified."""
    read_manifest(folder, kind=HYBRID_KIND)
    return FusionWeights.from_json(json.loads((Path(folder) / FUSION_FILE).read_text()))


def load_hybrid(artist_dir: Path, hybrid_dir: Path) -> HybridPlacement | None:
    """The placement of a run or version from its artist and hybrid folders; None without a
    hybrid (a version published before it: every new song is placed by audio)."""
    if not Path(hybrid_dir).is_dir():
        return None
    return HybridPlacement(load_artist_priors(artist_dir), load_fusion(hybrid_dir))


def score_metric(user_factors: np.ndarray) -> np.ndarray:
    """`L (F, F)` float64 with `L Lᵀ` the Gram matrix `UᵀU` of `user_factors (n_users, F)`,
    scaled to unit trace (a small ridge keeps it positive definite): `||x L||` is the size
    of the scores users would give a song vector `x`."""
    users = np.asarray(user_factors, dtype=np.float64)
    gram = users.T @ users
    gram /= max(float(np.trace(gram)), 1e-300)
    gram += 1e-6 * np.eye(gram.shape[0])
    return np.linalg.cholesky(gram)


def _least_squares(
    cnn: np.ndarray, prior: np.ndarray, target: np.ndarray, metric: np.ndarray | None
) -> tuple[float, float]:
    """`(a, b)` minimising ||(a cnn + b prior - target) metric||^2 over all rows and factors
    (the identity when `metric` is None)."""
    if metric is not None:
        cnn, prior, target = (np.asarray(x, np.float64) @ metric for x in (cnn, prior, target))
    columns = np.stack([cnn.ravel(), prior.ravel()], axis=1).astype(np.float64)
    gram = columns.T @ columns
    gram += 1e-9 * np.trace(gram) * np.eye(2)  # a CNN and prior that coincide stay solvable
    a, b = np.linalg.solve(gram, columns.T @ target.ravel().astype(np.float64))
    return float(a), float(b)


def fit_fusion(
    cnn_vectors: np.ndarray,
    artist_priors: np.ndarray,
    artist_counts: np.ndarray,
    target_factors: np.ndarray,
    edges: Sequence[int] = COUNT_EDGES,
    min_bucket_songs: int = MIN_BUCKET_SONGS,
    metric: np.ndarray | None = None,
) -> FusionWeights:
    """Fit the per-bucket weights on validation songs: their CNN vectors, artist priors and
    counts (as `hybrid_vectors` takes them) and their folded-in WMF factors `(n, F)`.
    `metric` (`score_metric` of the user factors) fits the users' scores rather than the
    factors themselves.

    Songs without a prior say nothing about the weights and are left out; when no
    validation song has one (a catalogue without artists) every bucket is the audio alone,
    `(1, 0)`, fitted on 0 songs.
    """
    counts = np.asarray(artist_counts, dtype=np.int64)
    known = counts > 0
    pooled = (
        _least_squares(cnn_vectors[known], artist_priors[known], target_factors[known], metric)
        if known.any()
        else (1.0, 0.0)
    )
    bucket = np.searchsorted(np.asarray(edges), counts, side="right") - 1
    cnn_w, prior_w, songs = [], [], []
    for i in range(len(edges)):
        rows = np.flatnonzero(known & (bucket == i))
        if rows.size >= min_bucket_songs:
            a, b = _least_squares(
                cnn_vectors[rows], artist_priors[rows], target_factors[rows], metric
            )
        else:
            (a, b), rows = pooled, rows[:0]
        cnn_w.append(a)
        prior_w.append(b)
        songs.append(int(rows.size))
    return FusionWeights(tuple(int(e) for e in edges), tuple(cnn_w), tuple(prior_w), tuple(songs))
