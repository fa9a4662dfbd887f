"""Scale rehearsal: the production path at Taste Profile shape, measured stage by stage.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.scale_rehearsal --fraction 0.01
    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.scale_rehearsal --fraction 0.1

builds a catalogue of Taste Profile shape scaled by `--fraction` (users, songs and listens
together: 1,019,318 x 384,546 x 48,373,586 at 1.0, power-law popularity and activity by
`bench.load_listens.generate`), of which `--audio-songs` (default 20,000 x fraction) have
recordings (default 10% of the songs, as 30-s clips): `--rendered-songs` of them are a
synthetic world (`world.generate`) whose songs join the catalogue and whose listeners are
mapped onto catalogue users, so that their taste ties audio to listens; the rest are
back-catalogue songs given a recombination of two rendered clips each (circular offsets,
gains, a mixture: `recombine_clips`), distinct files that decode, at a fraction of the cost
of rendering; every other song has no audio. Then it runs every stage
as a user would, each as a child process of the real CLI, timed, with its peak RSS (the
process tree's resident memory, sampled from /proc every 0.2 s):

1. `coldstart import` into PostgreSQL (a fresh schema on 127.0.0.1:5432) and into SQLite,
   beside a bare `psql \\copy` of the same listens.tsv into `bench.import_listens.BARE_TABLE`
   (the listens' columns and an index on each id, as a new user compares);
2. `coldstart pipeline --database URL` from scratch (per step: seconds and peak RSS), beside
   a bare `psql \\copy (SELECT ... GROUP BY ...) TO` file of the sums the snapshot writes;
3. `coldstart serve` on the published version: seconds to /readyz, RSS, POST /v1/similar
   p50/p99 on a clip, taking turns with a demo-size service (the world alone) started the
   same way;
4. through that service's API, ~1% new listens and `--new-tracks` tracks by audio; then the
   second nightly run (warm start, fine-tune) while the service runs, and its hot swap under
   a bounded request loop on loopback: failed requests, latencies, the service's peak RSS.

Results go to `WORK/results.json` and a Markdown table on stdout (stage, seconds, peak RSS,
the command), with each stage's change in the file system's used bytes and, at the end, the
sizes of the audio, the mel caches, the registry and the database. Run as a module from
the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
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
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

from bench.import_listens import BARE_TABLE, bare_copy_sql
from bench.load_listens import TASTE_PROFILE_LISTENS, TASTE_PROFILE_SONGS, generate
from bench.service import free_port, multipart, percentiles
from corpus.dataset import (
    AUDIO_DIR,
    LISTENS_FILE,
    SONGS_FILE,
    find_audio,
    listens_tsv_block,
    read_listens,
    read_songs,
)

# The share of the catalogue's songs with a recording (the paper had 30-s clips for 99% of
# its 382k songs; a tenth is the rehearsal's default) and how many of them are rendered.
AUDIO_SHARE = 0.1
RENDERED_SONGS = 1000
RECOMBINED_RATE = 16_000  # Hz: the recombined clips are mono Opus (cheap to write and store)
RECOMBINED_KBPS = 32
WORLD_USERS_PER_SONG = 2  # the world generator's own default ratio (3000 songs, 6000 users)
NEW_LISTENS_SHARE = 0.01
LISTENS_PER_REQUEST = 1000
SAMPLE_S = 0.2
# The server and database the rehearsal makes its schema in (plain libpq URL: psql reads it).
POSTGRES = os.environ.get(
    "COLDSTART_REHEARSAL_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
API_KEY = "rehearsal-key-0123456789"
# Optional stages (`--stages`): the bare copy beside the PostgreSQL import, the SQLite
# import, the snapshot alone beside a bare export, the two nightly runs with the service
# between them.
STAGES = ("bare-copy", "sqlite", "snapshot", "nightly")
_STEP = re.compile(r"^(\S+ \S+) INFO coldstart\.pipeline step (\w+): started")


# ---- measuring ------------------------------------------------------------------------


def _tree_memory_bytes(pid: int) -> tuple[int, int]:
    """(the largest RSS of one process, the summed PSS) of `pid` and all its descendants:
    RSS counts shared pages (torch's libraries, forked workers' copy-on-write pages) in every
    process that maps them, PSS splits them among the sharers, so their sum is what the tree
    holds. (0, 0) once it is gone."""
    largest, pss, stack = 0, 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Rss:"):
                        largest = max(largest, int(line.split()[1]) * 1024)
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    stack.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return largest, pss


class MemorySampler:
    """Samples a process tree's memory every `SAMPLE_S` in a thread: (wall time, largest
    RSS, summed PSS) in bytes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), *_tree_memory_bytes(self.pid)))
            self._stop.wait(SAMPLE_S)

    def peak_mib(self, start: float = 0.0, end: float = float("inf")) -> tuple[float, float]:
        """(peak RSS of one process, peak PSS of the tree) between `start` and `end`, MiB."""
        inside = [(rss, pss) for at, rss, pss in self.samples if start <= at <= end]
        return (
            round(max((rss for rss, _ in inside), default=0) / 2**20, 1),
            round(max((pss for _, pss in inside), default=0) / 2**20, 1),
        )

    def peak_at_seconds(self) -> float:
        """Seconds from the first sample to the one with the largest RSS: where in a stage
        its peak falls (a short event at its start or end, or growth)."""
        if not self.samples:
            return 0.0
        at = max(self.samples, key=lambda sample: sample[1])[0]
        return round(at - self.samples[0][0], 1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Stage:
    name: str
    seconds: float
    peak_rss_mib: float  # the largest process
    peak_pss_mib: float  # the process tree, shared pages counted once
    command: str
    detail: dict[str, Any] = field(default_factory=dict)


def run_stage(
    name: str,
    command: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    ok_codes: tuple[int, ...] = (0,),
) -> tuple[Stage, MemorySampler]:
    """Run `command` to the end, timed, its tree's RSS sampled; an exit code not in
    `ok_codes` fails loudly with the end of its log."""
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command)}", flush=True)
    used_before = _used_bytes(log.parent)
    started = time.perf_counter()
    with open(log, "wb") as output:
        process = subprocess.Popen(
            list(command),
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        sampler = MemorySampler(process.pid)
        code = process.wait()
    seconds = time.perf_counter() - started
    sampler.stop()
    if code not in ok_codes:
        raise RuntimeError(f"{name} exited {code}:\n{log.read_text()[-4000:]}")
    stage = Stage(
        name,
        round(seconds, 2),
        *sampler.peak_mib(),
        " ".join(command),
        {
            "peak_at_s": sampler.peak_at_seconds(),
            "disk_gib": round((_used_bytes(log.parent) - used_before) / 2**30, 2),
        },
    )
    print(
        f"    {stage.seconds:.1f} s, peak RSS {stage.peak_rss_mib:,.0f} MiB,"
        f" tree PSS {stage.peak_pss_mib:,.0f} MiB",
        flush=True,
    )
    return stage, sampler


def _used_bytes(path: Path) -> int:
    """The used bytes of the file system holding `path` (a stage's disk: after - before)."""
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def coldstart(*arguments: str) -> list[str]:
    """The `coldstart` command line, run by this interpreter (the same environment)."""
    return [sys.executable, "-c", "from cli.main import app; app()", *arguments]


# ---- the catalogue --------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    fraction: float
    listens: int
    audio_songs: int
    rendered_songs: int
    new_tracks: int

    @property
    def new_listens(self) -> int:
        return max(10, round(NEW_LISTENS_SHARE * self.listens))


def build_catalogue(scale: Scale, folder: Path, clip_seconds: float, seed: int) -> dict[str, Any]:
    """`folder/dataset` (the Taste-Profile-shaped catalogue with the world's songs, their
    recordings linked under audio/) and `folder/world` (the world alone: the demo-size
    catalogue). Reused when built before with the same parameters."""
    from world.generate import generate_world

    parameters = asdict(scale) | {"clip_seconds": clip_seconds, "seed": seed}
    stamp = folder / "catalogue.json"
    if stamp.is_file() and json.loads(stamp.read_text())["parameters"] == parameters:
        return json.loads(stamp.read_text())
    dataset, world = folder / "dataset", folder / "world"
    shutil.rmtree(dataset, ignore_errors=True)
    started = time.perf_counter()
    generate(dataset, scale.listens, seed)
    generated_s = time.perf_counter() - started
    started = time.perf_counter()
    n_world_users = WORLD_USERS_PER_SONG * scale.rendered_songs
    generate_world(world, scale.rendered_songs, n_world_users, clip_seconds, seed, workers=2)
    world_s = time.perf_counter() - started

    # The world's listeners become catalogue users (distinct ones, drawn with the seed), so
    # the songs with audio share listeners with the back catalogue.
    catalogue_users = read_listens(dataset / LISTENS_FILE)["user_id"].cat.categories
    world_listens = read_listens(world / LISTENS_FILE)
    world_users = world_listens["user_id"].cat.categories
    if world_users.size > catalogue_users.size:
        raise SystemExit("more world listeners than catalogue users: raise --fraction")
    rng = np.random.default_rng(seed)
    chosen = catalogue_users[rng.choice(catalogue_users.size, world_users.size, replace=False)]
    world_listens["user_id"] = world_listens["user_id"].cat.rename_categories(chosen)
    world_songs = read_songs(world / SONGS_FILE)
    if world_songs["song_id"].isin(read_songs(dataset / SONGS_FILE)["song_id"]).any():
        raise SystemExit("a world song id is also a catalogue song id: change --seed")
    back_catalogue = read_songs(dataset / SONGS_FILE)["song_id"]
    n_recombined = scale.audio_songs - scale.rendered_songs
    if n_recombined > len(back_catalogue):
        raise SystemExit(f"{n_recombined:,} recombined clips but {len(back_catalogue):,} songs")
    with_audio = back_catalogue.iloc[np.sort(rng.choice(len(back_catalogue), n_recombined, False))]
    with open(dataset / LISTENS_FILE, "ab") as handle:
        handle.write(listens_tsv_block(world_listens))
    world_songs.to_csv(dataset / SONGS_FILE, mode="a", header=False, index=False)
    (dataset / AUDIO_DIR).mkdir(exist_ok=True)
    for song_id, path in find_audio(world).items():
        (dataset / AUDIO_DIR / f"{song_id}{path.suffix}").symlink_to(path.resolve())
    started = time.perf_counter()
    recombined_bytes = recombine_clips(world, with_audio.astype(str).tolist(), dataset, seed)
    recombined_s = time.perf_counter() - started

    songs = read_songs(dataset / SONGS_FILE)
    listens = read_listens(dataset / LISTENS_FILE)
    info = {
        "parameters": parameters,
        "songs": len(songs),
        "songs_with_audio": len(world_songs) + len(with_audio),
        "rendered_songs": len(world_songs),
        "recombined_songs": len(with_audio),
        "clip_seconds": clip_seconds,
        "audio_gib": round(_du(dataset / AUDIO_DIR, follow=True) / 2**30, 2),
        "recombined_seconds": round(recombined_s, 1),
        "recombined_mib": round(recombined_bytes / 2**20, 1),
        "users": int(listens["user_id"].cat.categories.size),
        "listens": len(listens),
        "world_listens": len(world_listens),
        "listens_tsv_mib": round((dataset / LISTENS_FILE).stat().st_size / 2**20, 1),
        "generate_seconds": round(generated_s, 1),
        "world_seconds": round(world_s, 1),
    }
    stamp.write_text(json.dumps(info, indent=2))
    return info


_POOL: np.ndarray | None = None  # (n_rendered, n) float32: the rendered clips, for forks


def recombine_clips(world: Path, song_ids: list[str], dataset: Path, seed: int) -> int:
    """Write `dataset/audio/<song_id>.opus` for each of `song_ids`: the mix of two of the
    world's rendered clips (each circularly shifted, gains 0.6-1.0 and 0.1-0.4), mono Opus
    at `RECOMBINED_RATE`, drawn from (seed, the song's position). Two forked processes share
    the decoded clips. Returns the bytes written."""
    from fractions import Fraction

    from scipy import signal

    from audio.config import FRONT_END
    from audio.decode import decode_usable

    global _POOL
    clips = [decode_usable(path).samples for path in sorted(find_audio(world).values())]
    rate = Fraction(RECOMBINED_RATE, FRONT_END.sample_rate)
    length = min(clip.size for clip in clips)
    _POOL = np.stack(
        [signal.resample_poly(clip[:length], rate.numerator, rate.denominator) for clip in clips]
    ).astype(np.float32)
    folder = dataset / AUDIO_DIR
    jobs = [(i, song, folder / f"{song}.opus", seed) for i, song in enumerate(song_ids)]
    try:
        with get_context("fork").Pool(2) as pool:
            return sum(pool.imap_unordered(_write_recombined, jobs, chunksize=64))
    finally:
        _POOL = None


def _write_recombined(job: tuple[int, str, Path, int]) -> int:
    index, song_id, path, seed = job
    assert _POOL is not None
    rng = np.random.default_rng([seed, 2, index])
    first, second = rng.choice(len(_POOL), 2, replace=len(_POOL) < 2)
    n = _POOL.shape[1]
    mix = rng.uniform(0.6, 1.0) * np.roll(_POOL[first], rng.integers(n))
    mix += rng.uniform(0.1, 0.4) * np.roll(_POOL[second], rng.integers(n))
    mix *= 0.9 / max(float(np.abs(mix).max()), 1e-6)
    data = _opus(mix, RECOMBINED_RATE, song_id)
    path.write_bytes(data)
    return len(data)


def _opus(samples: np.ndarray, rate: int, title: str) -> bytes:
    """Mono Opus bytes of `samples` (n,) float32 in [-1, 1] at `rate`, `RECOMBINED_KBPS`,
    the encoder's fastest setting (a 30-s clip: about 115 kB in 0.05 s, where FLAC takes
    0.7 MB: 38k clips would fill this machine's disk twice over, with the audio store's copy)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="opus") as container:
        container.metadata["title"] = title
        stream = container.add_stream("libopus", rate=rate, options={"compression_level": "0"})
        stream.layout = "mono"
        stream.format = "flt"
        stream.bit_rate = RECOMBINED_KBPS * 1000
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = rate
        frame.pts = 0
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    return buffer.getvalue()


def _du(folder: Path, follow: bool = False) -> int:
    """Bytes of the files under `folder` (0 if missing); `follow`: through symlinks."""
    if not folder.exists():
        return 0
    command = ["du", "-s", "-B1", *(["-L"] if follow else []), str(folder)]
    return int(subprocess.run(command, capture_output=True, text=True).stdout.split()[0] or 0)


def day_of_listens(dataset: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` new plays of known songs by known users: users uniform, songs by popularity."""
    listens = read_listens(dataset / LISTENS_FILE)
    rng = np.random.default_rng([seed, 1])
    users = listens["user_id"].cat.categories
    songs = listens["song_id"]
    picked = rng.integers(0, len(listens), n)  # a listen's song: drawn by popularity
    return [
        {"user_id": str(user), "song_id": str(song), "count": int(count)}
        for user, song, count in zip(
            users[rng.integers(0, users.size, n)],
            songs.iloc[picked].astype(str),
            np.minimum(rng.zipf(2.0, n), 100),
            strict=True,
        )
    ]


# ---- PostgreSQL -----------------------------------------------------------------------


@contextlib.contextmanager
def postgres_schema(keep: bool) -> Iterator[tuple[str, str]]:
    """(schema, URL whose connections use it): a fresh schema, dropped afterwards."""
    schema = f"rehearsal_{uuid.uuid4().hex[:8]}"
    psql(None, f'CREATE SCHEMA "{schema}"')
    try:
        yield schema, f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        if not keep:
            psql(None, f'DROP SCHEMA "{schema}" CASCADE')


def psql_command(schema: str | None, sql: str) -> list[str]:
    """psql running `sql` on the test database (in `schema` through `psql_env`)."""
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", POSTGRES, "-c", sql]


def psql_env(schema: str | None) -> dict[str, str]:
    return {"PGOPTIONS": f"-csearch_path={schema}"} if schema else {}


def psql(schema: str | None, sql: str) -> str:
    done = subprocess.run(
        psql_command(schema, sql),
        env={**os.environ, **psql_env(schema)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


# ---- the service ----------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    sampler: MemorySampler
    ready_seconds: float


def start_server(registry: Path, database: str, store: Path, log: Path) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "COLDSTART_API_KEYS": API_KEY,
        "COLDSTART_AUDIO_STORE": str(store),
        "COLDSTART_MODEL_POLL_SECONDS": "1",
    }
    command = coldstart("serve", "--registry", str(registry), "--database", database)
    command += ["--port", str(port), "--workers", "1"]  # one process: its RSS is the figure
    started = time.perf_counter()
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    sampler = MemorySampler(process.pid)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - started < 900:
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-4000:])
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=5.0).status_code == 200:
                return Server(process, url, sampler, round(time.perf_counter() - started, 2))
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service was not ready within 900 s")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()
    server.sampler.stop()


def similar(
    client: httpx.Client, body: bytes, content_type: str
) -> tuple[float, str, dict[str, float]]:
    """One POST /v1/similar: (seconds, the version that answered, the service's own
    milliseconds per stage: decode, features, model, search, total); raises on a failure."""
    started = time.perf_counter()
    response = client.post(
        "/v1/similar", params={"k": 10}, content=body, headers={"content-type": content_type}
    )
    response.raise_for_status()
    answer = response.json()
    return time.perf_counter() - started, answer["model_version"], answer["timings"]


def paired_latency(
    big: Server, demo: Server, body: bytes, content_type: str, n: int
) -> dict[str, float]:
    """The two services take turns, `n` requests each after a warm-up: p50/p99 in ms, and
    the median of each stage the services report themselves (`big_model_ms`, ...,
    `demo_search_ms`), which says where a difference between them lies."""
    times: dict[str, list[float]] = {"big": [], "demo": []}
    stages: dict[str, list[dict[str, float]]] = {"big": [], "demo": []}
    with (
        httpx.Client(base_url=big.url, timeout=120) as a,
        httpx.Client(base_url=demo.url, timeout=120) as b,
    ):
        for i in range(n + 3):
            for name, client in (("big", a), ("demo", b)):
                seconds, _, timings = similar(client, body, content_type)
                if i >= 3:
                    times[name].append(seconds)
                    stages[name].append(timings)
    big50, big99 = percentiles(times["big"])
    demo50, demo99 = percentiles(times["demo"])
    medians = {
        f"{name}_{stage}": round(float(np.median([t[stage] for t in stages[name]])), 1)
        for name in ("big", "demo")
        for stage in ("decode_ms", "features_ms", "model_ms", "search_ms", "total_ms")
    }
    return {
        "p50_ms": round(big50, 1),
        "p99_ms": round(big99, 1),
        "demo_p50_ms": round(demo50, 1),
        "demo_p99_ms": round(demo99, 1),
        "p50_ratio": round(big50 / demo50, 2),
        "requests": n,
        **medians,
    }


def post_day(
    server: Server, listens: list[dict[str, Any]], clips: list[Path], n_tracks: int
) -> dict[str, Any]:
    """Through the API: the day's listens (batches of 1000), then `n_tracks` tracks by audio."""
    headers = {"authorization": f"Bearer {API_KEY}"}
    stored = 0
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, timeout=300, headers=headers) as client:
        for start in range(0, len(listens), LISTENS_PER_REQUEST):
            batch = listens[start : start + LISTENS_PER_REQUEST]
            response = client.post("/v1/listens", json={"listens": batch})
            response.raise_for_status()
            stored += response.json()["stored"]
        listens_s = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(n_tracks):
            clip = clips[i % len(clips)]
            response = client.post(
                "/v1/tracks",
                data={"title": f"New track {i}", "artist": "Rehearsal", "track_id": f"new-{i:05d}"},
                files={"file": (clip.name, clip.read_bytes())},
            )
            response.raise_for_status()
        tracks_s = time.perf_counter() - started
    return {
        "listens_posted": len(listens),
        "listens_stored": stored,
        "listens_seconds": round(listens_s, 2),
        "tracks_added": n_tracks,
        "tracks_seconds": round(tracks_s, 2),
    }


class RequestLoop:
    """POST /v1/similar back to back in a thread, from `start()` until a version other than
    `old` has answered `after` times (or `limit_s` passed): counts, failures, versions."""

    def __init__(self, server: Server, body: bytes, content_type: str, old: str) -> None:
        self.server, self.body, self.content_type, self.old = server, body, content_type, old
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.versions: dict[str, int] = {}
        self.first_new: float | None = None
        self.started_at = 0.0
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, after: int = 20, limit_s: float = 1800.0) -> None:
        self.after, self.limit_s = after, limit_s
        self.started_at = time.time()
        self._thread.start()

    def _run(self) -> None:
        new_answers = 0
        with httpx.Client(base_url=self.server.url, timeout=120) as client:
            while new_answers < self.after and time.time() - self.started_at < self.limit_s:
                try:
                    seconds, version, _ = similar(client, self.body, self.content_type)
                except httpx.HTTPError as error:
                    self.failures.append(repr(error)[:200])
                    continue
                self.latencies.append(seconds)
                self.versions[version] = self.versions.get(version, 0) + 1
                if version != self.old:
                    new_answers += 1
                    self.first_new = self.first_new or time.time()
        self.ended_at = time.time()

    def join(self) -> dict[str, Any]:
        self._thread.join()
        p50, p99 = percentiles(self.latencies) if self.latencies else (0.0, 0.0)
        return {
            "requests": len(self.latencies) + len(self.failures),
            "failed": len(self.failures),
            "failures": self.failures[:5],
            "versions": self.versions,
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "seconds_to_new_version": (
                round(self.first_new - self.started_at, 2) if self.first_new else None
            ),
        }


# ---- the rehearsal --------------------------------------------------------------------


def pipeline_steps(run_log: Path, summary: dict[str, Any], sampler: MemorySampler) -> list[Stage]:
    """One row per pipeline step: its seconds (summary.json), its peak RSS (the samples
    between its start in the run's log and the next step's)."""
    starts = []
    for line in run_log.read_text().splitlines():
        if match := _STEP.match(line):
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            starts.append((match.group(2), at))
    ends = [at for _, at in starts[1:]] + [float("inf")]
    bounds = {name: (at, end) for (name, at), end in zip(starts, ends, strict=True)}
    rows = []
    for step in summary["steps"]:
        start, end = bounds.get(step["name"], (0.0, 0.0))
        detail = {k: v for k, v in step["detail"].items() if not isinstance(v, dict | list)}
        rows.append(
            Stage(
                f"  {step['name']}",
                step["seconds"],
                *sampler.peak_mib(start, end),
                "",
                detail,
            )
        )
    return rows


def run_pipeline_stage(
    name: str,
    registry: Path,
    source: list[str],
    run_id: str,
    work: Path,
    args: argparse.Namespace,
) -> tuple[list[Stage], dict[str, Any], MemorySampler]:
    """`coldstart pipeline` on `source` (its options: --database URL --audio-store DIR, or
    --dataset DIR): the run's row, then one row per step."""
    command = coldstart(
        "pipeline",
        "--registry",
        str(registry),
        *source,
        "--run-id",
        run_id,
        "--epochs",
        str(args.epochs),
        "--fine-tune-epochs",
        str(args.fine_tune_epochs),
        "--max-minutes",
        str(args.max_minutes),
        "--workers",
        "2",
        "--map-tolerance",
        str(args.map_tolerance),
        "--auc-tolerance",
        str(args.map_tolerance),
    )
    # exit 3: refused by the gate (handled below)
    stage, sampler = run_stage(name, command, work / f"{run_id}.log", ok_codes=(0, 3))
    run_dir = registry / "pipeline" / "runs" / run_id
    summary = json.loads((run_dir / "summary.json").read_text())
    stage.detail |= {"outcome": summary["outcome"], "gate": (summary["gate"] or {}).get("reason")}
    if summary["outcome"] == "refused":
        # The rehearsal measures cost: a refused candidate is published by hand (the same
        # publish step, without the gate) so that the later stages have a version to run on.
        published, _ = run_stage(
            f"{name}: refused by the gate, published by hand",
            coldstart("publish", "--run", str(run_dir), "--registry", str(registry)),
            work / f"{run_id}-publish.log",
        )
        summary["version_id"] = _current_version(registry)
        stage.detail["published_by_hand_seconds"] = published.seconds
    elif summary["outcome"] != "published":
        raise RuntimeError(f"{name}: {summary['outcome']}: {summary['message']}")
    stage.detail["version"] = summary["version_id"]
    return [stage, *pipeline_steps(run_dir / "pipeline.log", summary, sampler)], summary, sampler


def _current_version(registry: Path) -> str:
    return (registry / "current").read_text().strip()


def rehearse(args: argparse.Namespace) -> dict[str, Any]:
    audio_songs = args.audio_songs or max(
        24, round(AUDIO_SHARE * TASTE_PROFILE_SONGS * args.fraction)
    )
    scale = Scale(
        fraction=args.fraction,
        listens=round(TASTE_PROFILE_LISTENS * args.fraction),
        audio_songs=audio_songs,
        rendered_songs=min(audio_songs, args.rendered_songs),
        new_tracks=args.new_tracks,
    )
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    catalogue = build_catalogue(scale, work, args.clip_seconds, args.seed)
    print(json.dumps(catalogue), flush=True)
    dataset = work / "dataset"
    stages: list[Stage] = []
    results: dict[str, Any] = {
        "scale": asdict(scale),
        "catalogue": catalogue,
        "machine": {"cores": os.cpu_count(), "load_at_start": os.getloadavg()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    sqlite_url = f"sqlite:///{runs / 'catalogue.db'}"
    store = runs / "store"
    results["complete"] = False
    try:
        with postgres_schema(args.keep) as (schema, pg_url):
            # 1. imports, and the bare COPY of the same file beside them
            stage, _ = run_stage(
                "import into PostgreSQL",
                coldstart(
                    "import",
                    "--dataset",
                    str(dataset),
                    "--database",
                    pg_url,
                    "--audio-store",
                    str(store),
                ),
                runs / "import-pg.log",
            )
            stages.append(stage)
            if "bare-copy" in args.stages:
                stages.append(bare_copy(schema, dataset / LISTENS_FILE, runs))
            if "sqlite" in args.stages:
                stage, _ = run_stage(
                    "import into SQLite",
                    coldstart(
                        "import",
                        "--dataset",
                        str(dataset),
                        "--database",
                        sqlite_url,
                        "--no-copy-audio",
                    ),
                    runs / "import-sqlite.log",
                )
                stages.append(stage)

            sums = (
                "\\copy (SELECT user_id, track_id, sum(count) FROM listens"
                " GROUP BY user_id, track_id ORDER BY user_id, track_id)"
                f" TO '{runs / 'bare-sums.tsv'}'"
            )
            if "snapshot" in args.stages:
                # the nightly run's first step alone, then the bare export of the same sums
                stage, _ = run_stage(
                    "snapshot alone", snapshot_command(pg_url, runs), runs / "snapshot.log"
                )
                stages.append(stage)
                stage, _ = run_stage(
                    "bare psql \\copy of the sums TO a file (beside the snapshot)",
                    psql_command(schema, sums),
                    runs / "bare-sums-snapshot.log",
                    psql_env(schema),
                )
                stages.append(stage)
            if "nightly" in args.stages:
                nightly(args, work, runs, scale, (schema, pg_url, store, sums), stages)
            results["complete"] = True
            results["disk_gib"] = disk_sizes(work, schema)
    finally:  # what ran is kept when a stage fails or the run is interrupted (Ctrl-C)
        results["stages"] = [asdict(stage) for stage in stages]
        results["seconds"] = round(time.perf_counter() - started, 1)
        results["machine"]["load_at_end"] = os.getloadavg()
        (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
        print(markdown(results))
    return results


def disk_sizes(work: Path, schema: str) -> dict[str, float]:
    """GiB on disk at the end: the recordings, the mel caches (the dataset's and the
    registry's runs'), the audio store, the registry and the PostgreSQL schema."""
    runs = work / "runs"
    caches = sum(_du(path) for path in work.rglob("mel_cache") if path.is_dir())
    database = psql(
        None,
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}'",
    )
    sizes = {
        "audio": _du(work / "dataset" / AUDIO_DIR, follow=True),
        "mel_caches": caches,
        "audio_store": _du(runs / "store"),
        "registry": _du(runs / "registry"),
        "postgres": int(re.findall(r"^\s*(\d+)\s*$", database, re.MULTILINE)[0]),
    }
    return {name: round(size / 2**30, 2) for name, size in sizes.items()}


def bare_copy(schema: str, listens: Path, runs: Path) -> Stage:
    """A bare `psql \\copy` of `listens` into `BARE_TABLE` (the import's yardstick, the one
    `bench.import_listens` measures against), dropped afterwards."""
    psql(schema, BARE_TABLE)
    stage, _ = run_stage(
        "bare psql \\copy of listens.tsv",
        psql_command(schema, bare_copy_sql(listens)),
        runs / "bare-copy.log",
        psql_env(schema),
    )
    stage.detail["table"] = BARE_TABLE
    psql(schema, "DROP TABLE bare_listens")
    return stage


def snapshot_command(database: str, runs: Path) -> list[str]:
    """`pipeline.snapshot.snapshot_catalogue` of the catalogue at `database` into
    `runs/snapshot/` (no CLI command runs the step alone), in a child process."""
    code = (
        "import sys; from pathlib import Path; from catalogue.db import open_catalogue;"
        " from pipeline.snapshot import snapshot_catalogue;"
        " print(snapshot_catalogue(open_catalogue(sys.argv[1]), Path(sys.argv[2])).counts)"
    )
    return [sys.executable, "-c", code, database, str(runs / "snapshot")]


def nightly(
    args: argparse.Namespace,
    work: Path,
    runs: Path,
    scale: Scale,
    postgres: tuple[str, str, Path, str],
    stages: list[Stage],
) -> None:
    """Stages 2-4 of the module docstring, appended to `stages` as they end. `postgres`:
    the schema, its URL, the audio store, the bare export's psql command."""
    schema, pg_url, store, sums = postgres
    dataset = work / "dataset"
    # 2. the first nightly run, from scratch, and the bare export of the same sums
    registry = runs / "registry"
    database = ["--database", pg_url, "--audio-store", str(store)]
    rows, first, _ = run_pipeline_stage(
        "pipeline, first night (from scratch)", registry, database, "first", runs, args
    )
    stages.extend(rows)
    stage, _ = run_stage(
        "bare psql \\copy of the sums TO a file",
        psql_command(schema, sums),
        runs / "bare-sums.log",
        psql_env(schema),
    )
    stages.append(stage)

    # the demo-size version: the world alone
    demo_registry = runs / "demo-registry"
    demo_rows, _, _ = run_pipeline_stage(
        "demo-size pipeline (the world alone)",
        demo_registry,
        ["--dataset", str(work / "world")],
        "demo",
        runs,
        args,
    )
    stages.append(demo_rows[0])

    # 3. serving the first version beside the demo-size one
    clips = sorted(find_audio(work / "world").values())
    body, content_type = multipart(clips[0].read_bytes(), clips[0].name)
    server = start_server(registry, pg_url, store, runs / "serve.log")
    demo_server = start_server(
        demo_registry,
        f"sqlite:///{runs / 'demo.db'}",
        runs / "demo-store",
        runs / "serve-demo.log",
    )
    try:
        ready_memory = server.sampler.peak_mib()
        latency = paired_latency(server, demo_server, body, content_type, args.requests)
        serving = Stage(
            "serve: start to /readyz",
            server.ready_seconds,
            *ready_memory,
            "coldstart serve",
            {
                "demo_ready_seconds": demo_server.ready_seconds,
                "demo_peak_rss_mib": demo_server.sampler.peak_mib()[0],
                "rss_after_requests_mib": round(server.sampler.samples[-1][1] / 2**20, 1),
                **latency,
            },
        )
        stages.append(serving)
        stop_server(demo_server)

        # 4. a day through the API, the second night, the swap under load
        day = day_of_listens(dataset, scale.new_listens, args.seed)
        posted = post_day(server, day, clips, scale.new_tracks)
        stages.append(
            Stage(
                "API: a day of listens and new tracks",
                posted["listens_seconds"] + posted["tracks_seconds"],
                *server.sampler.peak_mib(),
                "POST /v1/listens, /v1/tracks",
                posted,
            )
        )
        before_swap = server.sampler.samples[-1][1] / 2**20
        loop = RequestLoop(server, body, content_type, first["version_id"])
        watcher = threading.Thread(
            target=_start_at_publish,
            args=(registry / "pipeline" / "runs" / "second", loop),
            daemon=True,
        )
        watcher.start()
        rows, second, _ = run_pipeline_stage(
            "pipeline, second night (warm, fine-tune)",
            registry,
            database,
            "second",
            runs,
            args,
        )
        stages.extend(rows)
        watcher.join()
        swap = loop.join()
        swap["rss_before_mib"] = round(before_swap, 1)
        swap_memory = server.sampler.peak_mib(loop.started_at, loop.ended_at)
        swap["peak_rss_mib"] = swap_memory[0]
        swap["swapped_to"] = second["version_id"]
        stages.append(
            Stage(
                "serve: hot swap under a request loop",
                round(loop.ended_at - loop.started_at, 2),
                *swap_memory,
                "POST /v1/similar loop",
                swap,
            )
        )
    finally:
        stop_server(server)
        if demo_server.process.poll() is None:
            stop_server(demo_server)


def _start_at_publish(run_dir: Path, loop: RequestLoop) -> None:
    """Start the request loop when the second run begins its publish step."""
    log = run_dir / "pipeline.log"
    while True:
        if log.is_file() and "step publish: started" in log.read_text():
            loop.start()
            return
        time.sleep(0.2)


def markdown(results: dict[str, Any]) -> str:
    scale, catalogue = results["scale"], results["catalogue"]
    lines = [
        f"fraction {scale['fraction']}: {catalogue['users']:,} users x {catalogue['songs']:,}"
        f" songs ({catalogue['songs_with_audio']:,} with {catalogue['clip_seconds']:g}-s clips:"
        f" {catalogue['rendered_songs']:,} rendered, {catalogue['recombined_songs']:,}"
        f" recombined; {catalogue['audio_gib']} GiB) x {catalogue['listens']:,}"
        f" listens; load {results['machine']['load_at_start'][0]:.1f} at start,"
        f" {results['machine']['load_at_end'][0]:.1f} at end ({results['machine']['cores']} cores)",
        "",
        "| stage | seconds | peak RSS MiB (largest process) | peak PSS MiB (tree) | detail |",
        "|---|---:|---:|---:|---|",
    ]
    for stage in results["stages"]:
        detail = ", ".join(f"{k} {v}" for k, v in stage["detail"].items() if k not in ("failures",))
        seconds, rss, pss = stage["seconds"], stage["peak_rss_mib"], stage["peak_pss_mib"]
        lines.append(f"| {stage['name']} | {seconds:.1f} | {rss:,.0f} | {pss:,.0f} | {detail} |")
    if "disk_gib" in results:
        sizes = ", ".join(f"{name} {gib} GiB" for name, gib in results["disk_gib"].items())
        lines += ["", f"on disk at the end: {sizes}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.01, help="of the Taste Profile's size")
    parser.add_argument(
        "--audio-songs",
        type=int,
        help=f"songs with audio (default {AUDIO_SHARE:.0%} of the catalogue's songs)",
    )
    parser.add_argument(
        "--rendered-songs",
        type=int,
        default=RENDERED_SONGS,
        help="of those, rendered by the world generator with listeners of their own; the"
        " rest are recombinations of them given to back-catalogue songs",
    )
    parser.add_argument(
        "--new-tracks", type=int, default=500, help="tracks added by audio on day 2"
    )
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=12, help="CNN epochs of the first night")
    parser.add_argument("--fine-tune-epochs", type=int, default=4)
    parser.add_argument("--max-minutes", type=float, default=4.0, help="CNN training bound")
    parser.add_argument(
        "--map-tolerance",
        type=float,
        default=1.0,
        help="the gate's, both metrics (default: record its decision, publish anyway, so that"
        " the second night and the swap are measured)",
    )
    parser.add_argument("--requests", type=int, default=30, help="paired /v1/similar requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder kept between runs (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    parser.add_argument(
        "--stages",
        type=_stages,
        default=STAGES,
        help=f"comma-separated, of {','.join(STAGES)} (default all): what runs after the"
        " PostgreSQL import, which always runs (the rest reads that catalogue)",
    )
    args = parser.parse_args(argv)
    if args.work is None:
        args.work = (
            Path(tempfile.gettempdir()) / "coldstart-rehearsal" / f"fraction-{args.fraction}"
        )
    return rehearse(args)


def _stages(value: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = set(chosen) - set(STAGES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stages {sorted(unknown)}: choose from {STAGES}")
    return chosen


if __name__ == "__main__":
    main()
