"""The deployment files: docker-compose.yml as Compose reads it, and the Dockerfile's pins.

There is no Docker engine here: `docker-compose config` (Debian's docker-compose, which
`make test` installs) parses, interpolates and validates the file without one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"COLDSTART_API_KEYS": "a-key-of-sixteen-chars-or-more", "POSTGRES_PASSWORD": "s3cret"}


def compose_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` on the repository's file, with only `env` set (an empty
    --env-file: a developer's .env must not change the outcome)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed: run `make compose` (or `make test`), or"
            " `sudo apt-get install -y docker-compose`"
        )
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    return subprocess.run(
        [
            binary,
            "--env-file",
            str(empty_env),
            "-f",
            str(REPO_ROOT / "docker-compose.yml"),
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


@pytest.fixture()
def config(tmp_path: Path) -> dict[str, Any]:
    result = compose_config(tmp_path, **SECRETS)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def mount_of(service: dict[str, Any], volume: str) -> str:
    """Where `service` mounts the named `volume`."""
    for entry in service.get("volumes", []):  # docker-compose v1 prints "source:target:rw"
        source, target = entry.split(":")[:2]
        if source == volume:
            return target
    raise AssertionError(f"{volume} is not mounted: {service.get('volumes')}")


def test_compose_has_the_three_services_on_one_shared_volume(config):
    services = config["services"]
    assert set(services) == {"api", "scheduler", "postgres"}
    assert {"coldstart-data", "postgres-data"} <= set(config["volumes"])

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert mount_of(postgres, "postgres-data") == "/var/lib/postgresql/data"

    api, scheduler = services["api"], services["scheduler"]
    for service in (api, scheduler):
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        env = service["environment"]
        assert env["COLDSTART_DATABASE_URL"] == (
            "postgresql+psycopg://coldstart:s3cret@postgres:5432/coldstart"
        )
    shared = mount_of(api, "coldstart-data")
    assert mount_of(scheduler, "coldstart-data") == shared
    registry = api["environment"]["COLDSTART_REGISTRY"]
    assert scheduler["environment"]["COLDSTART_REGISTRY"] == registry
    assert registry.startswith(shared + "/")  # on the shared volume, not in one container
    audio = api["environment"]["COLDSTART_AUDIO_STORE"]
    assert scheduler["environment"]["COLDSTART_AUDIO_STORE"] == audio
    assert audio.startswith(shared + "/")

    assert [*api["entrypoint"], *api["command"]][:3] == [
        "uvicorn",
        "--factory",
        "service.app:create_app",
    ]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["environment"]["COLDSTART_API_KEYS"] == SECRETS["COLDSTART_API_KEYS"]
    assert api["environment"]["COLDSTART_ENVIRONMENT"] == "production"
    assert scheduler["command"] == ["scheduler"]
    assert scheduler["environment"]["COLDSTART_RETRAIN_CRON"] == "0 3 * * *"


def test_compose_takes_the_schedule_from_the_environment_and_needs_the_secrets(tmp_path):
    result = compose_config(tmp_path, **SECRETS, COLDSTART_RETRAIN_CRON="30 1 * * 1-5")
    assert result.returncode == 0, result.stderr
    scheduler = yaml.safe_load(result.stdout)["services"]["scheduler"]
    assert scheduler["environment"]["COLDSTART_RETRAIN_CRON"] == "30 1 * * 1-5"

    for missing in SECRETS:
        result = compose_config(tmp_path, **{k: v for k, v in SECRETS.items() if k != missing})
        assert result.returncode != 0 and f"set {missing}" in result.stderr


def test_the_commands_compose_runs_exist():
    import typer.main

    from cli.main import app
    from service.app import create_app

    names = {command.name for command in typer.main.get_command(app).commands.values()}
    assert {"scheduler", "retrain", "pipeline", "import"} <= names
    assert callable(create_app)


def test_the_dockerfile_pins_the_torch_of_pyproject():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(
        re.fullmatch(r"(torch|torchaudio)==(\S+)", dep).groups()
        for dep in project["dependencies"]
        if re.fullmatch(r"(torch|torchaudio)==\S+", dep)
    )
    assert set(pins) == {"torch", "torchaudio"}
    installed = dict(re.findall(r"\b(torch|torchaudio)==(\S+)", dockerfile))
    assert installed == pins
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cpu", dockerfile)
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["coldstart"]' in dockerfile
    assert project["scripts"]["coldstart"] == "cli.main:app"


def test_the_build_context_leaves_out_environments_and_data():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".venv", "worlds", "runs", "registry", "data", ".git", ".env"} <= ignored
