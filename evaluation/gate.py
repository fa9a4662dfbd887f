"""The quality gate: publish a candidate run only if it ranks no worse than what is served.

The nightly pipeline calls `quality_gate(RUN, current)` after `evaluate_run` and before
`publish_run`. Both models are scored by `evaluation.metrics.ranking_metrics` (mAP@k with
pessimistic ties, AUC with ties as 1/2, as in `report.json`) on one common ground:

- songs: the run's test songs that have a cached mel (a song without audio has no
  prediction from either model);
- users: those that the candidate's factorization and the current version both know and
  that listened to at least one of those songs; their held-out listens are the truth.

Each model ranks in its own factor space: the candidate's user factors against its CNN's
predictions (`RUN/models/cnn/test_song_factors.npy`), the current version's user factors
against its own encoder's predictions for the same songs, so factor counts may differ.
The candidate passes iff neither metric falls more than its tolerance below the current's;
with no current version it must beat chance (`expected_random_map`, AUC 0.5).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audio.cache import MelCache, default_cache_dir
from audio.config import FRONT_END
from corpus.dataset import LISTENS_FILE, read_listens
from evaluation.metrics import (
    DEFAULT_K,
    EXPECTED_RANDOM_AUC,
    RankingMetrics,
    expected_random_map,
    ranking_metrics,
)
from factorization.matrices import play_count_matrix
from factorization.run import dataset_root_of, load_factorization
from training.inference import predict_cached
from training.run import CNN_NAME, MODELS_DIR, TEST_FACTORS_FILE

if TYPE_CHECKING:
    from training.encoder import ContentEncoder


class ScoredVersion(Protocol):
    """What the gate reads of the current version (a `pipeline.registry.read.LoadedVersion` or
    `RetrainingBase`): its id, its encoder and its user factors, rows following user_ids."""

    @property
    def version_id(self) -> str: ...
    @property
    def encoder(self) -> ContentEncoder: ...
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
class GateDecision:
    """What the gate decided and on which numbers; `to_json` goes into the run summary.

    `candidate`, `current` and `chance` are `{"map": mAP@k, "auc": AUC}` over the same
    `n_users` users and `n_test_songs` songs; `current` is None without a current version.
    """

    passed: bool
    reason: str
    candidate: dict[str, float]
    current: dict[str, float] | None
    current_version: str | None
    n_users: int
    n_test_songs: int
    settings: GateSettings
    chance: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "candidate": self.candidate,
            "current": self.current,
            "current_version": self.current_version,
            "chance": self.chance,
            "n_users": self.n_users,
            "n_test_songs": self.n_test_songs,
            "settings": dataclasses.asdict(self.settings),
        }


def _metrics(result: RankingMetrics) -> dict[str, float]:
    return {"map": result.map, "auc": result.auc}


def _verdict(
    candidate: dict[str, float],
    current: dict[str, float],
    current_version: str,
    settings: GateSettings,
) -> tuple[bool, str]:
    """Compare metric by metric; the reason names every metric that fell short, by how much."""
    checks = (
        (f"mAP@{settings.k}", "map", settings.map_tolerance, ".5f"),
        ("AUC", "auc", settings.auc_tolerance, ".4f"),
    )
    failures, summaries = [], []
    for label, key, tolerance, spec in checks:
        ours, theirs = candidate[key], current[key]
        summaries.append(f"{label} {ours:{spec}} vs {theirs:{spec}}")
        if not ours >= theirs - tolerance:  # NaN fails too
            failures.append(
                f"{label} {ours:{spec}} is {theirs - ours:.3g} below the current"
                f" {theirs:{spec}} (tolerance {tolerance:g})"
            )
    if failures:
        return False, f"refused against {current_version}: " + "; ".join(failures)
    return True, (
        f"passed against {current_version}: {', '.join(summaries)} (tolerances"
        f" {settings.map_tolerance:g} and {settings.auc_tolerance:g})"
    )


def _chance_verdict(
    candidate: dict[str, float], chance: dict[str, float], k: int
) -> tuple[bool, str]:
    beats_map = candidate["map"] > chance["map"]
    beats_auc = candidate["auc"] > chance["auc"]
    numbers = (
        f"mAP@{k} {candidate['map']:.5f} vs {chance['map']:.5f} expected at random,"
        f" AUC {candidate['auc']:.4f} vs {chance['auc']:.1f}"
    )
    if beats_map and beats_auc:
        return True, f"no current version; the candidate beats chance: {numbers}"
    short = [name for name, beats in ((f"mAP@{k}", beats_map), ("AUC", beats_auc)) if not beats]
    verb = "does" if len(short) == 1 else "do"
    return False, (
        f"no current version; the candidate's {' and '.join(short)} {verb} not beat chance:"
        f" {numbers}"
    )


def quality_gate(
    run_dir: Path,
    current: ScoredVersion | None,
    settings: GateSettings = GateSettings(),
    *,
    dataset_root: Path | None = None,
    batch_size: int = 32,
) -> GateDecision:
    """Score the finished run `run_dir`'s CNN and the `current` version on the same users and
    test songs, and decide whether the run may be published.

    `dataset_root` is needed only when the factorization manifest does not name its dataset;
    `batch_size` is the current encoder's prediction batch. Raises `GateError` when no user
    or no test song is common ground for both models.
    """
    run_dir = Path(run_dir)
    factorization = load_factorization(run_dir)
    root = dataset_root_of(factorization, dataset_root)
    cache_dir = default_cache_dir(root, current.encoder.config if current else FRONT_END)
    try:
        cache = MelCache.open(cache_dir)
    except FileNotFoundError as error:
        raise GateError(f"no test song has audio: no usable mel cache ({error})") from error

    song_rows = np.flatnonzero(np.isin(factorization.test_song_ids, cache.song_ids))
    if song_rows.size == 0:
        raise GateError(
            f"{run_dir}: none of its {len(factorization.test_song_ids)} test songs has a"
            f" cached mel in {cache_dir}"
        )
    song_ids = [factorization.test_song_ids[row] for row in song_rows]
    predictions = np.load(run_dir / MODELS_DIR / CNN_NAME / TEST_FACTORS_FILE, allow_pickle=False)
    if predictions.shape != factorization.test_song_factors.shape:
        raise GateError(
            f"{run_dir}: {MODELS_DIR}/{CNN_NAME}/{TEST_FACTORS_FILE} has shape"
            f" {predictions.shape}, expected {factorization.test_song_factors.shape}"
            " (rows following factorization/test_song_ids.json)"
        )

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

    candidate = _metrics(
        ranking_metrics(
            factorization.user_factors[candidate_rows[evaluated]],
            predictions[song_rows],
            relevance,
            k=settings.k,
        )
    )
    chance = {
        "map": expected_random_map(np.diff(relevance.indptr), len(song_ids), settings.k),
        "auc": EXPECTED_RANDOM_AUC,
    }
    if current is None:
        passed, reason = _chance_verdict(candidate, chance, settings.k)
        current_metrics = None
    else:
        current_metrics = _metrics(
            ranking_metrics(
                current.user_factors[in_current[candidate_rows[evaluated]]],
                predict_cached(current.encoder, cache, song_ids, batch_size),
                relevance,
                k=settings.k,
            )
        )
        passed, reason = _verdict(candidate, current_metrics, current.version_id, settings)
    return GateDecision(
        passed=passed,
        reason=f"{reason}, on {evaluated.size} users and {len(song_ids)} test songs.",
        candidate=candidate,
        current=current_metrics,
        current_version=current.version_id if current else None,
        n_users=int(evaluated.size),
        n_test_songs=len(song_ids),
        settings=settings,
        chance=chance,
    )
