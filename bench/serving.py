"""Serving capacity under `wrk`: requests/s, p50 and p99 per route and connection count,
with one worker and with several, beside the bare floor of each measured in the same run.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.serving --registry REG \\
        [--workers 1 2] [--connections 1 8 32] [--seconds 5] [--baseline ../main] \\
        [--baseline-workers N] [--swap] [--out serving.json]

Needs `wrk` (Debian: `apt-get install wrk`). `coldstart serve --workers W` runs in a child
process on loopback with its own SQLite catalogue in a temporary folder (default settings
otherwise); `wrk -t1` drives each route for `--seconds` at each connection count (uploads
three times as long):

- `GET /v1/users/{id}/recommendations` (a user of the version, k=10), against the floor of
  the same search in process: numpy's `argpartition` over the version's song factors, and
  FAISS through the version's index (`CatalogueIndex.recommend`), one thread, in a loop;
- `GET /v1/tracks/{id}/similar` (a warm song, k=10), against `CatalogueIndex.similar_to`;
- `POST /v1/similar` with a 30-s Ogg Vorbis clip (made here from tests/assets: four
  recordings at 44.1 kHz stereo, encoded by FFmpeg's vorbis encoder), against the floor
  of PyAV decode + resample and the log-mel of that clip on every core (`decode_usable`,
  which the service runs in its decode worker processes, and the encoder's front end,
  which it runs on their samples; the CNN is not in the floor), and beside the bare
  library calls for the same work (`pyav_decode`, `stft_log_mel`); both floors run in
  one process per CPU at once for `--seconds` just before and just after each upload row
  (`all_cores_floor_rps`), and the row is divided by their mean;
- `GET /healthz`: the framework alone.

`--baseline ../main` serves another checkout first (with `--baseline-workers N` worker
processes, else as that checkout starts by default), so that "no route slower than before"
is measured in the same run. `--swap`: with the most workers, recommendations at the most
connections for three times `--seconds`, while the registry's `current` moves to the
other newest version a third of the way in (and back at the end): the failed requests
of a hot swap under load (the registry needs two versions). A search's floor in
requests/s is `cores / seconds per call` with `cores = min(workers, CPUs)`; an upload's is
measured on all CPUs (the decode workers use every core whatever the number of service
processes), `CPUs / seconds per call` beside it.
Each server is loaded once settled (`Server.wait_settled`: past the collection that
follows a version's load, a one-off). The load average before and after each server is
printed: on a shared machine the figures move with what else runs. Memory: RSS and PSS
(shared pages split between the processes that map them) of the supervisor and its
workers, after the load.

(Run it as a module from the repository root: as a file, `bench/` would come first on
sys.path and shadow the packages.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import torch

from audio.config import FrontEndConfig
from audio.mel import LogMel, log_compress
from bench.service import start_server
from service.swapper import TRIM_AFTER_SWAP_S

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = REPO_ROOT / "tests" / "assets" / "audio"
CLIP_SOURCES = (
    "vibe_ace.mp3",
    "brahms_hungarian_dance_5.flac",
    "lets_go_fishin.m4a",
    "sugar_plum_fairy.wav",
)
CLIP_SECONDS = 30.0
K = 10
START_TIMEOUT_S = 300.0
ROUTES = ("healthz", "recommendations", "track_similar", "similar")
UPLOAD_SECONDS_FACTOR = 3  # uploads take 100+ ms each: run them longer for a p99


def thirty_second_clip(seconds: float = CLIP_SECONDS, rate: int = 44100) -> bytes:
    """An Ogg Vorbis file of `seconds` of real music, stereo at `rate`: the test recordings
    one after the other (each is 8 s), encoded by FFmpeg's own vorbis encoder."""
    chunks: list[np.ndarray] = []
    for name in CLIP_SOURCES:
        with av.open(str(ASSETS / name)) as source:
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
            for frame in source.decode(audio=0):
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
    samples = np.concatenate(chunks, axis=1)[:, : int(seconds * rate)].astype(np.float32)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as sink:
        stream = sink.add_stream("vorbis", rate=rate)
        stream.layout = "stereo"
        stream.codec_context.options = {"strict": "experimental"}
        for start in range(0, samples.shape[1], 1024):
            block = np.ascontiguousarray(samples[:, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return buffer.getvalue()


def per_call_s(function: Callable[[], object], min_seconds: float = 1.0) -> float:
    """Median seconds per call of `function` over batches run for about `min_seconds`."""
    function()
    timings: list[float] = []
    deadline = time.perf_counter() + min_seconds
    while time.perf_counter() < deadline or len(timings) < 5:
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def floors(registry: Path, clip: bytes, user_id: str, song_id: str) -> dict[str, dict[str, float]]:
    """Seconds per call of the bare work under each route, one thread."""
    import faiss

    from audio.decode import DecodedAudio, decode_usable
    from pipeline.registry import load_current

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    version = load_current(registry)
    assert version.song_factors is not None, "the version has no song factors"
    factors = np.ascontiguousarray(version.song_factors.factors, dtype=np.float32)
    user = version.user_vector(user_id)
    assert user is not None, f"user {user_id} has no factors"

    def numpy_top_k() -> object:
        scores = factors @ user
        best = np.argpartition(-scores, K)[:K]
        return best[np.argsort(-scores[best])]

    encoder = version.encoder

    def decode() -> DecodedAudio:
        return decode_usable(clip, encoder.config, name="clip.ogg")

    samples = torch.from_numpy(decode().samples)

    def mel() -> object:
        with torch.inference_mode():
            return encoder.front_end(samples)

    decode_s, mel_s = per_call_s(decode, 3.0), per_call_s(mel, 2.0)
    config = encoder.config

    def bare_decode() -> np.ndarray:
        return pyav_decode(clip, config.sample_rate)

    bare_samples = torch.from_numpy(bare_decode())
    bare_mel = stft_log_mel(config)
    bare_decode_s, bare_mel_s = (
        per_call_s(bare_decode, 3.0),
        per_call_s(lambda: bare_mel(bare_samples), 2.0),
    )
    return {
        "recommendations": {
            "numpy": per_call_s(numpy_top_k),
            "faiss": per_call_s(lambda: version.index.recommend(user, K)),
        },
        "track_similar": {"faiss": per_call_s(lambda: version.index.similar_to(song_id, K, "cf"))},
        "similar": {
            "decode": decode_s,
            "mel": mel_s,
            "decode+mel": decode_s + mel_s,
            "bare decode": bare_decode_s,
            "bare mel": bare_mel_s,
            "bare decode+mel": bare_decode_s + bare_mel_s,
        },
    }


UPLOAD_FLOORS = ("decode+mel", "bare decode+mel")


def all_cores_floor_rps(
    clip: bytes, config: FrontEndConfig, processes: int, seconds: float
) -> dict[str, float]:
    """Calls per second of each upload floor (`UPLOAD_FLOORS`) run by `processes` processes
    at once, one thread each, for `seconds`: what the cores together do, where `cores / one
    call` assumes they scale perfectly (on a shared VM two loops at once ran 0.77-1.29x of
    twice one loop's rate, minute to minute)."""
    context = get_context("spawn")
    rates: dict[str, float] = {}
    for kind in UPLOAD_FLOORS:
        barrier, answers = context.Barrier(processes), context.SimpleQueue()
        loops = [
            context.Process(
                target=_floor_loop, args=(kind, clip, config, seconds, barrier, answers)
            )
            for _ in range(processes)
        ]
        for loop in loops:
            loop.start()
        calls_per_s = [answers.get() for _ in loops]
        for loop in loops:
            loop.join()
        rates[kind] = float(sum(calls_per_s))
    return rates


def _floor_loop(
    kind: str, clip: bytes, config: FrontEndConfig, seconds: float, barrier: Any, answers: Any
) -> None:
    """One process of `all_cores_floor_rps`: warm up, wait for the others, then call the
    floor's work in a loop for `seconds`; answers its calls per second."""
    torch.set_num_threads(1)
    work = upload_floor_work(kind, clip, config)
    work()
    barrier.wait()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        calls += 1
    answers.put(calls / (time.perf_counter() - started))


def upload_floor_work(kind: str, clip: bytes, config: FrontEndConfig) -> Callable[[], object]:
    """The work under an upload, `kind` from `UPLOAD_FLOORS`: the project's decode and front
    end (what the decode worker and the service run, with nothing around them), or the
    bare library calls for the same work."""
    from audio.decode import decode_usable
    from audio.frontend import model_input_of

    if kind == "decode+mel":
        return lambda: model_input_of(decode_usable(clip, config), config, "clip", 0.0).values
    if kind == "bare decode+mel":
        log_mel = stft_log_mel(config)
        return lambda: log_mel(torch.from_numpy(pyav_decode(clip, config.sample_rate)))
    raise ValueError(f"unknown upload floor {kind!r}; one of {UPLOAD_FLOORS}")


def pyav_decode(data: bytes, rate: int) -> np.ndarray:
    """`data` decoded and resampled to mono float32 at `rate` the obvious way, PyAV's decoder
    and its resampler frame by frame (FFmpeg's downmix, -3 dB, where the project averages the
    channels): the bare library calls under an upload."""
    with av.open(io.BytesIO(data)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [
            out.to_ndarray()[0]
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
        chunks += [out.to_ndarray()[0] for out in resampler.resample(None)]
    return np.concatenate(chunks)


def stft_log_mel(config: FrontEndConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The log-mel of `config` the obvious way: one `torch.stft` over the whole clip, its
    power through the mel filters, the log; the identity for a waveform front end."""
    if config.is_waveform:
        return lambda samples: samples
    front_end = LogMel(config)  # its window and filters; the computation is torch's
    window, filters = front_end.window, front_end.filterbank.T.contiguous()

    def log_mel(samples: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            spectrum = torch.stft(
                samples,
                config.n_fft,
                config.hop_length,
                window=window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            power = filters @ spectrum.abs().pow(2.0)
            return log_compress(power, config.log_compression, config.log_offset)

    return log_mel


class Server:
    """`coldstart serve --workers W` on loopback with its own catalogue."""

    def __init__(
        self,
        registry: Path,
        workers: int | None,
        folder: Path,
        code: Path = REPO_ROOT,
        **settings: str,
    ) -> None:
        """`code`: the checkout whose service runs (another one: `--baseline`); `workers`
        None: as many as it starts by default (at least one is waited for); `settings`:
        COLDSTART_* variables."""
        folder.mkdir(parents=True)
        self.workers = workers or 1
        self.process, self.url = start_server(
            registry,
            folder,
            [] if workers is None else ["--workers", str(workers)],
            code,
            **{"COLDSTART_LOG_LEVEL": "WARNING", **settings},
        )
        self.log = folder / "server.log"
        self.database = folder / "catalogue.db"

    def wait_ready(self) -> None:
        """Until every worker answers /readyz (fresh connections land on any of them)."""
        seen: set[int] = set()
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(seen) < self.workers:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready (see {self.log})")
            ready = httpx.get(f"{self.url}/readyz", timeout=5.0)
            if ready.status_code == 200:
                seen.add(ready.json().get("worker", 0))  # a baseline may not name it
            time.sleep(0.05)

    def wait_settled(self) -> None:
        """`wait_ready`, then past the collection and trim that follow a version's load
        (`service.memory`): a one-off that a measurement of steady traffic leaves out."""
        self.wait_ready()
        time.sleep(TRIM_AFTER_SWAP_S + 1.0)

    def memory_mib(self) -> dict[str, float]:
        """RSS and PSS of the supervisor and its workers, summed (MiB)."""
        return process_tree_memory_mib(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def process_tree_memory_mib(pid: int) -> dict[str, float]:
    """RSS and PSS (MiB) of process `pid` and all its descendants, summed, from /proc; a
    process that ends while it is read is left out."""
    pids = [pid, *descendants(pid)]
    rss = pss = 0
    counted = 0
    for each in pids:
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        rss += _kib(rollup, "Rss")
        pss += _kib(rollup, "Pss")
        counted += 1
    return {"processes": counted, "rss_mib": rss / 1024, "pss_mib": pss / 1024}


def process_tree_rss_by_process_mib(pid: int) -> dict[str, float]:
    """RSS (MiB) of process `pid`'s tree split by what each process is: "service <pid>" for
    each process that runs the app (the one that started decode workers), "decode" for the
    decode workers summed, "other" for the rest (a supervisor, multiprocessing's helpers)."""
    split: dict[str, float] = {}
    for each in [pid, *descendants(pid)]:
        try:
            command = Path(f"/proc/{each}/cmdline").read_bytes()
            rss = _kib(Path(f"/proc/{each}/smaps_rollup").read_text(), "Rss") / 1024
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"service.decode_worker" in command:
            role = "decode"
        elif any(b"service.decode_worker" in _command(child) for child in _children(each)):
            role = f"service {each}"
        else:
            role = "other"
        split[role] = split.get(role, 0.0) + rss
    return split


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return []
    found = []
    for task in tasks:
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def descendants(pid: int) -> list[int]:
    """Every descendant of `pid`; one that exits meanwhile is left out."""
    found = []
    for child in _children(pid):
        found.extend([child, *descendants(child)])
    return found


def _kib(rollup: str, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", rollup, re.MULTILINE)
    return int(match.group(1)) if match else 0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    """wrk's "1.23ms", "850.00us", "1.02s" in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert match is not None, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, connections: int, seconds: int, script: Path | None) -> dict[str, float]:
    """`wrk -t1 -c N --latency` on `url`: requests/s, p50/p99 ms, non-2xx answers, errors."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    percentile = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rps is not None, output
    return {
        "rps": float(rps.group(1)),
        # wrk leaves the distribution out when too few requests completed.
        "p50_ms": _ms(percentile["50"]) if "50" in percentile else float("nan"),
        "p99_ms": _ms(percentile["99"]) if "99" in percentile else float("nan"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def upload_script(folder: Path, clip: bytes) -> Path:
    """A wrk Lua script POSTing `clip` as the multipart `file` field."""
    boundary = "coldstartbench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.ogg"\r\n'
            "Content-Type: audio/ogg\r\n\r\n"
        ).encode()
        + clip
        + f"\r\n--{boundary}--\r\n".encode()
    )
    (folder / "body.bin").write_bytes(body)
    script = folder / "upload.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"\n'
        f'local f = io.open("{folder / "body.bin"}", "rb")\n'
        'wrk.body = f:read("*a")\nf:close()\n'
    )
    return script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES), help="Routes to load."
    )
    parser.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON.")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="Another checkout (e.g. a worktree of main) served first.",
    )
    parser.add_argument(
        "--baseline-workers",
        type=int,
        default=None,
        help="The baseline's worker processes (default: as that checkout starts).",
    )
    parser.add_argument(
        "--swap", action="store_true", help="Also a hot swap under load (see the docstring)."
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    user_id, song_id = first_user_and_song(args.registry)
    clip = thirty_second_clip()
    cpus = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": cpus,
        "uvicorn": uvicorn_implementations(),
        "clip_bytes": len(clip),
        "loadavg_start": os.getloadavg(),
        "floors_s": floors(args.registry, clip, user_id, song_id),
        "servers": {},
    }
    print(f"floors (s per call, one thread): {json.dumps(results['floors_s'])}", flush=True)
    front_end = served_front_end(args.registry)
    routes = {
        "healthz": ("/healthz", False),
        "recommendations": (f"/v1/users/{user_id}/recommendations?k={K}", False),
        "track_similar": (f"/v1/tracks/{song_id}/similar?k={K}", False),
        "similar": (f"/v1/similar?k={K}", True),
    }
    routes = {route: routes[route] for route in args.routes}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        folder = Path(tmp)
        script = upload_script(folder, clip)
        servers = [(str(w), w, REPO_ROOT) for w in args.workers]
        if args.baseline is not None:
            servers.insert(0, ("baseline", args.baseline_workers, args.baseline.resolve()))
        for name, workers, code in servers:
            server = Server(args.registry, workers, folder / name, code)
            try:
                server.wait_settled()
                figures: dict[str, Any] = {"loadavg_before": os.getloadavg()}
                floor_before: dict[str, float] | None = None
                for route, (path, upload) in routes.items():
                    for connections in args.connections:
                        url = server.url + path
                        figure: dict[str, Any]
                        if not upload:
                            figure = run_wrk(url, connections, args.seconds, None)
                        else:  # divided by the mean of the floors just before and after it
                            before = floor_before or all_cores_floor_rps(
                                clip, front_end, cpus, args.seconds
                            )
                            seconds = args.seconds * UPLOAD_SECONDS_FACTOR
                            figure = run_wrk(url, connections, seconds, script)
                            floor_before = all_cores_floor_rps(clip, front_end, cpus, args.seconds)
                            figure["floor_rps"] = {
                                kind: (before[kind] + floor_before[kind]) / 2
                                for kind in UPLOAD_FLOORS
                            }
                        figures[f"{route}@{connections}"] = figure
                        print(f"{name} {route} c={connections}: {figure}", flush=True)
                if args.swap and workers == max(args.workers) and code == REPO_ROOT:
                    path = routes.get("recommendations", ("/healthz", False))[0]
                    figures["swap"] = swap_under_load(
                        server, args.registry, path, max(args.connections), args.seconds * 3
                    )
                    print(f"{name} hot swap under load: {figures['swap']}", flush=True)
                figures["memory"] = server.memory_mib()
                figures["loadavg_after"] = os.getloadavg()
                results["servers"][name] = figures
            finally:
                server.stop()
    report(results, [name for name, _, _ in servers], list(routes), args.connections)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


def swap_under_load(
    server: Server, registry: Path, path: str, connections: int, seconds: int
) -> dict[str, Any]:
    """`wrk` on `path` for `seconds` while `current` moves to the other newest version a
    third of the way in; then back. Returns wrk's figures, the version every worker
    answered at the end and how long after the switch the last one got there."""
    from pipeline.registry.current import activate_version

    before = (registry / "current").read_text().strip()
    versions = sorted(p.name for p in (registry / "versions").iterdir() if p.name != before)
    if not versions:
        raise SystemExit("--swap needs a registry with two versions")
    target = versions[-1]
    swapped: dict[str, Any] = {}

    def swap() -> None:
        time.sleep(seconds / 3)
        started = time.monotonic()
        activate_version(registry, target, "bench.serving", "hot swap under load")
        seen: set[int] = set()
        while len(seen) < server.workers and time.monotonic() - started < seconds:
            ready = httpx.get(f"{server.url}/readyz", timeout=5.0).json()
            if ready.get("model_version") == target:
                seen.add(ready.get("worker", 0))
        swapped["seconds_to_all_workers"] = round(time.monotonic() - started, 2)
        swapped["workers_on_new_version"] = len(seen)

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        figure = run_wrk(server.url + path, connections, seconds, None)
    finally:
        thread.join()
        activate_version(registry, before, "bench.serving", "back after the hot swap")
    return {**figure, "connections": connections, "to": target, **swapped}


def uvicorn_implementations() -> dict[str, str]:
    """What uvicorn's "auto" picks here: httptools and uvloop when installed, else h11 and
    asyncio (pure Python HTTP parsing: a large part of a small request's time)."""
    found = {}
    for kind, fast, fallback in (("http", "httptools", "h11"), ("loop", "uvloop", "asyncio")):
        try:
            __import__(fast)
            found[kind] = fast
        except ImportError:
            found[kind] = fallback
    return found


def served_front_end(registry: Path) -> FrontEndConfig:
    """The front end of the current version's encoder (`encoder.json`, not the weights)."""
    from training.checkpoint import read_encoder_config

    version = (registry / "current").read_text().strip()
    return read_encoder_config(registry / "versions" / version / "encoder").front_end


def first_user_and_song(registry: Path) -> tuple[str, str]:
    """The current version's first user and first song of its cf index."""
    folder = registry / "versions" / (registry / "current").read_text().strip()
    users = json.loads((folder / "user_ids.json").read_text())
    songs = json.loads((folder / "index" / "cf_cosine" / "ids.json").read_text())
    return str(users[0]), next(str(song) for song in songs if song is not None)


def report(
    results: dict[str, Any], names: list[str], routes: list[str], connections: list[int]
) -> None:
    """The side-by-side table: each route's figures per server (the baseline, then each
    worker count), then the floor at the most workers and the ratio to it: for a search,
    `cores / one call`; for an upload, both upload floors run on every core around the
    row (`all_cores_floor_rps`), beside `cores / one call`."""
    floor = results["floors_s"]
    cpus = results["cpus"]
    floor_calls = {
        "recommendations": floor["recommendations"]["faiss"],
        "track_similar": floor["track_similar"]["faiss"],
    }
    most = max(int(name) for name in names if name != "baseline")
    print(
        f"\n{cpus} CPUs; uvicorn {results['uvicorn']}; load average at start"
        f" {results['loadavg_start']}"
    )
    columns = " | ".join(f"{n} req/s | {n} p50 ms | {n} p99 ms" for n in names)
    print(f"| route | conns | {columns} | floor req/s ({most} workers) | {most} workers / floor |")
    print("|" + " --- |" * (4 + 3 * len(names)))
    for route in routes:
        for c in connections:
            cells = []
            for name in names:
                figure = results["servers"][name][f"{route}@{c}"]
                cells.append(
                    f"{figure['rps']:,.0f} | {figure['p50_ms']:.1f} | {figure['p99_ms']:.1f}"
                )
            line = f"| {route} | {c} | " + " | ".join(cells)
            best = results["servers"][str(most)][f"{route}@{c}"]
            if route in floor_calls:
                floor_rps = min(most, cpus) / floor_calls[route]
                line += f" | {floor_rps:,.0f} | {best['rps'] / floor_rps:.2f}x |"
            elif route == "similar":
                own = best["floor_rps"]["decode+mel"]
                line += f" | {own:,.0f} | {best['rps'] / own:.2f}x |"
            else:
                line += " | - | - |"
            print(line)
    if "similar" in routes:
        print(
            f"similar's floors on all {cpus} cores around each row ({most} workers / floor),"
            f" the project's decode + front end and the bare library calls (PyAV's decoder"
            f" and resampler, torch.stft's log-mel); and {cpus} / one call of each, which"
            f" assumes the cores scale perfectly: {cpus / floor['similar']['decode+mel']:.0f}"
            f" and {cpus / floor['similar']['bare decode+mel']:.0f} req/s"
        )
        for c in connections:
            best = results["servers"][str(most)][f"similar@{c}"]
            own, bare = (best["floor_rps"][kind] for kind in UPLOAD_FLOORS)
            print(
                f"  c={c}: {best['rps']:.1f} req/s; own floor {own:.1f} ({best['rps'] / own:.2f}x),"
                f" bare floor {bare:.1f} ({best['rps'] / bare:.2f}x)"
            )
    for name in names:
        figures = results["servers"][name]
        print(
            f"{name}: memory {figures['memory']}; load average before"
            f" {figures['loadavg_before']}, after {figures['loadavg_after']}"
        )
        if "swap" in figures:
            print(f"{name}: hot swap under load {figures['swap']}")


if __name__ == "__main__":
    main()
