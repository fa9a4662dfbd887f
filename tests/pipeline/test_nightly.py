"""The nightly pipeline on the tiny world: publish, refuse, busy, killed mid-run, and the
catalogue as its source while the service keeps writing to it."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from artifacts.manifest import read_manifest
from audio.config import FRONT_END
from catalogue import Catalogue
from evaluation.gate import GateSettings
from factorization.regularization import REGULARIZATION_GRID
from pipeline.lock import pipeline_lock
from pipeline.nightly import PipelineSettings, RunSummary, recorded_scores, run_pipeline
from pipeline.outcome import Outcome
from pipeline.registry import (
    STAGING_DIR,
    VERSIONS_DIR,
    current_version_id,
    list_versions,
    load_current,
    publish_run,
)
from tests import narrowband
from tests.tiny import TINY_CNN, tiny_settings

pytestmark = pytest.mark.slow

LENIENT = GateSettings(map_tolerance=1.0, auc_tolerance=1.0)
STRICT = GateSettings(map_tolerance=0.0, auc_tolerance=0.0)


@pytest.fixture(scope="module")
def template_registry(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry whose current version is the tiny trained run (published once)."""
    folder = tmp_path_factory.mktemp("template_registry")
    publish_run(trained_run, folder)
    return folder


@pytest.fixture()
def registry(template_registry: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "registry"
    shutil.copytree(template_registry, folder)
    return folder


def settings_for(registry: Path, **overrides: object) -> PipelineSettings:
    values: dict[str, object] = {
        "registry": registry,
        "cnn": TINY_CNN,
        "fine_tune_epochs": 1,
        "wmf_iterations": 5,
        "regularization": 100.0,
        "gate": LENIENT,
        "workers": 1,
        "classical_models": False,  # seconds each; the first test below fits them
        **overrides,
    }
    return PipelineSettings(**values)  # type: ignore[arg-type]


def test_run_publishes_a_warm_started_fine_tuned_version(registry: Path, tiny_world: Path) -> None:
    before = current_version_id(registry)
    summary = run_pipeline(settings_for(registry, dataset=tiny_world, classical_models=True))

    assert summary.outcome == Outcome.PUBLISHED and summary.exit_code == 0, summary.message
    assert summary.previous_version == before
    assert summary.version_id == summary.current_version == current_version_id(registry)
    assert [step.name for step in summary.steps] == [
        "prepare",
        "snapshot",
        "featurize",
        "factorize",
        "train",
        "evaluate",
        "gate",
        "publish",
        "retention",
    ]
    assert all(step.status == "ok" and step.seconds >= 0 for step in summary.steps)
    steps = {step.name: step.detail for step in summary.steps}
    assert steps["factorize"]["warm_start_from"] == before
    assert steps["factorize"]["test_split"] == "kept"
    assert steps["factorize"]["regularization_from"] == "given"  # settings_for gives 100
    assert steps["train"]["fine_tuned_from"] == before
    # told nothing, the run keeps the current version's architecture (and front end)
    assert steps["train"]["architecture"] == steps["train"]["previous_architecture"] == "dieleman"
    assert steps["train"]["from_scratch"] is None
    assert set(steps["featurize"]["front_ends"]) == {FRONT_END.fingerprint()[:12]}
    assert summary.drift is not None and summary.drift["songs"]["n_shared"] > 0
    assert summary.gate is not None and summary.gate["current_version"] == before

    version = load_current(registry)
    assert version.manifest["parents"]["version"] == before
    assert version.manifest["parameters"]["source"] == "dataset"
    assert version.manifest["pipeline"]["run_id"] == summary.run_id
    previous = registry / VERSIONS_DIR / before / "test_song_ids.json"
    previous_tests = json.loads(previous.read_text())
    new_tests = json.loads((version.folder / "test_song_ids.json").read_text())
    assert new_tests == previous_tests  # the gate and the report compare on the same songs
    written = json.loads((Path(summary.run_dir) / "summary.json").read_text())
    assert written["outcome"] == "published" and written["exit_code"] == 0
    assert written["gate"]["decided_by"] == "current"

    # The version keeps the artist priors and fusion it placed songs with, and its gate's
    # numbers become the floor of the nights after it.
    assert {"artist/artist_priors.npy", "hybrid/fusion.json"} <= set(version.manifest["files"])
    assert version.hybrid is not None and version.manifest["parameters"]["placement"] == "hybrid"
    recorded = {score.version_id: score for score in recorded_scores(registry)}
    assert before not in recorded  # published by `coldstart publish`: no gate
    mine = recorded[version.version_id]
    assert mine.models == summary.gate["candidate"] and set(mine.models) == {"cnn", "hybrid"}
    assert mine.test_songs == summary.gate["test_songs"]
    # The classical baselines are rows of the night's report, not gated nor published.
    report = json.loads((Path(summary.run_dir) / "report.json").read_text())
    assert {"linear", "kmeans", "cnn", "hybrid"} <= set(report["models"])
    assert not any(name.startswith(("kmeans/", "linear")) for name in version.manifest["files"])


def test_a_warm_night_without_new_audio_featurizes_nothing(
    registry: Path, tiny_world: Path
) -> None:
    """The run's mel cache outlives the run: the next night finds every recording up to
    date and computes none (a changed recording is recomputed: tests/audio/test_cache.py)."""
    first = run_pipeline(settings_for(registry, dataset=tiny_world))
    second = run_pipeline(settings_for(registry, dataset=tiny_world))
    assert first.outcome == second.outcome == Outcome.PUBLISHED, second.message
    before = {step.name: step.detail for step in first.steps}["featurize"]
    after = {step.name: step.detail for step in second.steps}["featurize"]
    assert before["cached"] == after["cached"] > 100
    assert after["computed"] == 0 and after["up_to_date"] == after["cached"]


def _factorize_of(summary: RunSummary) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the summary's factorize step detail, the run's factorization manifest)."""
    detail = {step.name: step.detail for step in summary.steps}["factorize"]
    manifest = read_manifest(Path(summary.run_dir) / "factorization", kind="factorization")
    return detail, manifest


def test_a_warm_night_reuses_the_current_versions_regularization(
    registry: Path, tiny_world: Path
) -> None:
    # 3.0: off the search's grid, so only a reuse of this night's value gives it again
    given = run_pipeline(settings_for(registry, dataset=tiny_world, regularization=3.0))
    assert given.outcome == Outcome.PUBLISHED, given.message
    assert load_current(registry).manifest["factorization"]["regularization"] == 3.0

    reused = run_pipeline(settings_for(registry, dataset=tiny_world, regularization=None))

    assert reused.outcome == Outcome.PUBLISHED, reused.message
    detail, manifest = _factorize_of(reused)
    assert detail["regularization"] == 3.0 and detail["warm_start_from"] == given.version_id
    assert detail["regularization_from"] == f"reused from version {given.version_id}"
    assert manifest["regularization_search"] is None  # no candidate was fitted
    recorded = load_current(registry).manifest["factorization"]
    assert recorded["regularization"] == 3.0
    assert recorded["regularization_from"] == f"reused from version {given.version_id}"
    report = json.loads((Path(reused.run_dir) / "report.json").read_text())
    assert not {"linear", "kmeans"} & set(report["models"])  # classical_models=False


def test_a_first_night_searches_and_auto_searches_on_a_warm_night(
    tmp_path: Path, tiny_world: Path
) -> None:
    registry = tmp_path / "empty-registry"
    first = run_pipeline(settings_for(registry, dataset=tiny_world, regularization=None))

    assert first.outcome == Outcome.PUBLISHED and first.previous_version is None, first.message
    detail, manifest = _factorize_of(first)
    search = manifest["regularization_search"]
    assert search["grid"] == list(REGULARIZATION_GRID) and len(search["scores"]) == 4
    assert detail["regularization_from"] == "searched"
    assert detail["regularization"] == search["chosen"]
    assert load_current(registry).manifest["factorization"]["regularization"] == search["chosen"]

    again = run_pipeline(settings_for(registry, dataset=tiny_world, regularization="auto"))

    assert again.outcome == Outcome.PUBLISHED, again.message
    detail, manifest = _factorize_of(again)
    assert detail["warm_start_from"] == first.version_id
    assert detail["regularization_from"] == "searched"
    assert manifest["regularization_search"]["grid"] == list(REGULARIZATION_GRID)


def test_a_version_without_a_lambda_for_these_confidences_is_searched_again(
    registry: Path,
) -> None:
    from factorization.wmf import WMFParams
    from pipeline.nightly import recorded_regularization
    from pipeline.registry import load_for_retraining

    base = load_for_retraining(registry, current_version_id(registry))
    params = WMFParams(regularization="auto")
    fitted = base.manifest["factorization"]
    assert recorded_regularization(base, params) == fitted["regularization"]
    older = {key: value for key, value in base.manifest.items() if key != "factorization"}
    assert recorded_regularization(dataclasses.replace(base, manifest=older), params) is None
    # lambda is on the confidences' scale: chosen for another alpha, it is not reused
    other_alpha = {**base.manifest, "factorization": {**fitted, "alpha": params.alpha + 1}}
    other = dataclasses.replace(base, manifest=other_alpha)
    assert recorded_regularization(other, params) is None


def test_a_bad_regularization_is_refused_before_anything_runs(registry: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    with pytest.raises(ValueError, match="regularization must be > 0"):
        settings_for(registry, dataset=registry, regularization=-1.0)
    result = CliRunner().invoke(
        app, ["pipeline", "--registry", str(registry), "--dataset", ".", "--regularization", "lots"]
    )
    assert result.exit_code == 2
    assert "'auto' or a positive number" in " ".join(result.output.split())  # rich wraps
    assert not (registry / "pipeline" / "runs").exists()


def test_a_worse_candidate_is_refused_and_current_stays(registry: Path, tiny_world: Path) -> None:
    before, versions = current_version_id(registry), list_versions(registry)
    one_step = dataclasses.replace(TINY_CNN, lr=1e-9)  # a fresh encoder that learns nothing
    gate = dataclasses.replace(STRICT, max_users=30)  # evaluate and gate score 30 drawn users
    summary = run_pipeline(
        settings_for(registry, dataset=tiny_world, from_scratch=True, cnn=one_step, gate=gate)
    )

    assert summary.outcome == Outcome.REFUSED and summary.exit_code == 3, summary.message
    assert summary.version_id is None
    assert current_version_id(registry) == before and list_versions(registry) == versions
    assert summary.gate is not None and not summary.gate["passed"]
    candidate, current = summary.gate["candidate"]["cnn"], summary.gate["current"]["cnn"]
    assert candidate["map"] < current["map"] or candidate["auc"] < current["auc"]
    assert summary.gate["decided_by"] == "current" and "decided by current" in summary.message
    assert before in summary.message and "publish" not in [s.name for s in summary.steps]
    report = json.loads((Path(summary.run_dir) / "report.json").read_text())
    assert report["n_users"] == summary.gate["n_users"] == 30


def test_told_another_architecture_it_trains_that_one_then_keeps_it(
    registry: Path, tiny_world: Path, audio_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--encoder` another than the current's: that one from scratch, behind its own front
    end (featurized for it; the gate scores the current version through its own), recorded
    in the summary; the next night, told nothing, fine-tunes it."""
    from training.inference import embed_audio

    name = narrowband.register(monkeypatch)
    before = current_version_id(registry)
    tiny = tiny_settings(name)
    summary = run_pipeline(settings_for(registry, dataset=tiny_world, encoder=name, cnn=tiny))

    assert summary.outcome == Outcome.PUBLISHED, summary.message
    train = {step.name: step.detail for step in summary.steps}["train"]
    assert train["architecture"] == name and train["previous_architecture"] == "dieleman"
    assert train["fine_tuned_from"] is None
    assert train["from_scratch"] == f"asked for {name}; the current is dieleman"
    featurized = {step.name: step.detail for step in summary.steps}["featurize"]["front_ends"]
    assert set(featurized) == {
        narrowband.FRONT_END_16K.fingerprint()[:12],
        FRONT_END.fingerprint()[:12],
    }
    assert summary.gate is not None and summary.gate["current_version"] == before
    version = load_current(registry)
    assert version.encoder.name == name and version.encoder.config == narrowband.FRONT_END_16K
    assert version.manifest["parameters"]["architecture"] == name
    served = embed_audio(version.encoder, audio_assets / "vibe_ace.mp3")  # decoded at 16 kHz
    assert served.content.shape == (version.encoder.dims.embedding_dims,)

    again = run_pipeline(settings_for(registry, dataset=tiny_world, cnn=tiny))
    assert again.outcome == Outcome.PUBLISHED, again.message
    train = {step.name: step.detail for step in again.steps}["train"]
    assert train["architecture"] == train["previous_architecture"] == name
    assert train["fine_tuned_from"] == summary.version_id and train["from_scratch"] is None
    assert load_current(registry).encoder.name == name


def test_a_second_run_is_turned_away_while_one_holds_the_lock(
    registry: Path, tiny_world: Path
) -> None:
    before = current_version_id(registry)
    with pipeline_lock(registry, "a-run-in-progress"):
        summary = run_pipeline(settings_for(registry, dataset=tiny_world))
    assert summary.outcome == Outcome.BUSY and summary.exit_code == 75
    assert "a-run-in-progress" in summary.message
    assert current_version_id(registry) == before


def _pipeline_command(registry: Path, tiny_world: Path, run_id: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from cli.main import app; app()",
        "pipeline",
        "--registry",
        str(registry),
        "--dataset",
        str(tiny_world),
        "--run-id",
        run_id,
        "--fine-tune-epochs",
        "1",
        "--max-minutes",
        "1",
        "--workers",
        "1",
        "--map-tolerance",
        "1",
        "--auc-tolerance",
        "1",
    ]


@pytest.mark.parametrize("kill_at", ["train", "publish"])
def test_sigkill_mid_run_leaves_current_serving_and_the_next_run_succeeds(
    registry: Path, tiny_world: Path, kill_at: str
) -> None:
    before, versions = current_version_id(registry), list_versions(registry)
    log = registry / "pipeline" / "runs" / "killed" / "pipeline.log"
    process = subprocess.Popen(
        _pipeline_command(registry, tiny_world, "killed"),
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while f"step {kill_at}: started" not in (log.read_text() if log.is_file() else ""):
            assert process.poll() is None, "the pipeline ended before the kill point"
            assert time.monotonic() < deadline, "the pipeline never reached the kill point"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    assert current_version_id(registry) == before
    assert list_versions(registry) == versions  # no half version is visible
    assert load_current(registry).version_id == before  # and current still loads, verified

    summary = run_pipeline(settings_for(registry, dataset=tiny_world))
    assert summary.outcome == Outcome.PUBLISHED, summary.message
    assert list_versions(registry) == [*versions, summary.version_id]
    assert not any((registry / STAGING_DIR).iterdir())  # the killed run's debris is gone


def add_recording(catalogue: Catalogue, track_id: str, path: Path) -> None:
    catalogue.add_track(track_id, track_id.title(), "Band", audio=path, audio_ext=path.suffix[1:])


def test_catalogue_as_source_keeps_writes_made_during_the_run(
    registry: Path, tiny_world: Path, audio_assets: Path, tmp_path: Path
) -> None:
    from catalogue import open_catalogue
    from catalogue.repository import ListenIn
    from corpus.dataset import load_dataset

    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    store = tmp_path / "audio-store"
    world = load_dataset(tiny_world)
    recordings = [audio_assets / name for name in ("vibe_ace.mp3", "trumpet_loop.ogg")]
    recordings.append(audio_assets / "sugar_plum_fairy.wav")
    listeners = [str(user) for user in world.listens["user_id"].cat.categories[:5]]
    with open_catalogue(url, store) as catalogue:
        catalogue.import_songs(world.songs)  # without audio: it comes from the current dataset
        catalogue.import_listens(world.listens)
        add_recording(catalogue, "played", recordings[0])
        add_recording(catalogue, "unplayed", recordings[1])
        catalogue.add_listens([ListenIn(user, "played", 4) for user in listeners])
        listens_before = catalogue.count_listens()

    outcome: list[RunSummary] = []
    run = threading.Thread(
        target=lambda: outcome.append(
            run_pipeline(settings_for(registry, database_url=url, audio_store=store, run_id="db"))
        )
    )
    run.start()
    log = registry / "pipeline" / "runs" / "db" / "pipeline.log"
    deadline = time.monotonic() + 240
    while "step featurize: started" not in (log.read_text() if log.is_file() else ""):
        assert run.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    with open_catalogue(url, store) as catalogue:  # the service writing meanwhile
        add_recording(catalogue, "during", recordings[2])
        catalogue.add_listens([ListenIn(listeners[0], "played", 1)])
    run.join(timeout=300)
    summary = outcome[0]
    assert summary.outcome == Outcome.PUBLISHED, summary.message

    with open_catalogue(url, store) as catalogue:
        assert catalogue.count_listens() == listens_before + 1
        assert {"played", "unplayed", "during"} <= {t.id for t in catalogue.list_tracks()}
    version = load_current(registry)
    assert version.manifest["parameters"]["source"] == "database"
    cf = version.index.space("cf")
    assert "played" in cf and "played" not in version.cold_song_ids  # enough listeners: warm
    assert "unplayed" in version.cold_song_ids  # placed by its audio
    assert "during" not in cf  # after the snapshot: the service adds it when it swaps
    assert np.isfinite(version.user_factors).all()


def test_the_heavy_steps_run_on_spark_when_the_settings_say_so(
    registry: Path, tiny_world: Path, spark: object
) -> None:
    summary = run_pipeline(settings_for(registry, dataset=tiny_world, engine="spark"))

    assert summary.outcome == Outcome.PUBLISHED, summary.message
    steps = {step.name: step.detail for step in summary.steps}
    assert steps["factorize"]["warm_start_from"] is None  # Spark's ALS takes no initial factors
    factorization = json.loads(
        (Path(summary.run_dir) / "factorization" / "manifest.json").read_text()
    )
    assert factorization["parameters"]["engine"] == "spark.ml.ALS"
    version = load_current(registry)
    assert version.manifest["parameters"]["embedded_on"] == "local[2]"
    assert steps["train"]["fine_tuned_from"] == summary.previous_version


def test_the_index_kind_comes_from_the_settings(registry: Path, tiny_world: Path) -> None:
    from index.settings import IndexSettings

    ivfpq = IndexSettings(kind="ivfpq", ivfpq_factory="IVF4,PQ4x4", nprobe=4, train_sample=500)
    summary = run_pipeline(settings_for(registry, dataset=tiny_world, index=ivfpq))

    assert summary.outcome == Outcome.PUBLISHED, summary.message
    version = load_current(registry)
    assert version.manifest["parameters"]["index"]["kind"] == "ivfpq"
    assert version.index.space("cf").kind == "ivfpq"
    some_song = version.index.space("content").ids()[0]
    assert len(version.index.similar_to(some_song, 5, "content")) == 5


def test_bad_tracks_are_left_out_named_and_the_rest_is_published(
    registry: Path, tiny_world: Path, tmp_path: Path
) -> None:
    """Tracks put into the catalogue behind the API's back (NaN samples with a NaN vector,
    a stored file that is gone, bytes that are not audio) are left out of the version and
    named in the summary, the log and the run's record; the rest is published, and a
    service started on it serves."""
    import httpx

    from catalogue import open_catalogue
    from catalogue.runs import claim_next, finish_run, request_run
    from corpus.dataset import load_dataset
    from pipeline.scheduler import read_summary
    from tests.hostile_audio import RATE, hostile_corpus, tone, wav_bytes
    from tests.service.conftest import API_KEY, LiveServer

    database = tmp_path / "catalogue.db"
    url = f"sqlite:///{database}"
    store = tmp_path / "audio-store"
    world = load_dataset(tiny_world)
    good = wav_bytes(tone(3.5, hz=330), RATE)
    with open_catalogue(url, store) as catalogue:
        catalogue.import_songs(world.songs)
        catalogue.import_listens(world.listens)
        catalogue.add_track("good-cold", "Good", audio=good, audio_ext="wav")
        catalogue.add_track(
            "nan-samples", "NaN", audio=hostile_corpus()["float-wav-nan"].data, audio_ext="wav"
        )
        lost = catalogue.add_track(
            "lost-audio", "Lost", audio=wav_bytes(tone(3.5, hz=660), RATE), audio_ext="wav"
        )
        catalogue.add_track("garbage", "Junk", audio=b"not audio\n" * 300, audio_ext="mp3")
        assert catalogue.audio_store is not None and lost.audio_path is not None
        catalogue.audio_store.path(lost.audio_path).unlink()
        current = current_version_id(registry)
        with catalogue.engine.begin() as connection:  # a NaN vector, as the old code stored
            connection.exec_driver_sql(
                "INSERT INTO track_vectors (track_id, model_version, dim, vector, computed_at)"
                " VALUES ('nan-samples', ?, 4, ?, '2026-01-01 00:00:00.000000')",
                (current, np.full(4, np.nan, "<f4").tobytes()),
            )
        record, _ = request_run(catalogue, "cli")
        assert claim_next(catalogue) is not None

    summary = run_pipeline(settings_for(registry, database_url=url, audio_store=store))
    assert summary.outcome == Outcome.PUBLISHED, summary.message
    bad = {"nan-samples", "lost-audio", "garbage"}
    assert set(summary.left_out) == bad and summary.left_out_count == 3
    assert summary.left_out["nan-samples"].startswith("invalid_samples: nan-samples.wav")
    assert summary.left_out["lost-audio"].startswith("missing_audio")
    assert summary.left_out["garbage"].startswith("undecodable: garbage.mp3")
    run_dir = Path(summary.run_dir)
    written = read_summary(run_dir / "summary.json")
    assert written is not None and set(written["left_out"]) == bad
    log = (run_dir / "pipeline.log").read_text()
    assert all(f"{track_id}: " in log for track_id in bad)
    version = load_current(registry)
    assert version.version_id == summary.version_id
    assert "good-cold" in version.index.space("content")
    assert not bad & set(version.index.space("content").ids())
    assert not bad & set(version.index.space("cf").ids())
    with open_catalogue(url, store) as catalogue:  # the scheduler's record of the run
        finish_run(
            catalogue,
            record.id,
            "published",
            exit_code=0,
            message=summary.message,
            version_id=summary.version_id,
            summary=written,
        )

    server = LiveServer(
        registry, database, tmp_path / "server.log", COLDSTART_AUDIO_STORE=str(store)
    )
    server.start()
    try:
        assert httpx.get(f"{server.url}/readyz", timeout=30.0).status_code == 200
        answer = httpx.post(
            f"{server.url}/v1/similar",
            params={"space": "content", "k": 1},
            files={"file": ("good.wav", good)},
            timeout=60.0,
        )
        assert answer.json()["results"][0]["id"] == "good-cold"
        detail = httpx.get(
            f"{server.url}/v1/admin/runs/{record.id}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30.0,
        ).json()
        assert set(detail["summary"]["left_out"]) == bad
    finally:
        server.stop()


def test_after_a_rollback_the_next_gate_compares_with_the_version_now_current(
    registry: Path, tiny_world: Path
) -> None:
    """V2 published by a nightly run, then rolled back to V1: the next night's candidate is
    warm-started from V1, gated against V1, and V2's recorded numbers are not its floor."""
    from pipeline.registry import activate_version

    first = current_version_id(registry)
    night = run_pipeline(settings_for(registry, dataset=tiny_world))
    assert night.outcome == Outcome.PUBLISHED, night.message
    second = night.version_id
    assert {score.version_id for score in recorded_scores(registry)} == {second}

    activate_version(registry, first, requested_by="cli:operator", note="V2 is bad")
    assert recorded_scores(registry) == []  # V2 withdrawn; V1 was published by hand
    next_night = run_pipeline(settings_for(registry, dataset=tiny_world))

    assert next_night.outcome == Outcome.PUBLISHED, next_night.message
    assert next_night.previous_version == first
    assert next_night.gate is not None and next_night.gate["current_version"] == first
    assert next_night.gate["floor"] == {}  # V2's numbers raise no bar
    assert next_night.gate["decided_by"] == "current"
    steps = {step.name: step.detail for step in next_night.steps}
    assert steps["factorize"]["warm_start_from"] == first
    assert load_current(registry).manifest["parents"]["version"] == first
