"""A soak: mixed traffic on loopback at 1, 4 and 8 concurrent clients, a hot swap in the
middle of each phase; server errors, requests/s and p50/p99 per route, and the memory of
the server's processes from the end of the warm-up to the end of the run.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.soak --registry REG \\
        [--minutes 30] [--clients 1 4 8] [--workers 2] [--out soak.json]

REG must hold two finished versions (`coldstart publish` of one run twice makes them); the
soak works on a copy of it (version files hard-linked where the file system allows), so
REG itself is not written. `coldstart serve` runs in a child process on loopback with its
own SQLite catalogue in a temporary folder and a fresh write key. The phases run one after
the other on that one server, `--minutes` split evenly between them. Each client is a
thread with its own HTTP connection, looping over a seeded weighted mix:

- `POST /v1/similar` with a real recording of tests/assets/audio (six formats);
- `POST /v1/tracks` (a recording, with the write key), then later `DELETE /v1/tracks/{id}`
  of a track this client added (the rest at the end of the phase: the catalogue ends
  each phase as it began);
- `POST /v1/listens`: a batch of plays by users of the versions of their songs;
- `GET /v1/users/{id}/recommendations` and `GET /v1/tracks/{id}/similar` (k=10).

Halfway through each phase the other version is made current by
`POST /v1/admin/versions/{id}/activate`, which swaps the replica that answers it before
answering; then `/readyz` is read until it names that version (every worker's, with
several). Every request begun after that must be answered by the new version, every one
begun before the activation by the old one, and none may fail.

Memory: RSS and PSS of the server and all its descendants (the uvicorn workers, the
upload decoders' processes when the service runs them), from /proc every
`--sample-seconds`; growth is the last sample against the first after the warm-up (the
first minute or the first 10% of the run, whichever is shorter), with the RSS of each
service process, of the decode workers together and of the rest (the supervisor) at those
two samples, so that a growth names its process. Exit status 1 when a
request failed, a swap was not seen, the server died, or RSS grew by 10% or more.

(Run it as a module from the repository root: as a file, `bench/` would come first on
sys.path and shadow the packages.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.serving import (
    REPO_ROOT,
    Server,
    process_tree_memory_mib,
    process_tree_rss_by_process_mib,
)

ASSETS = REPO_ROOT / "tests" / "assets" / "audio"
RECORDINGS = (
    "vibe_ace.mp3",
    "lets_go_fishin.m4a",
    "sugar_plum_fairy.wav",
    "trumpet_loop.ogg",
    "asc_game_theme.mp3",
    "warzone_track.opus",
)
K = 10
LISTENS_PER_BATCH = 5
REQUEST_TIMEOUT_S = 120.0
SWAP_TIMEOUT_S = 120.0
WARM_UP_MAX_S = 60.0
WARM_UP_FRACTION = 0.1
# route: (weight in the mix, the status that answers it right)
ROUTES: dict[str, tuple[int, int]] = {
    "similar": (2, 200),
    "add_track": (1, 201),
    "delete_track": (1, 204),
    "listens": (3, 200),
    "recommendations": (4, 200),
    "track_similar": (4, 200),
}
ROUTE_LABELS = {
    "similar": "POST /v1/similar",
    "add_track": "POST /v1/tracks",
    "delete_track": "DELETE /v1/tracks/{id}",
    "listens": "POST /v1/listens",
    "recommendations": "GET /v1/users/{id}/recommendations",
    "track_similar": "GET /v1/tracks/{id}/similar",
}


@dataclass(frozen=True)
class Population:
    """Who and what the clients ask about: users and warm songs (held at their WMF
    factors) that both versions have, and the recordings they upload as (name, bytes)."""

    users: list[str]
    songs: list[str]
    recordings: list[tuple[str, bytes]]


def population(registry: Path, versions: tuple[str, str]) -> Population:
    """The users and warm songs common to both `versions` of `registry`, sorted."""
    users: set[str] | None = None
    songs: set[str] | None = None
    for version_id in versions:
        folder = registry / "versions" / version_id
        version_users = {str(u) for u in json.loads((folder / "user_ids.json").read_text())}
        cold = set(json.loads((folder / "cold_song_ids.json").read_text()))
        ids = json.loads((folder / "index" / "cf_cosine" / "ids.json").read_text())
        warm = {str(s) for s in ids if s is not None and s not in cold}
        users = version_users if users is None else users & version_users
        songs = warm if songs is None else songs & warm
    if not users or not songs:
        raise ValueError(f"versions {versions} share no users or no warm songs")
    recordings = [(name, (ASSETS / name).read_bytes()) for name in RECORDINGS]
    return Population(sorted(users), sorted(songs), recordings)


@dataclass(frozen=True)
class Answer:
    """One request: when it began (monotonic s), how long it took, its status (0: no
    answer, a transport error) and the model version its body names (None: none)."""

    route: str
    started: float
    seconds: float
    status: int
    version: str | None


@dataclass
class SoakClient:
    """One client: a connection of its own, a seeded mix of requests, the tracks it added
    and not yet deleted, and every answer it got."""

    number: int
    url: str
    api_key: str
    population: Population
    seed: int
    answers: list[Answer] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed * 1_000 + self.number)
        names = list(ROUTES)
        weights = [weight for weight, _ in ROUTES.values()]
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as http:
            while not stop.is_set():
                route = rng.choices(names, weights)[0]
                if route == "delete_track" and not self.added:
                    route = "add_track"
                self._call(http, route, rng)
            while self.added:
                self._call(http, "delete_track", rng)

    def _call(self, http: httpx.Client, route: str, rng: random.Random) -> None:
        auth = {"Authorization": f"Bearer {self.api_key}"}
        users, songs = self.population.users, self.population.songs
        started = time.monotonic()
        try:
            if route == "similar":
                name, data = rng.choice(self.population.recordings)
                response = http.post("/v1/similar", params={"k": K}, files={"file": (name, data)})
            elif route == "add_track":
                name, data = rng.choice(self.population.recordings)
                response = http.post(
                    "/v1/tracks",
                    files={"file": (name, data)},
                    data={"title": f"soak {self.number} {len(self.answers)}", "artist": "soak"},
                    headers=auth,
                )
            elif route == "delete_track":
                response = http.delete(f"/v1/tracks/{self.added.pop(0)}", headers=auth)
            elif route == "listens":
                plays = [
                    {"user_id": rng.choice(users), "song_id": rng.choice(songs), "count": 1}
                    for _ in range(LISTENS_PER_BATCH)
                ]
                response = http.post("/v1/listens", json={"listens": plays}, headers=auth)
            elif route == "recommendations":
                response = http.get(
                    f"/v1/users/{rng.choice(users)}/recommendations", params={"k": K}
                )
            else:
                response = http.get(f"/v1/tracks/{rng.choice(songs)}/similar", params={"k": K})
        except httpx.TransportError:
            self.answers.append(Answer(route, started, time.monotonic() - started, 0, None))
            return
        seconds = time.monotonic() - started
        version = None
        if response.status_code in (200, 201) and route != "listens":
            body = response.json()
            version = body.get("model_version")
            if route == "add_track":
                self.added.append(str(body["id"]))
        self.answers.append(Answer(route, started, seconds, response.status_code, version))


@dataclass(frozen=True)
class Swap:
    """A hot swap: activation asked at `asked`, answered at `answered` (monotonic s), and
    every worker's /readyz naming `version` from `served`."""

    version: str
    previous: str
    asked: float
    answered: float
    served: float
    status: int


def hot_swap(url: str, api_key: str, version: str, previous: str, workers: int) -> Swap:
    """Make `version` current through the admin route, then read /readyz until `workers`
    distinct workers in a row name it (fresh connections land on any worker)."""
    asked = time.monotonic()
    response = httpx.post(
        f"{url}/v1/admin/versions/{version}/activate",
        json={"note": "soak"},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=SWAP_TIMEOUT_S,
    )
    answered = time.monotonic()
    if response.status_code != 200 or response.json()["serving"] != version:
        return Swap(version, previous, asked, answered, float("nan"), response.status_code)
    seen: set[int] = set()
    deadline = answered + SWAP_TIMEOUT_S
    while len(seen) < workers and time.monotonic() < deadline:
        ready = httpx.get(f"{url}/readyz", timeout=10.0).json()
        if ready.get("model_version") == version:
            seen.add(ready["worker"])
        else:
            seen.clear()
        time.sleep(0.05)
    served = time.monotonic() if len(seen) >= workers else float("nan")
    return Swap(version, previous, asked, answered, served, response.status_code)


class MemorySampler:
    """RSS and PSS of the server's process tree every `every_s` seconds, in a thread:
    rows of (seconds since start, rss MiB, pss MiB, processes), and beside each the RSS
    split by process (`process_tree_rss_by_process_mib`)."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid = pid
        self.every_s = every_s
        self.samples: list[tuple[float, float, float, int]] = []
        self.split: list[dict[str, float]] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            memory = process_tree_memory_mib(self.pid)
            self.split.append(process_tree_rss_by_process_mib(self.pid))
            self.samples.append(
                (
                    time.monotonic() - self.started,
                    memory["rss_mib"],
                    memory["pss_mib"],
                    int(memory["processes"]),
                )
            )
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def rss_between(self, start: float, end: float) -> tuple[float, float]:
        """RSS (MiB) of the first and the last sample taken between the monotonic times
        `start` and `end`."""
        inside = [s[1] for s in self.samples if start <= self.started + s[0] <= end]
        return (inside[0], inside[-1]) if inside else (float("nan"), float("nan"))

    def growth(self, warm_up_s: float) -> dict[str, float]:
        """The first sample at or after `warm_up_s` against the last, in MiB and percent;
        `by_process`: each process's (or kind of process's) RSS at those two samples."""
        warm_at = next((i for i, s in enumerate(self.samples) if s[0] >= warm_up_s), None)
        if warm_at is None or warm_at == len(self.samples) - 1:
            raise ValueError(f"no samples after a warm-up of {warm_up_s:.0f} s")
        warm, end = self.samples[warm_at], self.samples[-1]
        split_warm, split_end = self.split[warm_at], self.split[-1]
        return {
            "warm_up_s": warm_up_s,
            "rss_start_mib": self.samples[0][1],
            "rss_warm_mib": warm[1],
            "rss_end_mib": end[1],
            "rss_max_mib": max(s[1] for s in self.samples),
            "pss_warm_mib": warm[2],
            "pss_end_mib": end[2],
            "rss_growth_pct": 100.0 * (end[1] - warm[1]) / warm[1],
            "processes_end": end[3],
            "by_process": {
                name: [split_warm.get(name, 0.0), split_end.get(name, 0.0)]
                for name in sorted(split_warm.keys() | split_end.keys())
            },
        }


def route_figures(answers: list[Answer], seconds: float) -> dict[str, dict[str, Any]]:
    """Per route: requests, requests/s over the phase, p50/p99 ms, status counts,
    transport errors and answers other than the route's right one."""
    figures: dict[str, dict[str, Any]] = {}
    for route, (_, expected) in ROUTES.items():
        mine = [a for a in answers if a.route == route]
        latencies_ms = np.array([a.seconds * 1e3 for a in mine])
        statuses = Counter(a.status for a in mine)
        figures[route] = {
            "requests": len(mine),
            "rps": len(mine) / seconds,
            "p50_ms": float(np.percentile(latencies_ms, 50)) if mine else float("nan"),
            "p99_ms": float(np.percentile(latencies_ms, 99)) if mine else float("nan"),
            "statuses": {str(code): n for code, n in sorted(statuses.items())},
            "server_errors": sum(n for code, n in statuses.items() if code >= 500),
            "transport_errors": statuses.get(0, 0),
            "unexpected": sum(n for code, n in statuses.items() if code != expected),
        }
    return figures


def swap_check(answers: list[Answer], swap: Swap) -> dict[str, Any]:
    """Which versions answered the requests begun before the activation and those begun
    once every worker served the new version; requests in between may get either."""
    before = Counter(a.version for a in answers if a.version and a.started < swap.asked)
    after = Counter(a.version for a in answers if a.version and a.started >= swap.served)
    return {
        "version": swap.version,
        "previous": swap.previous,
        "status": swap.status,
        "activate_ms": (swap.answered - swap.asked) * 1e3,
        "served_after_ms": (swap.served - swap.asked) * 1e3,
        "before": dict(before),
        "after": dict(after),
        "observed": bool(
            swap.status == 200 and set(before) == {swap.previous} and set(after) == {swap.version}
        ),
    }


def run_phase(
    url: str,
    api_key: str,
    people: Population,
    clients: int,
    seconds: float,
    swap_to: tuple[str, str],
    workers: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """`clients` clients for `seconds`, a hot swap from `swap_to[1]` to `swap_to[0]` at
    half time; the figures of each route and of the swap."""
    stop = threading.Event()
    soak_clients = [SoakClient(n, url, api_key, people, seed) for n in range(clients)]
    threads = [threading.Thread(target=c.run, args=(stop,), daemon=True) for c in soak_clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(seconds / 2)
    swap = hot_swap(url, api_key, *swap_to, workers)
    stop.wait(max(0.0, started + seconds - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_S * 2)
    elapsed = time.monotonic() - started
    answers = [answer for client in soak_clients for answer in client.answers]
    routes = route_figures(answers, elapsed)
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(answers),
        "rps": len(answers) / elapsed,
        "routes": routes,
        "server_errors": sum(r["server_errors"] for r in routes.values()),
        "transport_errors": sum(r["transport_errors"] for r in routes.values()),
        "unexpected": sum(r["unexpected"] for r in routes.values()),
        "swap": swap_check(answers, swap),
        "clients_stuck": sum(thread.is_alive() for thread in threads),
    }


def soak(
    url: str,
    api_key: str,
    registry: Path,
    pid: int,
    clients: list[int],
    seconds_per_phase: float,
    workers: int = 1,
    sample_seconds: float = 5.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The phases, one per client count, on the server at `url` (process `pid`, serving
    one of `registry`'s two newest versions and swapping between them); the figures of
    each phase, the memory over the whole run, and whether /healthz still answers."""
    from pipeline.registry.read import current_version_or_none, list_versions

    current = current_version_or_none(registry)
    others = [v for v in list_versions(registry) if v != current]
    if current is None or not others:
        raise ValueError(f"{registry} needs a current version and another finished one")
    serving, spare = current, others[-1]
    people = population(registry, (serving, spare))
    phases = []
    total_s = seconds_per_phase * len(clients)
    with MemorySampler(pid, sample_seconds) as memory:
        for number, count in enumerate(clients):
            phase_started = time.monotonic()
            phase = run_phase(
                url,
                api_key,
                people,
                count,
                seconds_per_phase,
                (spare, serving),
                workers,
                seed * 100 + number,
            )
            phase["rss_mib"] = memory.rss_between(phase_started, time.monotonic())
            phases.append(phase)
            print(phase_report(phase), flush=True)
            if phase["swap"]["status"] == 200:
                serving, spare = spare, serving
    healthz = httpx.get(f"{url}/healthz", timeout=10.0).status_code
    return {
        "versions": [current, others[-1]],
        "users": len(people.users),
        "songs": len(people.songs),
        "phases": phases,
        "memory": memory.growth(min(WARM_UP_MAX_S, WARM_UP_FRACTION * total_s)),
        "memory_samples": memory.samples,
        "memory_split": memory.split,
        "healthz_after": healthz,
    }


def phase_report(phase: dict[str, Any]) -> str:
    """A phase's rows of the BENCHMARKS table and a line about its swap."""
    rows = []
    for route, figures in phase["routes"].items():
        others = {code: n for code, n in figures["statuses"].items() if code[0] != "2"}
        rows.append(
            f"| {phase['clients']} | `{ROUTE_LABELS[route]}` | {figures['requests']:,}"
            f" | {figures['rps']:.1f} | {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f}"
            f" | {others or 0} |"
        )
    swap = phase["swap"]
    rows.append(
        f"{phase['clients']} clients, {phase['seconds']:.0f} s: {phase['requests']:,} requests"
        f" ({phase['rps']:.1f}/s), {phase['server_errors']} server errors,"
        f" {phase['transport_errors']} transport errors, {phase['unexpected']} unexpected;"
        f" swap to {swap['version']}: {swap['status']} in {swap['activate_ms']:.0f} ms,"
        f" observed {swap['observed']} (before {swap['before']}, after {swap['after']});"
        f" RSS {phase['rss_mib'][0]:.0f} -> {phase['rss_mib'][1]:.0f} MiB"
    )
    return "\n".join(rows)


def registry_copy(registry: Path, folder: Path) -> Path:
    """A copy of `registry` at `folder` that an activation may write: its top-level files
    (the `current` pointer, the activation log) copied, the versions' files hard-linked
    where the file system allows (no one writes them), else copied."""

    def link_or_copy(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    def versions_at_top(where: str, names: list[str]) -> list[str]:
        return ["versions"] if Path(where) == registry else []

    shutil.copytree(registry, folder, ignore=versions_at_top)
    shutil.copytree(registry / "versions", folder / "versions", copy_function=link_or_copy)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, required=True, help="Two finished versions.")
    parser.add_argument("--minutes", type=float, default=30.0, help="In all, split by phase.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="`coldstart serve --workers` (default 2: what it starts on 2 cores, as compose does).",
    )
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON.")
    args = parser.parse_args()

    api_key = secrets.token_hex(16)
    seconds_per_phase = args.minutes * 60 / len(args.clients)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        registry = registry_copy(args.registry, Path(tmp) / "registry")
        server = Server(
            registry,
            args.workers,
            Path(tmp) / "server",
            COLDSTART_API_KEYS=api_key,
            COLDSTART_MODEL_POLL_SECONDS="1",
        )
        try:
            server.wait_ready()
            print(
                f"{len(os.sched_getaffinity(0))} CPUs, load average {load_start};"
                f" {args.workers} worker(s); {len(args.clients)} phases of"
                f" {seconds_per_phase:.0f} s\n| clients | route | requests | req/s | p50 ms"
                " | p99 ms | non-2xx |\n|---:|---|---:|---:|---:|---:|---|",
                flush=True,
            )
            results = soak(
                server.url,
                api_key,
                registry,
                server.process.pid,
                args.clients,
                seconds_per_phase,
                args.workers,
                args.sample_seconds,
                args.seed,
            )
            results["server_alive"] = server.process.poll() is None
        finally:
            server.stop()
    results.update(
        date=started,
        cpus=len(os.sched_getaffinity(0)),
        workers=args.workers,
        loadavg_start=load_start,
        loadavg_end=os.getloadavg(),
    )
    memory = results["memory"]
    failed = sum(p["server_errors"] + p["transport_errors"] for p in results["phases"])
    swaps = sum(p["swap"]["observed"] for p in results["phases"])
    print(
        f"RSS of the server's {memory['processes_end']} process(es): {memory['rss_start_mib']:.0f}"
        f" MiB at start, {memory['rss_warm_mib']:.0f} after the {memory['warm_up_s']:.0f}-s"
        f" warm-up, {memory['rss_end_mib']:.0f} at the end (max {memory['rss_max_mib']:.0f}):"
        f" {memory['rss_growth_pct']:+.1f}%; {failed} failed requests; {swaps} of"
        f" {len(results['phases'])} swaps observed; server alive {results['server_alive']};"
        f" load average at the end {results['loadavg_end']}"
    )
    print(
        "RSS by process after the warm-up -> at the end: "
        + "; ".join(
            f"{name} {warm:.0f} -> {end:.0f} MiB"
            for name, (warm, end) in memory["by_process"].items()
        )
    )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    passed = (
        failed == 0
        and swaps == len(results["phases"])
        and results["server_alive"]
        and memory["rss_growth_pct"] < 10.0
    )
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
