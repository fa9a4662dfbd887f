"""The quality gate: publish a candidate run only if it ranks no worse than what is served,
nor than the best that was served.

The nightly pipeline calls `quality_gate(RUN, current, floor=...)` after `evaluate_run` and
before `publish_run`. The models are scored by `ranking.metrics.ranking_metrics` (mAP@k
with pessimistic ties, AUC with ties as 1/2, as in `report.json`) on one common ground:

- songs: the run's test songs that have a cached mel behind the candidate's front end and
  behind the current's (a song without audio has no prediction from either model; the two
  encoders may hear through different front ends, each read from its own cache);
- users: those that the candidate's factorization and the current version both know and
  that listened to at least one of those songs, at most `GateSettings.max_users` of them
  (one seeded draw, `evaluation.users`); their held-out listens are the truth.

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
the same digest of their ids). It passes iff no deciding metric (`GateSettings.metrics`:
mAP@k and AUC unless configured otherwise; every metric of the report is scored and
recorded) of any gated model falls more than its tolerance below the current's or below
the floor; `decided_by` names the comparison
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
from evaluation.users import MAX_EVALUATED_USERS, users_to_evaluate
from factorization.matrices import play_count_matrix
from factorization.run import dataset_root_of, load_factorization
from ranking.metrics import (
    CUTOFFS,
    DEFAULT_K,
    EXPECTED_RANDOM_AUC,
    TOP_K_METRICS,
    RankingMetrics,
    expected_random_map,
    expected_random_top_k,
    ranking_metrics,
)
from training.checkpoint import read_encoder_config
from training.inference import predict_cached

if TYPE_CHECKING:
    from training.encoders.base import ContentEncoder
    from training.fusion import HybridPlacement

GATED_MODELS = (CNN_NAME, HYBRID_NAME)
DECIDING_METRICS = ("map", "auc")
# Every metric the gate scores and records; `GateSettings.metrics` picks those that decide.
METRICS = (*DECIDING_METRICS, *(f"{m}@{c}" for m in TOP_K_METRICS for c in CUTOFFS))


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
    """Which metrics decide (`metrics`: mAP@k and AUC unless told otherwise; any of
    `METRICS`) and absolute tolerances: how far below the current's each may be
    (`top_k_tolerance` for recall, precision and NDCG at a cutoff); `max_users` bounds the
    users scored (`evaluation.users`)."""

    map_tolerance: float = 0.01
    auc_tolerance: float = 0.01
    k: int = DEFAULT_K
    metrics: tuple[str, ...] = DECIDING_METRICS
    top_k_tolerance: float = 0.01
    max_users: int = MAX_EVALUATED_USERS

    def __post_init__(self) -> None:
        for name in ("map_tolerance", "auc_tolerance", "top_k_tolerance"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.max_users < 1:
            raise ValueError(f"max_users must be >= 1, got {self.max_users}")
        unknown = [metric for metric in self.metrics if metric not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(
                f"gate metrics must be some of {', '.join(METRICS)}; got {list(self.metrics)}"
            )

    def tolerance(self, metric: str) -> float:
        """The tolerance of `metric`."""
        return {"map": self.map_tolerance, "auc": self.auc_tolerance}.get(
            metric, self.top_k_tolerance
        )

    def label(self, metric: str) -> str:
        """How a reason names `metric`: "mAP@500", "AUC", "ndcg@10"."""
        return {"map": f"mAP@{self.k}", "auc": "AUC"}.get(metric, metric)


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

    `candidate`, `current` and `chance` give `{model: {metric: value}}` for every metric of
    `METRICS` ("map": mAP@k, "auc", "ndcg@10", ...; chance: `{metric: value}`), whichever
    decide, over the same `n_users` users and `n_test_songs` songs, whose ids
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
    """Every metric of `METRICS` (recorded whether or not it decides)."""
    return {"map": result.map, "auc": result.auc, **result.top_k()}


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
    checks = []
    for model, scores in candidate.items():
        for metric in settings.metrics:
            name = f"{model} {settings.label(metric)}"
            if current is not None and model in current:
                checks.append(
                    _Check(
                        "current",
                        name,
                        scores[metric],
                        current[model][metric],
                        settings.tolerance(metric),
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
                        settings.tolerance(metric),
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
    tolerances = ", ".join(f"{settings.tolerance(m):g}" for m in settings.metrics)
    return (
        True,
        f"passed: {summaries} (tolerances {tolerances}; least room against {deciding.against})",
        deciding.comparison,
    )


def _chance_verdict(
    candidate: dict[str, dict[str, float]], chance: dict[str, float], settings: GateSettings
) -> tuple[bool, str]:
    short = [
        f"{model} {settings.label(metric)}"
        for model, scores in candidate.items()
        for metric in settings.metrics
        if not scores[metric] > chance[metric]
    ]
    numbers = ", ".join(
        f"{model} " + ", ".join(f"{settings.label(m)} {scores[m]:.5f}" for m in settings.metrics)
        for model, scores in candidate.items()
    )
    numbers += " vs chance " + ", ".join(f"{chance[m]:.5f}" for m in settings.metrics)
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
    evaluated = users_to_evaluate(heard, settings.max_users)
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
    n_relevant = np.diff(relevance.indptr)
    chance = {
        "map": expected_random_map(n_relevant, len(song_ids), settings.k),
        "auc": EXPECTED_RANDOM_AUC,
        **expected_random_top_k(n_relevant, len(song_ids), CUTOFFS),
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
        (passed, reason), decided_by = _chance_verdict(candidate, chance, settings), "chance"
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
