"""Latency of a recommendation for a fitted user and for users folded in from 10, 100 and
1,000 listens, with their played songs left out and kept, side by side in one run.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.recommendations --registry REG \\
        [--requests 200] [--out FILE]

REG's current version needs at least 1,000 songs with WMF factors (e.g. `coldstart demo
--songs 2000 --users 4000 --clip-seconds 3 --instruments synth --no-serve`, or any real
one). `coldstart serve` runs in a child process on loopback (`bench.service.start_server`)
with COLDSTART_FOLDED_USERS_KEPT=1, on a copy of `--catalogue` (default: the demo's
`REG/catalogue.sqlite`), the catalogue the version was built from: the service counts the
listens with ids above the version's `listens_through` as new, so a fresh catalogue's
would be taken for listens the version already holds. Users: the fitted user with
the most listens in the version, and three users new since it whose listens (10, 100 and
1,000 distinct songs with factors, 1-5 plays each) are posted first. Each round asks, for
each user in turn, three times: (1) the first ask, which solves the user's vector
(another user was folded in between, and only one vector is kept), (2) the same again
(the vector kept), (3) the same with `include_played=true` (no played song left out). The
rounds interleave the cases, so that all see the same machine load. Per case: p50 and
p99 in ms, and the solve alone in process (`factorization.fold_in.fold_in_user` on the
version's song factors) for the same listens.

(Run it as a module from the repository root: as a file, `bench/` would come first on
sys.path and shadow the packages.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.service import percentiles, start_server
from factorization.fold_in import fold_in_user
from pipeline.registry import LoadedVersion, load_current

K = 10
KEY = "bench-key-0123456789"
LISTENS = (10, 100, 1000)
ASKS = ("solved", "kept", "kept, include_played")


def fitted_heaviest(version: LoadedVersion) -> str:
    """The fitted user with the most listens in the version."""
    assert version.listens is not None
    counts = np.diff(np.asarray(version.listens.indptr[: len(version.user_ids) + 1]))
    return str(version.user_ids[int(np.argmax(counts))])


def post_listens(client: httpx.Client, user_id: str, songs: list[str], plays: np.ndarray) -> None:
    items = [
        {"user_id": user_id, "song_id": song, "count": int(count)}
        for song, count in zip(songs, plays, strict=True)
    ]
    for start in range(0, len(items), 1000):
        response = client.post(
            "/v1/listens",
            json={"listens": items[start : start + 1000]},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        if response.status_code != 200 or response.json()["rejected"]:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200, help="Rounds (asks per case).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--catalogue",
        type=Path,
        help="SQLite catalogue the version was built from (default: REG/catalogue.sqlite).",
    )
    parser.add_argument("--out", type=Path, help="Also write the figures as JSON here.")
    args = parser.parse_args()

    console = Console()
    version = load_current(args.registry)
    assert version.song_factors is not None and version.fold_in_rule is not None
    song_ids = json.loads((version.folder / "song_ids.json").read_text())
    if len(song_ids) < max(LISTENS):
        raise SystemExit(f"{version.version_id} has {len(song_ids)} songs with factors: too few")
    rng = np.random.default_rng(args.seed)
    chosen = {n: rng.choice(len(song_ids), n, replace=False) for n in LISTENS}
    plays = {n: rng.integers(1, 6, n) for n in LISTENS}
    fitted = fitted_heaviest(version)
    load_before = os.getloadavg()[0]
    console.print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load average {load_before:.1f};"
        f" model {version.version_id}: {len(song_ids)} songs with factors,"
        f" {version.song_factors.n_factors} factors, {len(version.index.space('cf'))} cf songs"
    )

    # The solve alone, in process, on the same listens (timed side by side with nothing else).
    solve: dict[int, list[float]] = {n: [] for n in LISTENS}
    for _ in range(args.requests):
        for n in LISTENS:
            started = time.perf_counter()
            fold_in_user(version.song_factors, chosen[n], plays[n], version.fold_in_rule)
            solve[n].append(time.perf_counter() - started)

    folder = Path(tempfile.mkdtemp(prefix="bench-recommendations-"))
    catalogue = args.catalogue or args.registry / "catalogue.sqlite"
    if not catalogue.is_file():
        raise SystemExit(f"{catalogue}: no such SQLite catalogue (give --catalogue)")
    shutil.copy(catalogue, folder / "catalogue.db")  # the listens posted here stay here
    process, url = start_server(
        args.registry,
        folder,
        COLDSTART_API_KEYS=KEY,
        COLDSTART_FOLDED_USERS_KEPT="1",
        COLDSTART_MODEL_POLL_SECONDS="0",
        COLDSTART_CATALOGUE_POLL_SECONDS="0",
    )
    users = {"fitted": fitted} | {f"folded in, {n} listens": f"bench-{n}" for n in LISTENS}
    latencies: dict[tuple[str, str], list[float]] = {
        (case, ask): [] for case in users for ask in ASKS
    }
    played: dict[str, int] = {}
    try:
        with httpx.Client(base_url=url, timeout=300.0) as client:
            for n in LISTENS:
                post_listens(client, f"bench-{n}", [song_ids[i] for i in chosen[n]], plays[n])
            for round_ in range(args.requests + 3):  # 3 rounds of warm-up
                for case, user in users.items():
                    for ask in ASKS:
                        params = {"k": K, "include_played": str(ask.endswith("played")).lower()}
                        started = time.perf_counter()
                        response = client.get(f"/v1/users/{user}/recommendations", params=params)
                        elapsed = time.perf_counter() - started
                        body = response.json()
                        if response.status_code != 200:
                            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                        played[case] = body["played_songs"]
                        if round_ >= 3:
                            latencies[case, ask].append(elapsed)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    table = Table(title=f"GET /v1/users/{{id}}/recommendations, k={K}, {args.requests} asks each")
    for column in ("user", "played", *(f"{ask} p50 / p99 ms" for ask in ASKS), "solve p50 ms"):
        table.add_column(column, justify="left" if column == "user" else "right")
    figures: dict[str, dict[str, object]] = {}
    for case in users:
        row: dict[str, object] = {"played_songs": played[case]}
        cells = []
        for ask in ASKS:
            p50, p99 = percentiles(latencies[case, ask])
            row[ask] = {"p50_ms": p50, "p99_ms": p99}
            cells.append(f"{p50:.1f} / {p99:.1f}")
        n = next((n for n in LISTENS if case.endswith(f" {n} listens")), None)
        solve_p50 = percentiles(solve[n])[0] if n else None
        row["solve_p50_ms"] = solve_p50
        figures[case] = row
        table.add_row(
            case, str(played[case]), *cells, "-" if solve_p50 is None else f"{solve_p50:.2f}"
        )
    console.print(table)
    console.print(f"load average before {load_before:.1f}, now {os.getloadavg()[0]:.1f}")
    if args.out:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        args.out.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "commit": commit,
                    "machine": {"node": platform.node(), "cpus": os.cpu_count()},
                    "load_average": [load_before, os.getloadavg()[0]],
                    "model_version": version.version_id,
                    "cases": figures,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
