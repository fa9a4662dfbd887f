"""The quality gate: the same users and songs for both models, refusal of a worse candidate."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audio.cache import default_cache_dir
from evaluation.gate import GateError, GateSettings, RecordedScore, quality_gate
from pipeline.registry import LoadedVersion, load_current, publish_run

PREDICTIONS = Path("models/cnn/test_song_factors.npy")
HYBRID = Path("models/hybrid/test_song_factors.npy")
STRICT = GateSettings(map_tolerance=0.0, auc_tolerance=0.0)


@pytest.fixture(scope="module")
def current(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedVersion:
    """`trained_run` published into a fresh registry: the version a candidate is gated against."""
    registry = tmp_path_factory.mktemp("gate_registry")
    publish_run(trained_run, registry)
    return load_current(registry)


def _candidate(
    trained_run: Path, folder: Path, predictions: np.ndarray, hybrid: np.ndarray | None = None
) -> Path:
    """A copy of `trained_run` whose CNN predicted `predictions` for the test songs (and its
    hybrid placed them at `hybrid`, by default the CNN's vectors)."""
    shutil.copytree(trained_run, folder)
    np.save(folder / PREDICTIONS, predictions.astype(np.float32))
    np.save(folder / HYBRID, (predictions if hybrid is None else hybrid).astype(np.float32))
    return folder


def _hand_count(trained_run: Path, tiny_world: Path, users: set[str]) -> tuple[int, int]:
    """(users among `users` with a listen of a cached test song, cached test songs)."""
    cached = {path.stem for path in default_cache_dir(tiny_world).glob("*.npy")}
    factorization = trained_run / "factorization"
    test_songs = set(json.loads((factorization / "test_song_ids.json").read_text())) & cached
    listens = pd.read_csv(
        tiny_world / "listens.tsv", sep="\t", names=["user_id", "song_id", "play_count"]
    )
    heard = listens[listens["song_id"].isin(test_songs) & listens["user_id"].isin(users)]
    return heard["user_id"].nunique(), len(test_songs)


@pytest.mark.slow
def test_the_same_model_scores_the_same_and_passes_a_strict_gate(
    trained_run: Path, current: LoadedVersion
) -> None:
    decision = quality_gate(trained_run, current, STRICT)
    assert decision.passed, decision.reason
    assert decision.current_version == current.version_id
    assert current.hybrid is not None  # the version keeps the priors and weights it used
    assert set(decision.candidate) == set(decision.current or {}) == {"cnn", "hybrid"}
    for model in ("cnn", "hybrid"):
        assert decision.candidate[model] == pytest.approx(decision.current[model], abs=1e-6)
    assert decision.reason.startswith("passed:") and decision.decided_by == "current"
    # The same conventions as the report: on the tiny world every test song has audio and
    # every user is known to both, so the gate's numbers are the report's.
    report = json.loads((trained_run / "report.json").read_text())
    assert decision.n_users == report["n_users"]
    for model in ("cnn", "hybrid"):
        assert {"map", "auc"} <= set(decision.candidate[model])
        metrics = {metric: report["models"][model][metric] for metric in decision.candidate[model]}
        assert decision.candidate[model] == pytest.approx(metrics, rel=1e-9)
    assert decision.chance["map"] == pytest.approx(report["expected_random"]["map"])
    assert json.loads(json.dumps(decision.to_json()))["settings"]["map_tolerance"] == 0.0


@pytest.mark.slow
def test_a_worse_candidate_is_refused_unless_the_tolerance_covers_the_gap(
    trained_run: Path, current: LoadedVersion, tmp_path: Path
) -> None:
    # Reversed predictions rank the songs the CNN found likeliest last.
    predictions = np.load(trained_run / PREDICTIONS)
    run = _candidate(trained_run, tmp_path / "run", -predictions)

    refused = quality_gate(run, current, STRICT)
    assert not refused.passed and refused.decided_by == "current"
    assert refused.current is not None
    gaps = {
        key: refused.current["cnn"][key] - refused.candidate["cnn"][key] for key in ("map", "auc")
    }
    assert gaps["map"] > 0 and gaps["auc"] > 0
    assert refused.reason.startswith("refused:") and current.version_id in refused.reason
    assert "cnn mAP@500" in refused.reason and "cnn AUC" in refused.reason

    # The hybrid of the reversed CNN is as bad: both gaps count.
    hybrid_gaps = {
        key: refused.current["hybrid"][key] - refused.candidate["hybrid"][key]
        for key in ("map", "auc")
    }
    widest = {key: max(gaps[key], hybrid_gaps[key]) + 1e-6 for key in gaps}
    lenient = GateSettings(map_tolerance=widest["map"], auc_tolerance=widest["auc"])
    assert quality_gate(run, current, lenient).passed
    # Only the metric whose tolerance is too small is named.
    map_only = GateSettings(map_tolerance=0.0, auc_tolerance=widest["auc"])
    decision = quality_gate(run, current, map_only)
    assert not decision.passed and "mAP@500" in decision.reason and "AUC" not in decision.reason


@pytest.mark.slow
def test_a_worse_hybrid_alone_is_refused(
    trained_run: Path, current: LoadedVersion, tmp_path: Path
) -> None:
    """The CNN as good as the current one, the hybrid placing songs at random: refused."""
    predictions = np.load(trained_run / PREDICTIONS)
    noise = np.random.default_rng(0).standard_normal(predictions.shape)
    run = _candidate(trained_run, tmp_path / "run", predictions, hybrid=noise)
    decision = quality_gate(run, current, STRICT)
    assert not decision.passed
    assert "hybrid mAP@500" in decision.reason and "cnn mAP" not in decision.reason


@pytest.mark.slow
def test_the_floor_stops_a_ratchet_down(
    trained_run: Path, current: LoadedVersion, tmp_path: Path
) -> None:
    """A candidate within the tolerance of the current version but further below the best
    kept version's recorded numbers on the same songs is refused, by the floor; numbers
    recorded on other test songs do not count."""
    decision = quality_gate(trained_run, current, STRICT)
    best = {
        model: {key: value + 0.02 for key, value in numbers.items()}
        for model, numbers in decision.candidate.items()
    }
    loose = GateSettings(map_tolerance=0.01, auc_tolerance=0.01)
    elsewhere = RecordedScore("20260101T000000Z-0000000000", "0" * 64, best)
    assert quality_gate(trained_run, current, loose, floor=[elsewhere]).passed
    record = RecordedScore("20260101T000000Z-0000000000", decision.test_songs, best)
    refused = quality_gate(trained_run, current, loose, floor=[elsewhere, record])
    assert not refused.passed and refused.decided_by == "floor"
    assert refused.floor["cnn"]["map"] == {
        "value": best["cnn"]["map"],
        "version": record.version_id,
    }
    assert "the floor (best kept: 20260101T000000Z-0000000000)" in refused.reason
    # within the tolerance of the floor, the comparison with the least room still says floor
    close = {m: {k: v - 0.015 for k, v in numbers.items()} for m, numbers in best.items()}
    near = RecordedScore(record.version_id, decision.test_songs, close)
    passed = quality_gate(trained_run, current, loose, floor=[near])
    assert passed.passed and passed.decided_by == "floor"


@pytest.mark.slow
def test_without_a_current_version_the_candidate_must_beat_chance(
    trained_run: Path, tmp_path: Path
) -> None:
    real = quality_gate(trained_run, None, STRICT)
    assert real.passed, real.reason
    assert real.current is None and real.current_version is None
    assert real.reason.startswith("no current version; the candidate beats chance")
    assert real.decided_by == "chance"
    assert real.candidate["cnn"]["map"] > real.chance["map"] and real.chance["auc"] == 0.5

    # All-equal scores: AUC exactly 1/2, mAP the worst its ties allow (below random's).
    zeros = _candidate(
        trained_run, tmp_path / "run", np.zeros_like(np.load(trained_run / PREDICTIONS))
    )
    flat = quality_gate(zeros, None, GateSettings(map_tolerance=1.0, auc_tolerance=1.0))
    assert not flat.passed
    assert flat.candidate["cnn"]["auc"] == 0.5
    assert flat.candidate["cnn"]["map"] < flat.chance["map"]
    assert "cnn mAP@500 and cnn AUC and hybrid mAP@500 and hybrid AUC do not" in flat.reason


@pytest.mark.slow
def test_both_models_are_scored_on_the_users_both_know(
    trained_run: Path, tiny_world: Path, current: LoadedVersion
) -> None:
    everyone = set(current.user_ids)
    for version in (None, current):
        decision = quality_gate(trained_run, version, STRICT)
        assert (decision.n_users, decision.n_test_songs) == _hand_count(
            trained_run, tiny_world, everyone
        )

    # A current version that knows only every other user: both are scored on those alone.
    half = dataclasses.replace(
        current, user_ids=current.user_ids[::2], user_factors=current.user_factors[::2]
    )
    decision = quality_gate(trained_run, half, STRICT)
    assert (decision.n_users, decision.n_test_songs) == _hand_count(
        trained_run, tiny_world, set(half.user_ids)
    )
    assert decision.n_users < quality_gate(trained_run, current, STRICT).n_users


@pytest.mark.slow
def test_at_most_max_users_are_scored_the_same_for_both_models(
    trained_run: Path, current: LoadedVersion
) -> None:
    """Bounded as the report is: the candidate and the current version score the same drawn
    users, so the same model still scores the same."""
    everyone = quality_gate(trained_run, current, STRICT).n_users
    bounded = quality_gate(trained_run, current, dataclasses.replace(STRICT, max_users=25))
    assert everyone > 25 and bounded.n_users == 25
    assert "on 25 users" in bounded.reason and bounded.passed
    for model in ("cnn", "hybrid"):
        assert bounded.candidate[model] == pytest.approx(bounded.current[model], abs=1e-6)
    assert bounded.to_json()["settings"]["max_users"] == 25
    with pytest.raises(ValueError, match="max_users must be >= 1"):
        GateSettings(max_users=0)


@pytest.mark.slow
def test_nothing_in_common_is_an_error(
    trained_run: Path, tiny_world: Path, current: LoadedVersion, tmp_path: Path
) -> None:
    strangers = dataclasses.replace(
        current, user_ids=[f"stranger-{user_id}" for user_id in current.user_ids]
    )
    with pytest.raises(GateError, match="no user known to both"):
        quality_gate(trained_run, strangers, STRICT)

    # The same dataset without its mel cache: no test song has audio.
    world = tmp_path / "world"
    shutil.copytree(tiny_world, world, ignore=shutil.ignore_patterns("mel_cache"))
    with pytest.raises(GateError, match="no test song has audio"):
        quality_gate(trained_run, current, STRICT, dataset_root=world)


@pytest.mark.parametrize(
    "tolerances", [{"map_tolerance": -0.001}, {"auc_tolerance": -1.0}, {"map_tolerance": np.nan}]
)
def test_tolerances_must_be_non_negative(tolerances: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        GateSettings(**tolerances)


@pytest.mark.slow
def test_the_deciding_metrics_are_configurable(
    trained_run: Path, current: LoadedVersion, tmp_path: Path
) -> None:
    """mAP and AUC decide by default; every metric is scored and recorded; told to, the
    gate decides on NDCG@10 alone."""
    predictions = np.load(trained_run / PREDICTIONS)
    run = _candidate(trained_run, tmp_path / "run", -predictions)
    default = quality_gate(run, current, STRICT)
    assert "ndcg" not in default.reason and "mAP@500" in default.reason
    assert {"recall@10", "precision@50", "ndcg@500"} <= default.candidate["cnn"].keys()
    assert default.chance["recall@500"] == 1.0  # fewer test songs than 500 on the tiny world

    ndcg = quality_gate(run, current, GateSettings(metrics=("ndcg@10",), top_k_tolerance=0.0))
    assert not ndcg.passed
    assert "cnn ndcg@10" in ndcg.reason and "mAP" not in ndcg.reason and "AUC" not in ndcg.reason
    wide = GateSettings(metrics=("ndcg@10",), top_k_tolerance=1.0)
    assert quality_gate(run, current, wide).passed


def test_unknown_gate_metrics_are_refused() -> None:
    with pytest.raises(ValueError, match="gate metrics must be some of map, auc, recall@10"):
        GateSettings(metrics=("ndcg@7",))
    with pytest.raises(ValueError, match="gate metrics"):
        GateSettings(metrics=())
