"""End to end: the nightly pipeline publishes, the live service swaps to it by itself, and a
track added through the API while the run was going is served by the new version."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from evaluation.gate import GateSettings
from pipeline.nightly import PipelineSettings, RunSummary, run_pipeline
from pipeline.outcome import Outcome
from tests.tiny import TINY_CNN

pytestmark = pytest.mark.slow


def test_pipeline_publishes_and_the_service_swaps_without_losing_a_track(
    start_server: Any,
    own_registry: Any,
    tiny_world: Path,
    audio_assets: Path,
    auth: dict[str, str],
) -> None:
    server = start_server(
        registry_folder=own_registry.folder, COLDSTART_MODEL_POLL_SECONDS="0.2"
    ).start()
    settings = PipelineSettings(
        registry=own_registry.folder,
        dataset=tiny_world,
        cnn=TINY_CNN,
        fine_tune_epochs=1,
        wmf_iterations=5,
        regularization=100.0,
        gate=GateSettings(map_tolerance=1.0, auc_tolerance=1.0),
        workers=1,
        run_id="nightly",
    )
    outcome: list[RunSummary] = []
    run = threading.Thread(target=lambda: outcome.append(run_pipeline(settings)))
    run.start()
    log = own_registry.folder / "pipeline" / "runs" / "nightly" / "pipeline.log"
    deadline = time.monotonic() + 240
    while "step train: started" not in (log.read_text() if log.is_file() else ""):
        assert run.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    recording = audio_assets / "trumpet_loop.ogg"
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        added = http.post(
            "/v1/tracks",
            headers=auth,
            files={"file": (recording.name, recording.read_bytes(), "audio/ogg")},
            data={"title": "Added mid-run", "artist": "Someone", "track_id": "mid-run"},
        )
        assert added.status_code == 201, added.text
        assert added.json()["model_version"] == own_registry.version_id
        run.join(timeout=300)
        summary = outcome[0]
        assert summary.outcome == Outcome.PUBLISHED, summary.message

        deadline = time.monotonic() + 90
        while http.get("/readyz").json().get("model_version") != summary.version_id:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        track = http.get("/v1/tracks/mid-run").json()
        assert track["spaces"] == ["cf", "content"] and track["new"] is True
        similar = http.get("/v1/tracks/mid-run/similar", params={"k": 5})
        assert similar.status_code == 200
        assert similar.json()["model_version"] == summary.version_id
        model = http.get("/v1/model").json()
        assert model["version"] == summary.version_id
        assert model["parents"]["version"] == own_registry.version_id
