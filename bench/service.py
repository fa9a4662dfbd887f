"""Latency and throughput of POST /v1/similar over HTTP, beside the bare in-process path.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.service --registry REG \\
        [--audio tests/assets/audio/vibe_ace.mp3] [--requests 48] [--concurrency 4 16]

`coldstart serve` runs in a child process on loopback (its own catalogue in a temporary
folder, default settings: `inference_slots` 2, one torch thread each). On the same
registry version and the same recording, one run measures:

- concurrency 1, paired: the bare in-process path (`training.inference.embed_audio`:
  decode -> checks -> LogMel -> CNN, then `CatalogueIndex.similar`, one torch thread, as
  a request runs in the service) and one HTTP request take turns, `--requests` times
  each, so that both see the same machine load; the ratio of their p50s is the overhead
  of HTTP, multipart parsing, the thread hops, the catalogue lookup and JSON (target
  <= 1.3);
- concurrency c (4 and 16 by default): c clients keep one request each in flight until
  `max(--requests, 4c)` answers are in: p50, p99, requests/s.

(Run it as a module from the repository root: as a file, `bench/` would come first on
sys.path and shadow the packages.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from audio.decode import DecodeLimits
from pipeline.registry import load_current
from service.settings import Settings
from training.inference import embed_audio

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = REPO_ROOT / "tests" / "assets" / "audio" / "vibe_ace.mp3"
K = 10
WARM_UP = 3


def percentiles(latencies_s: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    values = np.asarray(latencies_s) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def paired(
    registry: Path, url: str, body: bytes, content_type: str, audio: bytes, name: str, n: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Concurrency 1, the in-process path and an HTTP request taking turns, `n` of each:
    both see the same machine (its load drifts on a shared host), so the ratio of their
    medians is the overhead of HTTP, upload parsing, the catalogue lookup and JSON."""
    settings = Settings()
    torch.set_num_threads(settings.torch_threads)
    version = load_current(registry)
    limits = DecodeLimits(
        max_seconds=settings.max_audio_seconds, max_bytes=settings.max_upload_bytes
    )
    bare: list[float] = []
    http: list[float] = []
    with httpx.Client(base_url=url, timeout=300.0) as client:
        for i in range(WARM_UP + n):
            started = time.perf_counter()
            embedding = embed_audio(version.encoder, audio, limits, name)
            version.index.similar(embedding.factors, K, "cf")
            in_process_s = time.perf_counter() - started
            started = time.perf_counter()
            response = client.post(
                "/v1/similar", params={"k": K}, content=body, headers={"content-type": content_type}
            )
            http_s = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
            if i >= WARM_UP:
                bare.append(in_process_s)
                http.append(http_s)
    return summary(bare, sum(bare)), summary(http, sum(http))


def summary(latencies_s: list[float], elapsed_s: float) -> dict[str, float]:
    p50, p99 = percentiles(latencies_s)
    return {"p50_ms": p50, "p99_ms": p99, "per_s": len(latencies_s) / elapsed_s}


def multipart(audio: bytes, name: str) -> tuple[bytes, str]:
    """One multipart body, built once, so that the client spends nothing per request on it."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        head + audio + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


async def load(
    url: str, body: bytes, content_type: str, concurrency: int, total: int
) -> dict[str, float]:
    """`concurrency` clients, one request in flight each, until `total` answers are in."""
    latencies: list[float] = []
    remaining = total
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300.0, limits=limits) as client:

        async def one() -> float:
            started = time.perf_counter()
            response = await client.post(
                "/v1/similar", params={"k": K}, content=body, headers={"content-type": content_type}
            )
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
            return time.perf_counter() - started

        for _ in range(WARM_UP):
            await one()

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await one())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return summary(latencies, elapsed)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    registry: Path,
    folder: Path,
    options: Sequence[str] = ("--workers", "1"),
    code: Path | None = None,
    **settings: str,
) -> tuple[subprocess.Popen[bytes], str]:
    """`coldstart serve` on a free loopback port with its own catalogue, `options` (default
    one worker process, as these benchmarks measure one) and `settings` (COLDSTART_*
    variables) in its environment; `code`: the checkout it runs from (default this one).
    Waits until ready."""
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from cli.main import app; app()",
        "serve",
        "--registry",
        str(registry),
        "--database",
        f"sqlite:///{folder / 'catalogue.db'}",
        "--port",
        str(port),
        *options,
    ]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **settings}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=code)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((folder / "server.log").read_text()[-3000:])
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("the server did not become ready in 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--registry", type=Path, required=True, help="Registry with a current version."
    )
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--requests", type=int, default=48, help="Timed requests per measurement.")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[4, 16], help="Levels beyond 1 (always run)."
    )
    parser.add_argument("--out", type=Path, help="Also write the figures as JSON here.")
    args = parser.parse_args()

    console = Console()
    audio = args.audio.read_bytes()
    version = load_current(args.registry)
    console.print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f};"
        f" model {version.version_id}, {len(version.index.space('cf'))} songs;"
        f" {args.audio.name} ({len(audio) / 1e6:.2f} MB)"
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-service-"))
    process, url = start_server(args.registry, folder)
    body, content_type = multipart(audio, args.audio.name)
    try:
        bare, single = paired(
            args.registry, url, body, content_type, audio, args.audio.name, args.requests
        )
        http: dict[int, dict[str, float]] = {1: single}
        for concurrency in sorted(set(args.concurrency) - {1}):
            total = max(args.requests, 4 * concurrency)
            http[concurrency] = asyncio.run(load(url, body, content_type, concurrency, total))
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    table = Table(title=f"POST /v1/similar, k={K}, {args.audio.name}")
    for column in ("path", "concurrency", "p50 ms", "p99 ms", "requests/s"):
        table.add_column(column, justify="right" if column != "path" else "left")
    table.add_row(
        "in process: decode+mel+CNN+search",
        "1",
        f"{bare['p50_ms']:.1f}",
        f"{bare['p99_ms']:.1f}",
        f"{bare['per_s']:.2f}",
    )
    for concurrency, figures in http.items():
        table.add_row(
            "HTTP (uvicorn, loopback)",
            str(concurrency),
            f"{figures['p50_ms']:.1f}",
            f"{figures['p99_ms']:.1f}",
            f"{figures['per_s']:.2f}",
        )
    console.print(table)
    overhead = http[1]["p50_ms"] / bare["p50_ms"]
    console.print(
        f"overhead at concurrency 1 (HTTP p50 / in-process p50): {overhead:.2f}x"
        f" (target <= 1.3); load average now {os.getloadavg()[0]:.1f}"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": {"node": platform.node(), "cpus": os.cpu_count()},
                    "model_version": version.version_id,
                    "audio": args.audio.name,
                    "in_process": bare,
                    "http": {str(c): figures for c, figures in http.items()},
                    "overhead_c1": overhead,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
