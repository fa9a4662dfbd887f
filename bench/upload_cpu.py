"""CPU and page faults per upload, by process, beside the floor of the same work in one run.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.upload_cpu --registry REG \\
        [--uploads 60] [--rounds 2] [--baseline ../base] [--out upload_cpu.json]

Requests per second under `wrk` (`bench/serving.py`) move with whatever else the machine
runs; the CPU an upload costs does not, or much less. `coldstart serve --workers 1` on
loopback takes `--uploads` `POST /v1/similar` of the serving bench's 30-s Ogg Vorbis clip one
after another (after 5 to warm up), and `/proc` gives the CPU seconds (user + system) and
minor page faults of the service and of its decode workers over them: per upload, each
side, and the sum. The floors are the bench's (`bench.serving.floors`, the same clip in this
process, one thread, in a loop): "floor", the project's own decode (`decode_usable`) and
the encoder's front end, the work the service runs on each upload with nothing around it;
"bare", the bare library calls (PyAV's decoder and resampler frame by frame, one
`torch.stft` log-mel), the obvious way to do that work. Both are measured before the first
service and after each: a row's floor is the mean of the two around it, because a shared
machine's speed moves by a third or more between minutes (seen here: the same decode loop
at 44 and 70 ms). `floor / total` is the share of the floor's throughput the service can
reach when the CPUs are the limit, as in `bench/serving.py`'s table at 8 connections (the
CNN is not in either floor). The service is measured once settled (`Server.wait_settled`),
past the collection after its version's load. `--baseline` serves another
checkout first in each round, taking turns.

(Run it as a module from the repository root: as a file, `bench/` would come first on
sys.path and shadow the packages.)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.serving import REPO_ROOT, Server, descendants, first_user_and_song, floors
from bench.serving import thirty_second_clip as make_clip

WARM_UP_UPLOADS = 5
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_and_faults(pid: int) -> dict[str, np.ndarray]:
    """(CPU seconds, minor faults) of the service process `pid` ("service") and of its
    decode workers summed ("decode"), from /proc/PID/stat; a process that ends meanwhile is
    left out."""
    totals = {"service": np.zeros(2), "decode": np.zeros(2)}
    for each in [pid, *descendants(pid)]:
        try:
            command = Path(f"/proc/{each}/cmdline").read_bytes()
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # Fields after the command: state(0) ... minflt(7) ... utime(11) stime(12).
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND
        role = "decode" if b"service.decode_worker" in command else "service"
        totals[role] += (seconds, int(fields[7]))
    return totals


def per_upload(registry: Path, clip: bytes, uploads: int, code: Path) -> dict[str, float]:
    """CPU milliseconds and page faults per upload of `clip` through `code`'s service."""
    with tempfile.TemporaryDirectory() as folder:
        server = Server(registry, 1, Path(folder) / "server", code)
        try:
            server.wait_settled()
            files = {"file": ("clip.ogg", clip, "audio/ogg")}
            with httpx.Client(base_url=server.url, timeout=120.0) as client:
                for _ in range(WARM_UP_UPLOADS):
                    client.post("/v1/similar", files=files).raise_for_status()
                before = cpu_and_faults(server.process.pid)
                started = time.perf_counter()
                for _ in range(uploads):
                    client.post("/v1/similar", files=files).raise_for_status()
                wall = time.perf_counter() - started
                after = cpu_and_faults(server.process.pid)
        finally:
            server.stop()
    figures = {"wall_ms": wall / uploads * 1e3}
    for role in ("service", "decode"):
        seconds, faults = (after[role] - before[role]) / uploads
        figures[f"{role}_cpu_ms"] = seconds * 1e3
        figures[f"{role}_faults"] = faults
    figures["total_cpu_ms"] = figures["service_cpu_ms"] + figures["decode_cpu_ms"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--uploads", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path, default=None, help="Another checkout.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON.")
    args = parser.parse_args()

    clip = make_clip()
    user_id, song_id = first_user_and_song(args.registry)

    def floor_ms() -> np.ndarray:
        """(our decode + front end, the bare library calls' decode + log-mel) in ms."""
        similar = floors(args.registry, clip, user_id, song_id)["similar"]
        return np.array([similar["decode+mel"], similar["bare decode+mel"]]) * 1e3

    checkouts = {"this": REPO_ROOT} | ({"baseline": args.baseline} if args.baseline else {})
    rows: list[tuple[str, int, dict[str, float]]] = []
    floor_before = floor_ms()
    for round_index in range(args.rounds):
        for name in sorted(checkouts, key=lambda name: name != "baseline"):
            figures = per_upload(args.registry, clip, args.uploads, checkouts[name])
            floor_after = floor_ms()
            figures["floor_ms"], figures["bare_floor_ms"] = (floor_before + floor_after) / 2
            floor_before = floor_after
            rows.append((name, round_index, figures))
            print(json.dumps({"checkout": name, "round": round_index, **figures}), flush=True)
    print(
        "\nfloors, one thread, around each row: decode + mel (this checkout's decode and front"
        " end) and bare (PyAV's decoder and resampler, torch.stft's log-mel);"
        f" load {os.getloadavg()}"
    )
    print(
        "| checkout | round | service CPU ms | faults | decode worker CPU ms | faults |"
        " total CPU ms | floor ms | floor / total | bare floor ms | bare / total |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, round_index, row in rows:
        total = row["total_cpu_ms"]
        print(
            f"| {name} | {round_index} | {row['service_cpu_ms']:.1f} |"
            f" {row['service_faults']:,.0f} | {row['decode_cpu_ms']:.1f} |"
            f" {row['decode_faults']:,.0f} | {total:.1f} |"
            f" {row['floor_ms']:.1f} | {row['floor_ms'] / total:.2f}x |"
            f" {row['bare_floor_ms']:.1f} | {row['bare_floor_ms'] / total:.2f}x |"
        )
    if args.out:
        table = [{"checkout": name, "round": index, **row} for name, index, row in rows]
        args.out.write_text(json.dumps({"rows": table}, indent=1))


if __name__ == "__main__":
    main()
