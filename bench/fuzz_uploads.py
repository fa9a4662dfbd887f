"""Fuzzed uploads to both upload routes of a live server: every answer by status and code,
server errors, uploads/s, and the server's memory as the uploads go on.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.fuzz_uploads --registry REG \\
        [--files 2000] [--seed 0] [--warm-up 200] [--every 100] [--routes similar tracks]
        [--corpus-out DIR] [--out F]

`coldstart serve --workers 1` runs in a child process on loopback with its own SQLite
catalogue in a temporary folder (`bench.serving.Server`: default settings, a write key).
Each of `--files` fuzzed recordings (`tests.fuzz_audio.fuzz_corpus(files, seed)`: the test
recordings with flipped, cut, spliced, repeated, deleted or zeroed bytes) goes to `POST
/v1/similar`, then to `POST /v1/tracks` (`--routes`: one of them alone); a track that is
added is checked whole (row, vector, event) and deleted again, and a refused add must leave
the catalogue as it was (`tests.service.upload_answers.catalogue_state`). Counted: answers
per route, status and code; 5xx answers; answers that are not a 2xx or a 4xx in the error
shape with a stable code; refused adds that left something behind (and any temporary file of
the audio store's writes left at the end); requests that got no answer. Every `--every`
uploads: `/healthz`, and the RSS (and PSS) of the server process and all its descendants
(decode workers included), and the RSS of the service process alone; the growth is the last
sample over the first one after `--warm-up` uploads. Exit status 1 when any of those counts is
not 0.

Registry: any with a current version; the figures in BENCHMARKS.md used the tests' tiny
world (`coldstart world --songs 120 --users 300 --clip-seconds 6 --seed 7`, `featurize`,
`factorize --factors 16`, `train --epochs 1 --crops-per-song 2 --no-linear --no-kmeans`,
`evaluate`, `publish`).

(Run it as a module from the repository root: as a file, `bench/` would come first on
sys.path and shadow the packages; it imports the corpus and the answer checks from
tests/.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.serving import Server
from tests.fuzz_audio import FuzzCase, fuzz_corpus, write_corpus
from tests.service.upload_answers import STABLE_CODES, add_track, added_whole, catalogue_state

API_KEY = "bench-fuzz-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
K = 3
ROUTES = ("similar", "tracks")


class Tally:
    """Every answer and every broken promise, as the run goes."""

    def __init__(self) -> None:
        self.answers: Counter[tuple[str, int, str]] = Counter()  # (route, status, code)
        self.latency_s: dict[str, list[float]] = {route: [] for route in ROUTES}
        self.unexpected: list[str] = []  # answers outside the contract, by case
        self.left_behind: list[str] = []  # refused adds that changed the catalogue
        self.no_answer: list[str] = []  # transport errors: the server did not answer
        self.memory: list[dict[str, float]] = []

    def answer(self, route: str, case: FuzzCase, response: httpx.Response, seconds: float) -> str:
        """Count `response`; its code ("ok" for a success)."""
        self.latency_s[route].append(seconds)
        code = "ok" if response.status_code < 300 else _error_code(response)
        self.answers[route, response.status_code, code] += 1
        if response.status_code >= 500 or (code != "ok" and code not in STABLE_CODES):
            self.unexpected.append(f"{route} {case.name} ({case.mutation}): {response.text[:300]}")
        return code

    def server_errors(self) -> int:
        return sum(n for (_, status, _), n in self.answers.items() if status >= 500)

    def failures(self) -> int:
        return len(self.unexpected) + len(self.left_behind) + len(self.no_answer)


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return str(error["code"]) if error.get("message") else "(no message)"
    except (ValueError, KeyError, TypeError):
        return "(not the error shape)"


def upload(http: httpx.Client, database: Path, case: FuzzCase, tally: Tally, route: str) -> None:
    """`case` to `route`; an added track is checked whole and deleted, a refused add must
    leave `database` as it was."""
    before = catalogue_state(database) if route == "tracks" else None
    started = time.perf_counter()
    try:
        if route == "similar":
            files = {"file": (case.filename, case.data)}
            response = http.post("/v1/similar", params={"k": K}, files=files)
        else:
            response = add_track(http, case.filename, case.data, f"fuzzed {case.name}", AUTH)
    except httpx.TransportError as error:
        tally.no_answer.append(f"{route} {case.name}: {error!r}")
        return
    code = tally.answer(route, case, response, time.perf_counter() - started)
    if before is None:
        return
    after = catalogue_state(database)
    if code != "ok":
        if after != before:
            tally.left_behind.append(f"{case.name} ({case.mutation}): {code}")
        return
    track_id = response.json()["id"]
    if not added_whole(before, after, track_id):
        tally.unexpected.append(f"tracks {case.name}: {track_id!r} not added whole")
    deleted = http.delete(f"/v1/tracks/{track_id}", headers=AUTH)
    if deleted.status_code != 204:
        tally.unexpected.append(f"delete {track_id!r}: {deleted.status_code} {deleted.text}")


def sample(server: Server, http: httpx.Client, tally: Tally, uploads: int, started: float) -> None:
    """The server's memory now, and whether it is healthy."""
    healthy = http.get("/healthz").status_code == 200
    memory = {
        "uploads": uploads,
        "seconds": time.perf_counter() - started,
        **server.memory_mib(),
        "service_rss_mib": vm_rss_mib(server.process.pid),
    }
    tally.memory.append(memory)
    if not healthy:
        tally.no_answer.append(f"/healthz not 200 after {uploads} uploads")
    print(
        f"{uploads:>6} uploads {memory['seconds']:7.1f} s  RSS {memory['rss_mib']:7.1f} MiB"
        f" (the service process {memory['service_rss_mib']:7.1f} MiB)"
        f"  PSS {memory['pss_mib']:7.1f} MiB  processes {memory['processes']:.0f}",
        flush=True,
    )


def vm_rss_mib(pid: int) -> float:
    """The resident set of `pid` alone (its children left out), MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        / 1024
    )


def run(
    registry: Path, cases: list[FuzzCase], every: int, routes: list[str]
) -> tuple[Tally, float]:
    """Every case to each of `routes` on a fresh server; the tally and the seconds it took."""
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        server = Server(registry, 1, Path(tmp) / "server", COLDSTART_API_KEYS=API_KEY)
        try:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=300.0) as http:
                started = time.perf_counter()
                sample(server, http, tally, 0, started)
                uploads = 0
                for case in cases:
                    for route in routes:
                        upload(http, server.database, case, tally, route)
                        uploads += 1
                        if server.process.poll() is not None:
                            tally.no_answer.append(f"the server exited at {case.name}")
                            return tally, time.perf_counter() - started
                        if uploads % every == 0:
                            sample(server, http, tally, uploads, started)
                elapsed = time.perf_counter() - started
                if uploads % every:
                    sample(server, http, tally, uploads, started)
            incoming = Path(f"{server.database}.audio") / ".incoming"
            if incoming.exists():  # the temporary files of the store's writes
                tally.left_behind.extend(f"{p.name} in {incoming}" for p in incoming.iterdir())
        finally:
            server.stop()
    return tally, elapsed


def figures(tally: Tally, seconds: float, warm_up: int) -> dict[str, Any]:
    uploads = sum(tally.answers.values())
    warm = next((m for m in tally.memory if m["uploads"] >= warm_up), tally.memory[-1])
    end = tally.memory[-1]
    return {
        "uploads": uploads,
        "seconds": seconds,
        "uploads_per_s": uploads / seconds,
        "server_errors": tally.server_errors(),
        "unexpected": len(tally.unexpected),
        "left_behind": len(tally.left_behind),
        "no_answer": len(tally.no_answer),
        "answers": [
            {"route": route, "status": status, "code": code, "count": n}
            for (route, status, code), n in sorted(tally.answers.items())
        ],
        "latency_ms": {
            route: {
                "p50": float(np.percentile(np.asarray(values) * 1e3, 50)),
                "p99": float(np.percentile(np.asarray(values) * 1e3, 99)),
            }
            for route, values in tally.latency_s.items()
            if values
        },
        "rss_mib": {"start": tally.memory[0]["rss_mib"], "warm": warm, "end": end},
        "rss_growth_after_warm_up": end["rss_mib"] / warm["rss_mib"] - 1.0,
        "service_rss_growth_after_warm_up": end["service_rss_mib"] / warm["service_rss_mib"] - 1.0,
        "memory": tally.memory,
    }


def report(result: dict[str, Any]) -> None:
    print("\n| route | status | code | answers |\n|---|---:|---|---:|")
    for row in result["answers"]:
        print(f"| {row['route']} | {row['status']} | {row['code']} | {row['count']:,} |")
    rss = result["rss_mib"]
    latency = "; ".join(
        f"{route} p50 {v['p50']:.0f} ms, p99 {v['p99']:.0f} ms"
        for route, v in result["latency_ms"].items()
    )
    print(
        f"\n{result['uploads']:,} uploads of {result['files']:,} files (seed {result['seed']}) in"
        f" {result['seconds']:.1f} s: {result['uploads_per_s']:.2f} uploads/s; {latency}\n"
        f"5xx: {result['server_errors']}; outside the contract: {result['unexpected']};"
        f" refused adds that left something: {result['left_behind']};"
        f" no answer: {result['no_answer']}\n"
        f"RSS (server + children): start {rss['start']:.1f} MiB, after"
        f" {rss['warm']['uploads']} uploads {rss['warm']['rss_mib']:.1f} MiB, at the end"
        f" ({rss['end']['uploads']}) {rss['end']['rss_mib']:.1f} MiB:"
        f" {100 * result['rss_growth_after_warm_up']:+.1f}% after warm-up (the service process"
        f" alone: {rss['warm']['service_rss_mib']:.1f} -> {rss['end']['service_rss_mib']:.1f}"
        f" MiB, {100 * result['service_rss_growth_after_warm_up']:+.1f}%);"
        f" load average {result['loadavg_end']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--files", type=int, default=2000, help="Fuzzed files (each to both).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-up", type=int, default=200, help="Uploads before RSS counts.")
    parser.add_argument("--every", type=int, default=100, help="Uploads between samples.")
    parser.add_argument(
        "--routes", nargs="+", default=list(ROUTES), choices=ROUTES, help="Upload routes."
    )
    parser.add_argument("--corpus-out", type=Path, help="Also write the corpus here.")
    parser.add_argument("--out", type=Path, help="Also write the figures as JSON here.")
    args = parser.parse_args()

    cases = list(fuzz_corpus(args.files, args.seed))
    if args.corpus_out is not None:
        write_corpus(iter(cases), args.corpus_out)
    print(
        f"{len(cases):,} fuzzed files, {sum(len(c.data) for c in cases) / 1e6:.1f} MB;"
        f" {len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()}",
        flush=True,
    )
    loadavg_start = os.getloadavg()
    tally, seconds = run(args.registry, cases, args.every, args.routes)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": len(cases),
        "seed": args.seed,
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg(),
        **figures(tally, seconds, args.warm_up),
    }
    report(result)
    for line in (tally.unexpected + tally.left_behind + tally.no_answer)[:20]:
        print(f"  {line}")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))
    sys.exit(1 if tally.failures() else 0)


if __name__ == "__main__":
    main()
