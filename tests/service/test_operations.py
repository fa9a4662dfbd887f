"""Health, readiness, metrics, the model table, settings, and what the service imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from service.app import create_app
from service.settings import Settings


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLDSTART_API_KEYS", " first-key , second-key ,,")
    monkeypatch.setenv("COLDSTART_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("COLDSTART_MAX_UPLOAD_BYTES", "123456")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == ["first-key", "second-key"]
    assert settings.registry == tmp_path / "reg" and settings.max_upload_bytes == 123456
    assert "first-key" not in repr(settings)
    assert not settings.read_requires_key
    assert settings.audio_store_dir() == Path("coldstart-catalogue.db.audio")


def test_production_fails_fast_without_good_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDSTART_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="COLDSTART_API_KEYS must be set"):
        Settings()
    monkeypatch.setenv("COLDSTART_API_KEYS", "short")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings()
    monkeypatch.setenv("COLDSTART_API_KEYS", "a-long-enough-production-key")
    assert Settings().environment == "production"


def test_without_a_published_version_the_service_is_up_but_not_ready(tmp_path: Path) -> None:
    settings = Settings(registry=tmp_path / "empty", database_url=f"sqlite:///{tmp_path / 'c.db'}")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "model_not_loaded"
        assert "coldstart publish" in ready.json()["error"]["message"]
        refused = client.post("/v1/similar", files={"file": ("a.mp3", b"abc")})
        assert refused.status_code == 503
        assert client.get("/v1/model").status_code == 503
        assert "coldstart_model_loaded 0.0" in client.get("/metrics").text


def test_read_key_when_asked_for(tmp_path: Path) -> None:
    settings = Settings(
        registry=tmp_path / "empty",
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
        api_keys=(SecretStr("reader-key"),),
        read_requires_key=True,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/model").status_code == 401
        answer = client.get("/v1/model", headers={"Authorization": "Bearer reader-key"})
        assert answer.status_code == 503  # past the key check; no model here
        assert client.get("/healthz").status_code == 200  # probes never need a key


@pytest.mark.slow
def test_ready_model_table_and_metrics(
    client: httpx.Client, registry: Any, audio_assets: Path
) -> None:
    ready = client.get("/readyz").json()
    assert ready["model_version"] == registry.version_id
    assert ready["songs"] == {"cf": 120, "content": 120}

    model = client.get("/v1/model").json()
    assert model["version"] == registry.version_id and model["created_at"]
    assert {"random", "upper_bound", "cnn"} <= set(model["evaluation"]["models"])
    assert model["architecture"] == "dieleman"
    assert model["evaluation"]["models"]["cnn"]["architecture"] == "dieleman"
    assert model["evaluation"]["models"]["random"]["architecture"] is None
    assert {"map", "auc", "recall@10", "ndcg@500"} <= set(model["evaluation"]["models"]["cnn"])
    assert model["counts"]["users"] > 0 and model["n_factors"] == 16
    assert set(model["parents"]) == {
        "factorization",
        "model:cnn",
        "model:artist",
        "model:hybrid",
        "report",
        "index",
    }

    audio = audio_assets / "trumpet_loop.ogg"
    client.post("/v1/similar", files={"file": (audio.name, audio.read_bytes())})
    client.get("/v1/tracks/no-such-song")
    text = client.get("/metrics").text
    assert 'coldstart_http_requests_total{method="POST",route="/v1/similar",status="200"}' in text
    assert 'route="/v1/tracks/{track_id}",status="404"' in text
    assert "no-such-song" not in text  # templates, not raw paths
    labels = f'created_at="{model["created_at"]}",version="{registry.version_id}"'
    assert f"coldstart_model_info{{{labels}}} 1.0" in text
    assert 'coldstart_stage_duration_seconds_count{stage="decode"}' in text
    assert (
        'coldstart_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/similar"}'
        in text
    )


@pytest.mark.slow
def test_serving_imports_neither_lightning_nor_implicit(
    registry: Any, audio_assets: Path, tmp_path: Path
) -> None:
    """The service loads the plain encoder and folds users in with numpy: requests through
    the whole app, in a fresh interpreter, leave no Lightning or implicit module behind."""
    song = json.loads(
        (registry.folder / "versions" / registry.version_id / "song_ids.json").read_text()
    )[0]
    script = f"""
import json, sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
settings = Settings(
    registry={str(registry.folder)!r}, database_url="sqlite:///{tmp_path}/c.db", api_keys="k" * 16
)
with TestClient(create_app(settings)) as client:
    audio = open({str(audio_assets / "vibe_ace.mp3")!r}, "rb").read()
    assert client.post("/v1/similar", files={{"file": ("a.mp3", audio)}}).status_code == 200
    listens = {{"listens": [{{"user_id": "new", "song_id": {song!r}}}]}}
    key = {{"Authorization": "Bearer " + "k" * 16}}
    assert client.post("/v1/listens", json=listens, headers=key).status_code == 200
    folded = client.get("/v1/users/new/recommendations").json()
    assert folded["user_vector"] == "folded_in", folded
heavy = {{"pytorch_lightning", "lightning", "lightning_fabric", "implicit"}}
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in heavy)))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_uvicorn_factory_keeps_the_services_own_log_lines(
    registry: Any, tmp_path: Path, log_format: str
) -> None:
    """As the compose stack starts it (`uvicorn --factory`, settings from the environment):
    the "now serving" line reaches the output, in text or one JSON object per line."""
    from tests.service.conftest import free_port

    port = free_port()
    env = {
        **os.environ,
        "COLDSTART_REGISTRY": str(registry.folder),
        "COLDSTART_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
        "COLDSTART_LOG_FORMAT": log_format,
        "COLDSTART_LOG_LEVEL": "INFO",
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    lines = log.read_text().splitlines()
    serving = f"now serving model version {registry.version_id}"
    if log_format == "text":
        assert any(f"INFO coldstart.service: {serving}" in line for line in lines), lines
        return
    # Every log line is one JSON object (uvicorn's too); Python's own warnings may not be.
    assert not [line for line in lines if line.startswith(("INFO", "WARNING", "ERROR"))]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    ours = [r for r in records if r["message"].startswith(serving)]
    assert ours and ours[0]["logger"] == "coldstart.service" and ours[0]["level"] == "INFO"
    assert any(r["logger"] == "uvicorn.access" and "/readyz" in r["message"] for r in records)


@pytest.mark.slow
def test_metrics_tell_the_served_versions_age_and_the_last_pipeline_run(
    start_server: Any, registry: Any
) -> None:
    from datetime import datetime

    from catalogue import open_catalogue
    from catalogue.runs import claim_next, finish_run, record_activation, request_run

    server = start_server().start()

    def metrics() -> dict[str, float]:
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(("coldstart_model_version_age", "coldstart_pipeline_last_run"))
        }

    before = metrics()
    created = datetime.fromisoformat(
        httpx.get(f"{server.url}/v1/model", timeout=30).json()["created_at"]
    )
    age = before["coldstart_model_version_age_seconds"]
    assert age == pytest.approx((datetime.now(created.tzinfo) - created).total_seconds(), abs=60)
    assert not any(name.startswith("coldstart_pipeline") for name in before)  # no run yet

    with open_catalogue(f"sqlite:///{server.database}") as catalogue:
        run, _ = request_run(catalogue, "cron")
        claim_next(catalogue)
        time.sleep(0.2)
        finished = finish_run(catalogue, run.id, "refused", exit_code=3, message="worse")
        record_activation(catalogue, "cli", registry.version_id, None)  # not a pipeline run
    after = metrics()
    assert after['coldstart_pipeline_last_run_status{status="refused"}'] == 1.0
    assert after['coldstart_pipeline_last_run_status{status="published"}'] == 0.0
    assert after["coldstart_pipeline_last_run_duration_seconds"] >= 0.2
    assert after["coldstart_pipeline_last_run_finished_timestamp_seconds"] == pytest.approx(
        finished.finished_at.timestamp(), abs=1e-3
    )
    assert after["coldstart_model_version_age_seconds"] > age
