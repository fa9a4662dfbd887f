"""The quality gate: publish a candidate run only if it ranks no worse than what is served,
nor than the best that was served.

The nightly pipeline calls `quality_gate(RUN, current, floor=...)` after `evaluate_run` and
before `publish_run`. The models are scored by `ranking.metrics.ranking_metrics` (mAP@k
with pessimistic ties, AUC with ties as 1/2, as in `report.json`) on one common ground:

- songs: the run's test songs that have a cached mel behind the candidate's front end and
  behind the current's (a song without audio has no prediction from either model; the two
  encoders may hear through different front ends, each read from its own cache);
- users: those that the candidate's factorization and the current version both know and
  that listened to at least one of those songs; their held-out listens are the truth.

Two placements are gated (`GATED_MODELS`): the audio-only CNN and the hybrid of CNN and
artist prior (`training.fusion`). Each model ranks in its own factor space: the
candidate's user factors against `RUN/models/<model>/test_song_factors.npy`, the current
version's user factors against its own encoder's predictions for the same songs, fused
with its own artist priors for the hybrid; factor counts may differ. A model the current
version lacks (one published before the hybrid) is checked against the floor and chance.

Against the current version alone, nights that each lose a little less than the tolerance
would add up unseen (a ratchet down). So the candidate is also compared with the floor:
for each model and metric, the best that a kept version scored when it passed its own
gate on the same test songs (`RecordedScore`, from the version manifests; same songs means
the same digest of their ids). It passes iff no metric of any gated model falls more than
its tolerance below the current's or below the floor; `decided_by` names the comparison
with the least room left (the one that refused, or would have been the first to). With no
current version and no floor, every gated model must beat chance (`expected_random_map`,
AUC 0.5).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from artifacts.run_layout import CNN_NAME, HYBRID_NAME, MODELS_DIR, TEST_FACTORS_FILE
from audio.cache import MelCache, default_cache_dir
from audio.config import FrontEndConfig
from corpus.dataset import LISTENS_FILE, SONGS_FILE, read_listens, read_songs
from factorization.matrices import play_count_matrix
from factorization.run import dataset_root_of, load_factorization
from ranking.metrics import (
    DEFAULT_K,
    EXPECTED_RANDOM_AUC,
    RankingMetrics,
    expected_random_map,
    ranking_metrics,
)
from training.checkpoint import read_encoder_config
from training.inference import predict_cached

if TYPE_CHECKING:
    from training.encoders.base import ContentEncoder
    from training.fusion import HybridPlacement

GATED_MODELS = (CNN_NAME, HYBRID_NAME)
METRICS = ("map", "auc")


class ScoredVersion(Protocol):
    """What the gate reads of the current version (a `pipeline.registry.read.LoadedVersion` or
    `RetrainingBase`): its id, its encoder, its hybrid placement (None: it has none) and its
    user factors, rows following user_ids."""

    @property
    def version_id(self) -> str: ...
    @property
    def encoder(self) -> ContentEncoder: ...
    @property
    def hybrid(self) -> HybridPlacement | None: ...
    @property
    def user_ids(self) -> list[str]: ...
    @property
    def user_factors(self) -> np.ndarray: ...


class GateError(ValueError):
    """The gate cannot compare the models (no common users, no test song with audio):
    the run fails rather than publishing unchecked."""


@dataclass(frozen=True)
class GateSettings:
    """Absolute tolerances: how far below the current's mAP@k and AUC the candidate's may be."""

    map_tolerance: float = 0.01
    auc_tolerance: float = 0.01
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        for name in ("map_tolerance", "auc_tolerance"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


@dataclass(frozen=True)
class RecordedScore:
    """What a kept version scored when it passed its gate: `models[name][metric]` on the
    test songs whose ids digest to `test_songs` (`songs_digest`)."""

    version_id: str
    test_songs: str
    models: dict[str, dict[str, float]]


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and on which numbers; `to_json` goes into the run summary.

    `candidate`, `current` and `chance` give `{model: {"map": mAP@k, "auc": AUC}}` (chance:
    `{"map", "auc"}`) over the same `n_users` users and `n_test_songs` songs, whose ids
    digest to `test_songs`; `current` is None without a current version. `floor[model]
    [metric]` is `{"value", "version"}`, the best kept version's. `decided_by` is
    "current", "floor" or "chance".
    """

    passed: bool
    reason: str
    decided_by: str
    candidate: dict[str, dict[str, float]]
    current: dict[str, dict[str, float]] | None
    current_version: str | None
    floor: dict[str, dict[str, dict[str, Any]]]
    test_songs: str
    n_users: int
    n_test_songs: int
    settings: GateSettings
    chance: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "decided_by": self.decided_by,
            "candidate": self.candidate,
            "current": self.current,
            "current_version": self.current_version,
            "floor": self.floor,
            "test_songs": self.test_songs,
            "chance": self.chance,
            "n_users": self.n_users,
            "n_test_songs": self.n_test_songs,
            "settings": dataclasses.asdict(self.settings),
        }


def songs_digest(song_ids: Sequence[str]) -> str:
    """sha256 of the sorted song ids: which test songs a score was measured on."""
    return hashlib.sha256("\n".join(sorted(song_ids)).encode()).hexdigest()


def _metrics(result: RankingMetrics) -> dict[str, float]:
    return {"map": result.map, "auc": result.auc}


def _best_floor(
    floor: Sequence[RecordedScore], test_songs: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per gated model and metric the best recorded value on the same test songs."""
    best: dict[str, dict[str, dict[str, Any]]] = {}
    for record in floor:
        if record.test_songs != test_songs:
            continue
        for model in GATED_MODELS:
            for metric, value in record.models.get(model, {}).items():
                if metric in METRICS and value > best.get(model, {}).get(metric, {}).get(
                    "value", -np.inf
                ):
                    best.setdefault(model, {})[metric] = {
                        "value": float(value),
                        "version": record.version_id,
                    }
    return best


@dataclass(frozen=True)
class _Check:
    comparison: str  # "current" | "floor"
    label: str
    ours: float
    theirs: float
    tolerance: float
    against: str

    @property
    def room(self) -> float:
        """How far above its limit the candidate is (negative: refused; NaN refuses)."""
        room = self.ours - (self.theirs - self.tolerance)
        return room if np.isfinite(room) else -np.inf


def _checks(
    candidate: dict[str, dict[str, float]],
    current: dict[str, dict[str, float]] | None,
    current_version: str | None,
    floor: dict[str, dict[str, dict[str, Any]]],
    settings: GateSettings,
) -> list[_Check]:
    tolerance = {"map": settings.map_tolerance, "auc": settings.auc_tolerance}
    label = {"map": f"mAP@{settings.k}", "auc": "AUC"}
    checks = []
    for model, scores in candidate.items():
        for metric in METRICS:
            name = f"{model} {label[metric]}"
            if current is not None and model in current:
                checks.append(
                    _Check(
                        "current",
                        name,
                        scores[metric],
                        current[model][metric],
                        tolerance[metric],
                        f"the current {current_version}",
                    )
                )
            if metric in floor.get(model, {}):
                best = floor[model][metric]
                checks.append(
                    _Check(
                        "floor",
                        name,
                        scores[metric],
                        best["value"],
                        tolerance[metric],
                        f"the floor (best kept: {best['version']})",
                    )
                )
    return checks


def _verdict(checks: list[_Check], settings: GateSettings) -> tuple[bool, str, str]:
    """(passed, reason naming every metric that fell short and by how much, decided_by)."""
    failures = [check for check in checks if check.room < 0]
    deciding = min(checks, key=lambda check: check.room)
    if failures:
        return (
            False,
            "refused: "
            + "; ".join(
                f"{c.label} {c.ours:.5f} is {c.theirs - c.ours:.3g} below {c.against}"
                f" {c.theirs:.5f} (tolerance {c.tolerance:g})"
                for c in failures
            ),
            deciding.comparison,
        )
    summaries = ", ".join(
        f"{c.label} {c.ours:.5f} vs {c.theirs:.5f} ({c.comparison})" for c in checks
    )
    return (
        True,
        f"passed: {summaries} (tolerances {settings.map_tolerance:g} and"
        f" {settings.auc_tolerance:g}; least room against {deciding.against})",
        deciding.comparison,
    )


def _chance_verdict(
    candidate: dict[str, dict[str, float]], chance: dict[str, float], k: int
) -> tuple[bool, str]:
    short = [
        f"{model} {label}"
        for model, scores in candidate.items()
        for label, metric in ((f"mAP@{k}", "map"), ("AUC", "auc"))
        if not scores[metric] > chance[metric]
    ]
    numbers = ", ".join(
        f"{model} mAP@{k} {scores['map']:.5f}, AUC {scores['auc']:.4f}"
        for model, scores in candidate.items()
    )
    numbers += f" vs chance {chance['map']:.5f} and {chance['auc']:.1f}"
    if not short:
        return True, f"no current version; the candidate beats chance: {numbers}"
    verb = "does" if len(short) == 1 else "do"
    return False, (
        f"no current version; the candidate's {' and '.join(short)} {verb} not beat chance:"
        f" {numbers}"
    )


def _candidate_vectors(run_dir: Path, expected_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The run's test song vectors of each gated model it has (the CNN it must have)."""
    vectors = {}
    for model in GATED_MODELS:
        path = run_dir / MODELS_DIR / model / TEST_FACTORS_FILE
        if model != CNN_NAME and not path.is_file():
            continue
        predictions = np.load(path, allow_pickle=False)
        if predictions.shape != expected_shape:
            raise GateError(
                f"{run_dir}: {MODELS_DIR}/{model}/{TEST_FACTORS_FILE} has shape"
                f" {predictions.shape}, expected {expected_shape}"
                " (rows following factorization/test_song_ids.json)"
            )
        vectors[model] = predictions
    return vectors


def _current_vectors(
    current: ScoredVersion, cache: MelCache, root: Path, song_ids: list[str], batch_size: int
) -> dict[str, np.ndarray]:
    """The current version's CNN predictions of `song_ids`, and their hybrid placement with
    its own artist priors when it has them."""
    cnn = predict_cached(current.encoder, cache, song_ids, batch_size)
    vectors = {CNN_NAME: cnn}
    if current.hybrid is not None:
        songs = read_songs(root / SONGS_FILE)
        artist_of = dict(zip(songs["song_id"], songs["artist"], strict=True))
        vectors[HYBRID_NAME] = current.hybrid.place(cnn, [artist_of.get(s) for s in song_ids])[0]
    return vectors


def _open_cache(root: Path, config: FrontEndConfig) -> MelCache:
    """The dataset's mel cache for the front end `config`; `GateError` when there is none."""
    try:
        return MelCache.open(default_cache_dir(root, config))
    except FileNotFoundError as error:
        raise GateError(f"no test song has audio: no usable mel cache ({error})") from error


def quality_gate(
    run_dir: Path,
    current: ScoredVersion | None,
    settings: GateSettings = GateSettings(),
    *,
    floor: Sequence[RecordedScore] = (),
    dataset_root: Path | None = None,
    batch_size: int = 32,
) -> GateDecision:
    """Score the finished run `run_dir`'s CNN and hybrid and the `current` version's on the
    same users and test songs, hold them against `floor` too, and decide whether the run
    may be published.

    `dataset_root` is needed only when the factorization manifest does not name its dataset;
    `batch_size` is the current encoder's prediction batch. Raises `GateError` when no user
    or no test song is common ground for both models.
    """
    run_dir = Path(run_dir)
    factorization = load_factorization(run_dir)
    root = dataset_root_of(factorization, dataset_root)
    candidate_front_end = read_encoder_config(run_dir / MODELS_DIR / CNN_NAME).front_end
    cache = _open_cache(root, candidate_front_end)
    current_cache = cache if current is None else _open_cache(root, current.encoder.config)
    song_rows = np.flatnonzero(
        np.isin(factorization.test_song_ids, cache.song_ids)
        & np.isin(factorization.test_song_ids, current_cache.song_ids)
    )
    if song_rows.size == 0:
        raise GateError(
            f"{run_dir}: none of its {len(factorization.test_song_ids)} test songs has a"
            f" cached mel in {cache.cache_dir}"
            + ("" if current_cache is cache else f" and in {current_cache.cache_dir}")
        )
    song_ids = [factorization.test_song_ids[row] for row in song_rows]
    vectors = _candidate_vectors(run_dir, factorization.test_song_factors.shape)

    # Row of each candidate user in the current version (-1: unknown to it).
    in_current = (
        pd.Index(current.user_ids).get_indexer(factorization.user_ids)
        if current
        else np.arange(len(factorization.user_ids))
    )
    candidate_rows = np.flatnonzero(in_current >= 0)
    listens = play_count_matrix(
        read_listens(root / LISTENS_FILE),
        [factorization.user_ids[row] for row in candidate_rows],
        song_ids,
    )
    heard = sp.csr_array(listens > 0)
    evaluated = np.flatnonzero(np.diff(heard.indptr) > 0)
    if evaluated.size == 0:
        whose = f"both the run and {current.version_id}" if current else "the run"
        raise GateError(
            f"no user known to {whose} listened to any of the {len(song_ids)} test songs"
            " with audio: nothing to compare"
        )
    relevance = sp.csr_array(heard[evaluated])

    users = factorization.user_factors[candidate_rows[evaluated]]
    candidate = {
        model: _metrics(ranking_metrics(users, song_vectors[song_rows], relevance, k=settings.k))
        for model, song_vectors in vectors.items()
    }
    chance = {
        "map": expected_random_map(np.diff(relevance.indptr), len(song_ids), settings.k),
        "auc": EXPECTED_RANDOM_AUC,
    }
    current_metrics = None
    if current is not None:
        current_users = current.user_factors[in_current[candidate_rows[evaluated]]]
        current_metrics = {
            model: _metrics(ranking_metrics(current_users, song_vectors, relevance, k=settings.k))
            for model, song_vectors in _current_vectors(
                current, current_cache, root, song_ids, batch_size
            ).items()
        }
    digest = songs_digest(song_ids)
    best = _best_floor(floor, digest)
    checks = _checks(
        candidate, current_metrics, current.version_id if current else None, best, settings
    )
    if checks:
        passed, reason, decided_by = _verdict(checks, settings)
    else:
        (passed, reason), decided_by = _chance_verdict(candidate, chance, settings.k), "chance"
    return GateDecision(
        passed=passed,
        reason=f"{reason}, on {evaluated.size} users and {len(song_ids)} test songs.",
        decided_by=decided_by,
        candidate=candidate,
        current=current_metrics,
        current_version=current.version_id if current else None,
        floor=best,
        test_songs=digest,
        n_users=int(evaluated.size),
        n_test_songs=len(song_ids),
        settings=settings,
        chance=chance,
    )
