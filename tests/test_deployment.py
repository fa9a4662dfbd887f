"""The deployment files: docker-compose.yml as Compose reads it, the load balancer's
configuration, and the Dockerfile's pins.

There is no Docker engine here: `docker-compose config` (Debian's docker-compose, which
`make test` installs) parses, interpolates and validates the file without one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
NGINX = REPO_ROOT / "deploy" / "nginx"
SECRETS = {"COLDSTART_API_KEYS": "a-key-of-sixteen-chars-or-more", "POSTGRES_PASSWORD": "s3cret"}


def compose_config(
    tmp_path: Path, extra_files: tuple[Path, ...] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` on the repository's file (and `extra_files` over it), with
    only `env` set (an empty --env-file: a developer's .env must not change the outcome)."""
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
            *(arg for extra in extra_files for arg in ("-f", str(extra))),
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


def test_compose_has_the_four_services_on_one_shared_volume(config):
    services = config["services"]
    assert set(services) == {"api", "lb", "scheduler", "postgres"}
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
    assert api["environment"]["COLDSTART_LOG_LEVEL"] == "INFO"  # the service's own lines kept
    assert api["environment"]["COLDSTART_LOG_FORMAT"] == "text"
    assert scheduler["command"] == ["scheduler"]
    assert scheduler["environment"]["COLDSTART_RETRAIN_CRON"] == "0 3 * * *"


def test_api_replicas_share_one_registry_and_database_behind_the_balancer(tmp_path, config):
    services = config["services"]
    api, lb = services["api"], services["lb"]
    assert "ports" not in api  # reached only through the balancer
    assert api["deploy"]["replicas"] == 2
    assert "--forwarded-allow-ips" in api["command"]
    assert api["command"][api["command"].index("--workers") + 1] == "2"  # COLDSTART_API_WORKERS
    # One service definition: every replica gets this registry, audio store and database.
    env = api["environment"]
    assert env["COLDSTART_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["COLDSTART_REGISTRY"].startswith(mount_of(api, "coldstart-data") + "/")
    assert env["COLDSTART_AUDIO_STORE"].startswith(mount_of(api, "coldstart-data") + "/")

    assert lb["image"].startswith("nginx:")
    assert lb["ports"] == ["0.0.0.0:8000:8080/tcp"]
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(lb["healthcheck"]["test"])
    mounts = dict(entry.split(":")[:2] for entry in lb["volumes"])
    assert mounts[str(NGINX / "templates")] == "/etc/nginx/templates"
    assert mounts[str(NGINX / "body-limit.envsh")].startswith("/docker-entrypoint.d/")
    assert mounts[str(NGINX / "body-limit.envsh")].endswith(".envsh")  # sourced: exports

    template = (NGINX / "templates" / "default.conf.template").read_text()
    port = api["command"][api["command"].index("--port") + 1]
    assert re.search(rf"^\s*server api:{port} resolve;", template, re.MULTILINE)
    assert re.search(r"^\s*listen 8080;", template, re.MULTILINE)
    assert re.search(r"^\s*proxy_pass http://coldstart_api;", template, re.MULTILINE)

    result = compose_config(
        tmp_path,
        **SECRETS,
        COLDSTART_API_REPLICAS="3",
        COLDSTART_PORT="9000",
        COLDSTART_BIND_ADDRESS="127.0.0.1",
    )
    assert result.returncode == 0, result.stderr
    scaled = yaml.safe_load(result.stdout)["services"]
    assert scaled["api"]["deploy"]["replicas"] == 3
    assert scaled["lb"]["ports"] == ["127.0.0.1:9000:8080/tcp"]


def body_limit_of_balancer(upload_bytes: str) -> int:
    """What the balancer's start-up script makes of the API's upload limit."""
    script = f". {NGINX / 'body-limit.envsh'} && echo $COLDSTART_LB_MAX_BODY_BYTES"
    result = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLDSTART_MAX_UPLOAD_BYTES": upload_bytes},
        check=True,
    )
    return int(result.stdout)


@pytest.mark.parametrize("upload_bytes", [None, "1048576"])
def test_the_balancer_takes_exactly_the_bodies_the_api_takes(tmp_path, upload_bytes):
    from service.settings import Settings
    from service.uploads import FORM_OVERHEAD_BYTES

    env = {} if upload_bytes is None else {"COLDSTART_MAX_UPLOAD_BYTES": upload_bytes}
    result = compose_config(tmp_path, **SECRETS, **env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    limit = services["api"]["environment"]["COLDSTART_MAX_UPLOAD_BYTES"]
    assert services["lb"]["environment"]["COLDSTART_MAX_UPLOAD_BYTES"] == limit
    expected = upload_bytes or str(Settings.model_fields["max_upload_bytes"].default)
    assert limit == expected
    # The API's cap on a body (service.app): the upload limit plus the form's envelope.
    assert body_limit_of_balancer(limit) == int(limit) + FORM_OVERHEAD_BYTES
    template = (NGINX / "templates" / "default.conf.template").read_text()
    assert "client_max_body_size ${COLDSTART_LB_MAX_BODY_BYTES};" in template
    assert os.access(NGINX / "body-limit.envsh", os.X_OK)  # the image sources only those


def test_compose_takes_the_schedule_from_the_environment_and_needs_the_secrets(tmp_path):
    result = compose_config(
        tmp_path, **SECRETS, COLDSTART_RETRAIN_CRON="30 1 * * 1-5", COLDSTART_LOG_FORMAT="json"
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["scheduler"]["environment"]["COLDSTART_RETRAIN_CRON"] == "30 1 * * 1-5"
    assert services["api"]["environment"]["COLDSTART_LOG_FORMAT"] == "json"

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
    pins = [dep for dep in project["dependencies"] if re.match(r"torch\b", dep)]
    # The build arguments' defaults: what every build but deploy/check's takes.
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.MULTILINE))
    assert pins == [f"torch=={defaults['TORCH_VERSION']}"]
    assert defaults["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert defaults["BASE_IMAGE"] == "python:3.11-slim"
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", dockerfile, re.MULTILINE)
    assert '"torch==$TORCH_VERSION"' in dockerfile
    assert '--index "$TORCH_INDEX"' in dockerfile  # torch from there, before PyPI
    # then the rest at the versions `make` installs (tests/test_lock.py), the project alone
    assert "-r /tmp/coldstart/requirements.lock" in dockerfile
    assert "--no-deps /tmp/coldstart" in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["coldstart"]' in dockerfile
    assert project["scripts"]["coldstart"] == "cli.main:app"


def test_the_build_context_leaves_out_environments_and_data():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".venv", "worlds", "runs", "registry", "data", ".git", ".env"} <= ignored


def test_the_deploy_check_swaps_only_what_no_registry_serves_here(tmp_path, config):
    """deploy/check's override (make deploy-check) changes the base image and the torch
    source of the build and the postgres and nginx images, nothing else."""
    standins = {
        "DEPLOY_CHECK_PYTHON_IMAGE": "local/python:3.11",
        "DEPLOY_CHECK_TORCH_INDEX": "https://pypi.org/simple",
        "DEPLOY_CHECK_POSTGRES_IMAGE": "local/postgres:15",
        "DEPLOY_CHECK_NGINX_IMAGE": "local/nginx:1.30",
    }
    override = REPO_ROOT / "deploy" / "check" / "compose.override.yml"
    result = compose_config(tmp_path, **SECRETS, **standins, extra_files=(override,))
    assert result.returncode == 0, result.stderr
    checked = yaml.safe_load(result.stdout)
    for name in ("api", "scheduler"):
        build = checked["services"][name].pop("build")
        assert build["network"] == "host"
        assert build["args"] == {
            "BASE_IMAGE": "local/python:3.11",
            "TORCH_INDEX": "https://pypi.org/simple",
        }
        assert config["services"][name].pop("build")["context"] == build["context"]
    assert checked["services"]["postgres"].pop("image") == "local/postgres:15"
    assert checked["services"]["lb"].pop("image") == "local/nginx:1.30"
    config["services"]["postgres"].pop("image")
    config["services"]["lb"].pop("image")
    for services in (checked["services"], config["services"]):
        services["lb"]["volumes"].sort()  # the merge reorders them
    assert checked == config
