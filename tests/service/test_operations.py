"""Health, readiness, metrics, the model table, settings, and what the service imports."""

from __future__ import annotations

import json
import subprocess
import sys
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
    """The service loads the plain encoder: a request through the whole app, in a fresh
    interpreter, leaves no Lightning or implicit module behind."""
    script = f"""
import json, sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
settings = Settings(registry={str(registry.folder)!r}, database_url="sqlite:///{tmp_path}/c.db")
with TestClient(create_app(settings)) as client:
    audio = open({str(audio_assets / "vibe_ace.mp3")!r}, "rb").read()
    assert client.post("/v1/similar", files={{"file": ("a.mp3", audio)}}).status_code == 200
heavy = {{"pytorch_lightning", "lightning", "lightning_fabric", "implicit"}}
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in heavy)))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
