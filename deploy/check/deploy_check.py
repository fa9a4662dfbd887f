"""`make deploy-check`: docker-compose.yml for real, on a private Docker engine.

It builds the image from the repository's Dockerfile and brings up the repository's
docker-compose.yml with deploy/check/compose.override.yml (local stand-ins only for what no
registry serves here), then drives the stack the way the README tells a user to, through
the balancer on a loopback port: not ready before a model; `coldstart import` of a tiny
world; a retrain through the API that the scheduler runs and publishes, served by every
replica, each saying so in `docker compose logs api`; /v1/similar on a recording; a track
added through one replica found through the others; a second retrain swapped in under a
request loop that must see no failure; the scheduler stopped during a run, which is
recorded as failed while the current version serves on; `down` and `up` keeping tracks,
listens and the model. Every wait is bounded.

The last line printed is `deploy-check: <containers> containers, <requests> requests,
<failed> failed, version <A> -> <B>`; the exit status is non-zero on any failure. Needs root
(dockerd), docker.io, docker-compose and debootstrap (`make deploy-check` installs them).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from deploy.check.engine import (
    CheckFailed,
    Engine,
    StandIns,
    build_standins,
    private_dockerd,
    run,
    torch_index,
)

REPO = Path(__file__).resolve().parents[2]
PROJECT = "coldstart-check"
DEFAULT_CACHE = Path("/var/tmp/coldstart-deploy-check")
# Small and quick: the check is about the deployment, not the model. A gate that lets
# every candidate through, so that the second retrain publishes and is swapped in.
PIPELINE_ARGS = (
    "--factors 16 --epochs 2 --fine-tune-epochs 1 --max-minutes 1 --workers 1"
    " --map-tolerance 1 --auc-tolerance 1"
)
WORLD_ARGS = ["--songs", "120", "--users", "300", "--clip-seconds", "6", "--seed", "0"]
# README "Deployment", "First start": the import of a dataset folder.
IMPORT_COMMAND = (
    'coldstart import --dataset /dataset --database "$COLDSTART_DATABASE_URL"'
    ' --audio-store "$COLDSTART_AUDIO_STORE"'
)
T = TypeVar("T")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 2) -> T:
    """`probe()` until it gives something other than None, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


class Traffic:
    """Every HTTP request of the check, counted; one whose answer is not what it must be
    (or that gets none) is a failed request."""

    def __init__(self) -> None:
        self.requests = 0
        self.failed = 0
        self._lock = threading.Lock()

    def count(self) -> None:
        """A probe whose answer may be anything (a readiness poll)."""
        with self._lock:
            self.requests += 1

    def call(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        expect: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        with self._lock:
            self.requests += 1
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            with self._lock:
                self.failed += 1
            raise CheckFailed(f"{method} {url}: {type(error).__name__}: {error}") from error
        if response.status_code not in expect:
            with self._lock:
                self.failed += 1
            raise CheckFailed(f"{method} {url}: {response.status_code} {response.text[:400]}")
        return response


@dataclass
class Stack:
    """The compose project on the private engine, and the ways into it."""

    engine: Engine
    env: dict[str, str]
    traffic: Traffic
    empty_env_file: Path
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))

    @property
    def balancer(self) -> str:
        return f"http://127.0.0.1:{self.env['COLDSTART_PORT']}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['COLDSTART_API_KEYS']}"}

    def compose(self, *args: str, timeout: float = 600) -> str:
        """`docker-compose ARGS` on docker-compose.yml + the check's override; its stdout."""
        command = [
            *compose_command(),
            "--project-name",
            PROJECT,
            "--project-directory",
            str(REPO),
            "--env-file",
            str(self.empty_env_file),  # a developer's .env must not change the check
            "-f",
            str(REPO / "docker-compose.yml"),
            "-f",
            str(REPO / "deploy" / "check" / "compose.override.yml"),
            *args,
        ]
        return run(command, env=self.env, timeout=timeout, cwd=REPO).stdout

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request through the balancer."""
        return self.traffic.call(self.client, method, self.balancer + path, **kwargs)

    def replicas(self) -> list[str]:
        """The API replicas' addresses on the project's network (http://IP:8000)."""
        ids = self.compose("ps", "-q", "api").split()
        urls = []
        for container in ids:
            address = self.engine.docker(
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                container,
            ).split()
            if address:
                urls.append(f"http://{address[0]}:8000")
        return urls

    def ready_version(self, base: str) -> str | None:
        """The version `base` serves, or None while it answers 503 (or not yet at all)."""
        self.traffic.count()
        try:
            response = self.client.get(base + "/readyz", timeout=10)
        except httpx.HTTPError:
            return None
        return response.json()["model_version"] if response.status_code == 200 else None

    def every_replica_serves(self, version: str, replicas: int, timeout: float = 180) -> None:
        def probe() -> bool | None:
            urls = self.replicas()
            served = [self.ready_version(url) for url in urls]
            return True if len(urls) == replicas and set(served) == {version} else None

        wait_for(f"all {replicas} replicas serving {version}", probe, timeout)

    def run_status(self, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/admin/runs/{run_id}", headers=self.auth).json()

    def retrain(self) -> str:
        response = self.call("POST", "/v1/admin/retrain", headers=self.auth, expect=(202,))
        return str(response.json()["run"]["id"])

    def wait_status(self, run_id: str, status: str, timeout: float) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            record = self.run_status(run_id)
            return record if record["status"] == status else None

        return wait_for(f"run {run_id} {status}", probe, timeout)

    def wait_finished(self, run_id: str, timeout: float = 1500) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            record = self.run_status(run_id)
            return record if record["status"] not in ("queued", "running") else None

        return wait_for(f"run {run_id} to end", probe, timeout, every=5)

    def psql(self, query: str) -> str:
        return self.compose(
            "exec", "-T", "postgres", "psql", "-U", "coldstart", "-d", "coldstart", "-tAc", query
        ).strip()

    def catalogue_counts(self) -> str:
        """Tracks, listens and plays in the catalogue, as one comparable string."""
        return self.psql(
            "SELECT (SELECT count(*) FROM tracks) || ' tracks, ' || count(*) || ' listens, '"
            " || coalesce(sum(count), 0) || ' plays' FROM listens"
        )


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) when the docker CLI has it, else v1 (`docker-compose`)."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise CheckFailed(
        "neither `docker compose` nor docker-compose: `apt-get install docker-compose`"
    )


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tone_recording(path: Path, seconds: float = 5.0, rate: int = 22050) -> Path:
    """A recording no catalogue has: a seeded chord of decaying partials, 16-bit mono wav."""
    rng = np.random.default_rng(14)
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(
        np.sin(2 * math.pi * f * t) * np.exp(-t * rng.uniform(0.2, 2.0))
        for f in rng.uniform(110, 880, size=6)
    )
    samples = (0.3 * signal / np.abs(signal).max() * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def make_world(folder: Path) -> Path:
    """The tiny world (host side, this checkout's code), readable by the image's user."""
    world = folder / "world"
    run(
        [
            sys.executable,
            "-c",
            "from cli.main import app; app()",
            "world",
            "--out",
            str(world),
            *WORLD_ARGS,
        ],
        timeout=900,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return world


@contextlib.contextmanager
def request_loop(stack: Stack, recording: Path, track_id: str) -> Iterator[dict[str, Any]]:
    """Requests through the balancer, one after another, for as long as the block runs (at
    most 30 min): uploads to /v1/similar and a track's neighbours. Yields the tally: the
    versions that answered, and the failures (which the check must not have)."""
    tally: dict[str, Any] = {"versions": set(), "requests": 0, "errors": []}
    stop = threading.Event()
    data = recording.read_bytes()

    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/similar?k=5", {"files": {"file": (recording.name, data)}}),
        ("GET", f"/v1/tracks/{track_id}/similar?k=5", {}),
    ]

    def loop() -> None:
        deadline = time.monotonic() + 1800
        with httpx.Client(timeout=120) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                for method, path, kwargs in requests:
                    tally["requests"] += 1
                    try:
                        body = stack.traffic.call(
                            client, method, stack.balancer + path, **kwargs
                        ).json()
                        tally["versions"].add(body["model_version"])
                    except CheckFailed as error:
                        tally["errors"].append(str(error))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield tally
    finally:
        stop.set()
        thread.join(timeout=300)


def check(stack: Stack, workdir: Path) -> tuple[str, str]:
    """The scenario of the module docstring; the versions of the first and second retrain."""
    replicas = 2
    # What an interrupted earlier run left (containers, volumes with its catalogue) goes first.
    stack.compose("down", "--volumes", "--remove-orphans", timeout=900)
    say("up: postgres, 2 api replicas, the balancer, the scheduler")
    stack.compose("up", "-d", timeout=900)

    def balancer_up() -> bool | None:
        try:
            return (
                True if stack.client.get(stack.balancer + "/healthz").status_code == 200 else None
            )
        except httpx.HTTPError:
            return None

    wait_for("the balancer to answer /healthz", balancer_up, 300)
    body = stack.call("GET", "/readyz", expect=(503,)).json()
    if body["error"]["code"] != "model_not_loaded":
        raise CheckFailed(f"/readyz before any model: {body}")
    say("/readyz: 503 model_not_loaded before a model exists")

    world = make_world(workdir)
    say("import: the tiny world, with the README's `docker compose run` line")
    stack.compose(
        "run",
        "--rm",
        "-v",
        f"{world}:/dataset:ro",
        "--entrypoint",
        "sh",
        "scheduler",
        "-c",
        IMPORT_COMMAND,
        timeout=600,
    )
    counts = stack.catalogue_counts()
    say(f"catalogue: {counts}")

    first = stack.retrain()
    say(f"retrain {first} queued through the API; the scheduler runs the pipeline")
    record = stack.wait_finished(first)
    if record["status"] != "published":
        raise CheckFailed(f"the first retrain did not publish: {record}")
    version_a = str(record["version_id"])
    stack.every_replica_serves(version_a, replicas)
    say(f"published {version_a}; both replicas serve it")
    # The service's own log lines reach the containers' output (uvicorn --factory alone
    # would drop them): each replica said what it serves.
    serving = f"coldstart.service: now serving model version {version_a}"
    said = stack.compose("logs", "--no-color", "api", timeout=120).count(serving)
    if said < replicas:
        raise CheckFailed(f"`docker compose logs api` holds {said} of {replicas} {serving!r} lines")
    say(f"docker compose logs api: each replica's {serving!r}")

    song = sorted((world / "audio").iterdir())[0]
    response = stack.call(
        "POST", "/v1/similar?k=5&space=content", files={"file": (song.name, song.read_bytes())}
    ).json()
    if response["model_version"] != version_a or response["results"][0]["id"] != song.stem:
        raise CheckFailed(f"/v1/similar of {song.name}: {response}")
    say(f"/v1/similar of {song.name} through the balancer: itself first")

    recording = tone_recording(workdir / "new-track.wav")
    one, *others = stack.replicas()
    created = stack.traffic.call(
        stack.client,
        "POST",
        one + "/v1/tracks",
        expect=(201,),
        headers=stack.auth,
        files={"file": (recording.name, recording.read_bytes())},
        data={"title": "Deploy check", "artist": "coldstart", "track_id": "deploy-check-1"},
    ).json()
    track_id = created["id"]

    def found_everywhere() -> bool | None:
        """The track's row, and its vector in the replica's index (a follower takes it in
        within a poll or two of the catalogue's change log)."""
        answers = [
            stack.traffic.call(stack.client, "GET", f"{url}{path}", expect=(200, 404))
            for url in others
            for path in (f"/v1/tracks/{track_id}", f"/v1/tracks/{track_id}/similar?k=3")
        ]
        return True if all(answer.status_code == 200 for answer in answers) else None

    wait_for(f"track {track_id} on the other replicas", found_everywhere, 60)
    listens = [
        {"user_id": f"check-user-{n}", "song_id": track_id, "count": n + 1} for n in range(3)
    ]
    stored = stack.call("POST", "/v1/listens", headers=stack.auth, json={"listens": listens}).json()
    if stored["stored"] != len(listens):
        raise CheckFailed(f"POST /v1/listens: {stored}")
    say(f"track {track_id} added through one replica is found through the other; 3 listens")

    with request_loop(stack, recording, track_id) as tally:
        second = stack.retrain()
        say(f"retrain {second} queued while requests run through the balancer")
        record = stack.wait_finished(second)
        if record["status"] != "published":
            raise CheckFailed(f"the second retrain did not publish: {record}")
        version_b = str(record["version_id"])
        stack.every_replica_serves(version_b, replicas)
        seen = tally["requests"]
        wait_for("requests after the swap", lambda: tally["requests"] >= seen + 4 or None, 300)
    if tally["errors"] or tally["versions"] != {version_a, version_b}:
        raise CheckFailed(f"the hot swap: {tally}")
    say(f"swapped to {version_b}: {tally['requests']} requests during the swap, none failed")

    third = stack.retrain()
    stack.wait_status(third, "running", timeout=120)
    time.sleep(2)  # inside the pipeline: the tiny one runs for about 15 s in all
    stack.compose("stop", "scheduler", timeout=600)
    record = stack.wait_status(third, "failed", timeout=120)
    stack.every_replica_serves(version_b, replicas, timeout=30)
    say(
        f"scheduler stopped during run {third}: recorded failed ({record['message']}); "
        f"{version_b} serves on"
    )

    counts = stack.catalogue_counts()
    stack.compose("down", timeout=900)
    stack.compose("up", "-d", timeout=900)
    wait_for("the balancer to answer /healthz again", balancer_up, 300)
    stack.every_replica_serves(version_b, replicas)
    stack.call("GET", f"/v1/tracks/{track_id}")
    if stack.catalogue_counts() != counts:
        raise CheckFailed(f"after down and up: {stack.catalogue_counts()}, before: {counts}")
    say(f"down and up: {counts}, track {track_id} and {version_b} all still there")
    return version_a, version_b


@contextlib.contextmanager
def container_starts(engine: Engine, log: Path) -> Iterator[Callable[[], int]]:
    """Follows the engine's start events of the compose project's containers (one-off runs
    too) into `log` while the block runs; yields a count of the distinct containers so far.
    Followed live: `docker events --since` replays only the last 256 events of any kind,
    and every healthcheck's exec adds some."""
    with log.open("w") as out:
        follower = subprocess.Popen(
            [
                "docker",
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=start",
                "--filter",
                f"label=com.docker.compose.project={PROJECT}",
                "--format",
                "{{.ID}}",
            ],
            env=engine.env,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield lambda: len(set(log.read_text().split()))
    finally:
        follower.terminate()
        follower.wait(timeout=30)


def build_image(stack: Stack) -> None:
    say("build: the repository's Dockerfile")
    started = time.monotonic()
    stack.compose("build", "api", timeout=3600)
    size = int(stack.engine.docker("image", "inspect", "-f", "{{.Size}}", "coldstart:latest"))
    say(f"built coldstart:latest in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB")


def stack_env(engine: Engine, standins: StandIns, torch_index_url: str) -> dict[str, str]:
    """What compose interpolates: the secrets, the loopback port, the pipeline's settings,
    and the override's stand-ins."""
    return {
        **engine.env,
        # compose v1 waits 60 s for an answer of the engine by default; creating a container
        # copies its whole image on vfs, which takes longer on a busy machine
        "COMPOSE_HTTP_TIMEOUT": "900",
        "COLDSTART_API_KEYS": secrets.token_hex(24),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "COLDSTART_BIND_ADDRESS": "127.0.0.1",
        "COLDSTART_PORT": str(free_loopback_port()),
        "COLDSTART_PIPELINE_ARGS": PIPELINE_ARGS,
        "DEPLOY_CHECK_PYTHON_IMAGE": standins.python,
        "DEPLOY_CHECK_POSTGRES_IMAGE": standins.postgres,
        "DEPLOY_CHECK_NGINX_IMAGE": standins.nginx,
        "DEPLOY_CHECK_TORCH_INDEX": torch_index_url,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("DEPLOY_CHECK_CACHE", DEFAULT_CACHE)),
        help=f"Docker's data root and the base images, kept between runs (default {DEFAULT_CACHE})",
    )
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("deploy-check: needs root (it runs its own dockerd)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on the way out
    options.cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    traffic = Traffic()
    outcome: dict[str, Any] = {"versions": ("-", "-"), "containers": 0, "failure": None}
    with (  # left in reverse: the stack's tear-down still has its env file and the lock
        tempfile.TemporaryDirectory(prefix="cdc-") as workdir,
        (options.cache / "lock").open("w") as lock,
        contextlib.ExitStack() as cleanup,
    ):
        fcntl.flock(lock, fcntl.LOCK_EX)  # one check at a time on this data root
        started_containers: Callable[[], int] | None = None
        try:
            engine = cleanup.enter_context(
                private_dockerd(options.cache, options.cache / "dockerd.log")
            )
            say(f"dockerd up (data root {options.cache / 'docker'})")
            started_containers = cleanup.enter_context(
                container_starts(engine, Path(workdir) / "starts.log")
            )
            standins = build_standins(engine, options.cache)
            index = torch_index()
            say(f"stand-ins built; torch from {index}")
            empty_env_file = Path(workdir) / "empty.env"
            empty_env_file.touch()
            stack = Stack(engine, stack_env(engine, standins, index), traffic, empty_env_file)
            cleanup.callback(tear_down, stack, outcome)
            build_image(stack)
            outcome["versions"] = check(stack, Path(workdir))
        except Exception as error:  # noqa: BLE001 - reported, and the exit status says it
            outcome["failure"] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
        finally:
            if started_containers is not None:
                time.sleep(1)  # the last start's event on its way
                outcome["containers"] = started_containers()
    if outcome["failure"]:
        print(f"deploy-check FAILED: {outcome['failure']}", file=sys.stderr, flush=True)
    say(f"deploy-check took {time.monotonic() - started:.0f} s")
    version_a, version_b = outcome["versions"]
    print(
        f"deploy-check: {outcome['containers']} containers, {traffic.requests} requests,"
        f" {traffic.failed} failed, version {version_a} -> {version_b}",
        flush=True,
    )
    return 1 if outcome["failure"] or traffic.failed else 0


def tear_down(stack: Stack, outcome: dict[str, Any]) -> None:
    """The project's containers, networks and volumes go (after a failure, their logs
    first), and the leftovers of earlier builds."""
    if outcome["failure"]:
        try:
            print(stack.compose("logs", "--no-color", "--tail", "80"), file=sys.stderr)
        except CheckFailed as error:
            print(f"deploy-check: no logs: {error}", file=sys.stderr)
    try:
        stack.compose("down", "--volumes", "--remove-orphans", timeout=900)
        # What a rebuild left behind (a failed step's container, the image it replaced):
        # the cache keeps only what the next run can use.
        stack.engine.docker("container", "prune", "--force", timeout=600)
        stack.engine.docker("image", "prune", "--force", timeout=600)
    except CheckFailed as error:
        print(f"deploy-check: tear-down: {error}", file=sys.stderr)
        outcome["failure"] = outcome["failure"] or f"tear-down: {error}"


if __name__ == "__main__":
    sys.exit(main())
