"""The real service under test: `coldstart serve` (uvicorn) in a subprocess on loopback.

The trained tiny run (`trained_run`) is published once per session into a registry; each
server gets its own SQLite catalogue, so tests that write (and the schemathesis run) do
not disturb one another. A test that publishes into the registry (hot swap) takes its own
copy (`own_registry`) and passes it as `registry_folder`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

API_KEY = "test-key-0123456789abcdef"
MAX_UPLOAD_BYTES = 3_000_000  # above every recording in tests/assets/audio
START_TIMEOUT_S = 180.0


@dataclass
class Registry:
    folder: Path
    version_id: str


@pytest.fixture(scope="session")
def registry(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    from pipeline.registry import publish_run

    folder = tmp_path_factory.mktemp("registry")
    return Registry(folder, publish_run(trained_run, folder))


@pytest.fixture
def own_registry(registry: Registry, tmp_path: Path) -> Registry:
    """A copy of the session's registry that one test may publish into (or break)."""
    folder = tmp_path / "registry"
    shutil.copytree(registry.folder, folder)
    return Registry(folder, registry.version_id)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """`coldstart serve` as a child process; `start()` waits until /healthz answers.
    `database`: a SQLite file, or a URL (replicas sharing PostgreSQL); `workers`: its
    worker processes (one unless a test asks for more)."""

    def __init__(
        self, registry: Path, database: Path | str, log: Path, workers: int = 1, **env: str
    ) -> None:
        self.registry = registry
        self.workers = workers
        self.database = database
        self.log = log
        self.env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "COLDSTART_API_KEYS": API_KEY,
            "COLDSTART_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
            **env,
        }
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.port = free_port()
        command = [
            sys.executable,
            "-c",
            "from cli.main import app; app()",
            "serve",
            "--registry",
            str(self.registry),
            "--database",
            self.database if isinstance(self.database, str) else f"sqlite:///{self.database}",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"the server did not answer within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop as an operator would (SIGINT: uvicorn finishes and runs the shutdown)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def start_server(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[type[LiveServer]]:
    """Make servers on the session's registry; each with its own catalogue, stopped at the end."""
    started: list[LiveServer] = []

    class SessionServer(LiveServer):
        def __init__(
            self,
            database: Path | str | None = None,
            registry_folder: Path | None = None,
            workers: int = 1,
            **env: str,
        ) -> None:
            folder = tmp_path_factory.mktemp("server")
            super().__init__(
                registry_folder or registry.folder,
                database or folder / "catalogue.db",
                folder / "server.log",
                workers,
                **env,
            )
            started.append(self)

    yield SessionServer
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server: type[LiveServer]) -> LiveServer:
    """The shared live server of the read-mostly tests."""
    return start_server().start()


@pytest.fixture(scope="session")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        yield http


@pytest.fixture(scope="session")
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="session")
def upload_limit() -> int:
    return MAX_UPLOAD_BYTES


def similar_ids(server: LiveServer, audio: Path, space: str = "cf") -> list[str]:
    """Ids of the 5 songs POST /v1/similar finds for `audio` in `space`."""
    response = httpx.post(
        f"{server.url}/v1/similar",
        params={"k": 5, "space": space},
        files={"file": (audio.name, audio.read_bytes())},
        timeout=60.0,
    )
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]
