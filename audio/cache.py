"""The on-disk mel cache: one float16 log-mel per song, memory-mapped by training.

Layout of a cache folder (default `DATASET/mel_cache/<front-end fingerprint[:12]>/`):

    front_end.json        the `FrontEndConfig` it was made with; another front end is refused
    <song_id>.npy         (n_mels, n_frames) float16, the song's `model_input` (its log-mel;
                          behind a waveform front end its samples, (1, n_samples))
    <song_id>.stamp.json  {"source", "size", "mtime_ns", "n_frames"} of the audio file it came from
    failures.json         {song_id: {"code", "reason", "source", "size", "mtime_ns"}}
    index.json            {"songs": {song_id: n_frames}}: written last; without it the cache
                          is unfinished and `MelCache.open` refuses it

Every file is written under a temporary name and moved into place with `os.replace`,
the mel before its stamp, so an interrupted run leaves no torn file and the next run
recomputes exactly the songs whose stamp is missing or differs from their audio file.
Songs that fail (`AudioError`: too short, silent, undecodable) are recorded, not fatal,
and are not retried until their file changes.

The songs are computed by a `JobRunner`: this module's process pool by default, or
`audio.spark_featurize` on a Spark cluster. Either way each song goes through
`featurize_song`, so the files are the same byte for byte, and the driver alone writes
`failures.json` and `index.json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from artifacts.files import TMP_SUFFIX, LockHeld, file_lock, write_atomic, write_text_atomic
from audio.config import FRONT_END, FrontEndConfig
from audio.errors import AudioError
from audio.frontend import model_input

CONFIG_FILE = "front_end.json"
INDEX_FILE = "index.json"
FAILURES_FILE = "failures.json"
STAMP_SUFFIX = ".stamp.json"
_LOCK_FILE = ".lock"


def default_cache_dir(dataset_root: Path, config: FrontEndConfig = FRONT_END) -> Path:
    """`dataset_root/mel_cache/<config.fingerprint()[:12]>`: one folder per front end."""
    return Path(dataset_root) / "mel_cache" / config.fingerprint()[:12]


@dataclass(frozen=True)
class SourceStamp:
    """What identifies the audio file a mel came from: its name, size and mtime."""

    source: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> SourceStamp:
        stat = path.stat()
        return cls(path.name, stat.st_size, stat.st_mtime_ns)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SourceStamp:
        return cls(str(values["source"]), int(values["size"]), int(values["mtime_ns"]))

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass
class FeaturizeSummary:
    """What one `featurize_dataset` run did.

    Every song of the dataset is counted once: `computed` now, `skipped_up_to_date`
    (cached before from the same file) or `failed` (song id -> why; failures of earlier
    runs whose file has not changed are kept, not retried). `removed` counts cached songs
    no longer in the dataset, deleted; `cached` = computed + skipped_up_to_date.
    """

    cache_dir: Path
    computed: int = 0
    skipped_up_to_date: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    removed: int = 0
    cached: int = 0


@dataclass(frozen=True)
class SongResult:
    """A featurized song's frame count, or the `AudioError` code and reason it failed with."""

    n_frames: int | None = None
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class SongJob:
    """One song to featurize: its audio file, the stamp it is stored under, and where."""

    song_id: str
    path: Path
    stamp: SourceStamp
    cache_dir: Path
    config: FrontEndConfig


# Computes `featurize_song` for every job, yielding (job, result) as songs finish.
JobRunner = Callable[[list[SongJob]], Iterable[tuple[SongJob, SongResult]]]


def featurize_dataset(
    dataset_root: Path,
    cache_dir: Path | None = None,
    config: FrontEndConfig = FRONT_END,
    workers: int | None = None,
    progress: bool = True,
    runner: JobRunner | None = None,
) -> FeaturizeSummary:
    """Compute and store the log-mel of every song in `dataset_root/audio`.

    Songs already cached from an unchanged file are skipped, so a re-run after an
    interruption or after adding songs does only the missing work. `workers` processes
    (default: every core; 1 runs in this process) share the songs, unless `runner`
    computes them elsewhere (e.g. `audio.spark_featurize.spark_runner`). Raises
    `FrontEndMismatchError` if `cache_dir` was made with another front end, and
    `FileNotFoundError` if the dataset has no audio folder.
    """
    # Imported here so that worker processes, which import this module, skip pandas.
    from corpus.dataset import AUDIO_DIR, find_audio

    dataset_root = Path(dataset_root)
    if not (dataset_root / AUDIO_DIR).is_dir():
        raise FileNotFoundError(f"{dataset_root / AUDIO_DIR}: no audio folder")
    cache_dir = (
        Path(cache_dir) if cache_dir is not None else default_cache_dir(dataset_root, config)
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir):
        _claim(cache_dir, config)
        if runner is None:
            runner = partial(_run, workers=workers)
        return _featurize(find_audio(dataset_root), cache_dir, config, runner, progress)


def _featurize(
    sources: dict[str, Path],
    cache_dir: Path,
    config: FrontEndConfig,
    runner: JobRunner,
    progress: bool,
) -> FeaturizeSummary:
    (cache_dir / INDEX_FILE).unlink(missing_ok=True)  # unfinished from here on
    for leftover in cache_dir.glob(f"*{TMP_SUFFIX}"):
        leftover.unlink()
    summary = FeaturizeSummary(cache_dir, removed=_remove_orphans(cache_dir, sources))
    old_failures = _read_json(cache_dir / FAILURES_FILE, default={})
    failures: dict[str, dict[str, Any]] = {}
    n_frames: dict[str, int] = {}
    jobs: list[SongJob] = []
    for song_id, path in sources.items():
        stamp = SourceStamp.of(path)
        cached = _cached_n_frames(cache_dir, song_id, stamp)
        if cached is not None:
            n_frames[song_id] = cached
        elif song_id in old_failures and SourceStamp.from_dict(old_failures[song_id]) == stamp:
            failures[song_id] = old_failures[song_id]
        else:
            jobs.append(SongJob(song_id, path, stamp, cache_dir, config))
    summary.skipped_up_to_date = len(n_frames)
    try:
        with _progress_bar(len(jobs), enabled=progress and bool(jobs)) as advance:
            for job, result in runner(jobs):
                if result.n_frames is not None:
                    n_frames[job.song_id] = result.n_frames
                    summary.computed += 1
                else:
                    _remove_song(cache_dir, job.song_id)
                    failures[job.song_id] = {
                        "code": result.code,
                        "reason": result.reason,
                        **job.stamp.to_dict(),
                    }
                advance()
    finally:
        _write_json(cache_dir / FAILURES_FILE, dict(sorted(failures.items())))
    _write_json(cache_dir / INDEX_FILE, {"songs": dict(sorted(n_frames.items()))})
    summary.failed = {song_id: _failure_text(entry) for song_id, entry in sorted(failures.items())}
    summary.cached = len(n_frames)
    return summary


def featurize_song(job: SongJob) -> SongResult:
    """Worker: one song's mel to `<song_id>.npy` float16, then its stamp; or why not."""
    try:
        mel = model_input(job.path, job.config, name=job.path.name)
    except AudioError as error:
        return SongResult(code=error.code, reason=str(error))
    n_frames = int(mel.shape[1])
    write_atomic(
        job.cache_dir / f"{job.song_id}.npy",
        lambda handle: np.save(handle, mel.astype(np.float16), allow_pickle=False),
        sync=False,  # a lost mel is recomputed: its stamp is written after it
    )
    _write_json(
        job.cache_dir / f"{job.song_id}{STAMP_SUFFIX}",
        {**job.stamp.to_dict(), "n_frames": n_frames, "finite": True},
    )
    return SongResult(n_frames=n_frames)


def _run(jobs: list[SongJob], workers: int | None) -> Iterator[tuple[SongJob, SongResult]]:
    """(job, result) as songs finish, from `workers` spawned processes (1: in this one)."""
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        yield from ((job, featurize_song(job)) for job in jobs)
        return
    # spawn, not fork: a forked copy of a process that has started torch's thread pools
    # can hang. Few songs in flight at once keep memory flat on a large catalogue.
    pool = ProcessPoolExecutor(workers, get_context("spawn"), initializer=_init_worker)
    try:
        queue = iter(jobs)
        running: dict[Future[SongResult], SongJob] = {}

        def submit(batch: Iterable[SongJob]) -> None:
            for job in batch:
                running[pool.submit(featurize_song, job)] = job

        submit(islice(queue, 4 * workers))
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
            submit(islice(queue, len(done)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the processes are the parallelism


@contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A rich progress bar over `total` songs (or none); yields its advance()."""
    columns = (
        TextColumn("featurize"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not enabled) as bar:
        task = bar.add_task("featurize", total=total)
        yield lambda: bar.advance(task)


@contextmanager
def _exclusive_lock(cache_dir: Path) -> Iterator[None]:
    """Hold the cache folder's lock file: two runs writing one cache would race."""
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(cache_dir / _LOCK_FILE, wait=False))
        except LockHeld as error:
            raise RuntimeError(
                f"{cache_dir}: another featurize run is writing this cache"
            ) from error
        yield


def _claim(cache_dir: Path, config: FrontEndConfig) -> None:
    """Record the front end of a new cache; refuse to add to one made with another."""
    saved = cache_dir / CONFIG_FILE
    if saved.is_file():
        config.require_same(_read_json(saved), what=f"mel cache {cache_dir}")
    else:
        _write_json(saved, config.to_dict())


def _cached_n_frames(cache_dir: Path, song_id: str, stamp: SourceStamp) -> int | None:
    """The song's frame count if its finite mel is stored from this very file, else None.

    A stamp written before mels were checked finite (no "finite" key) has its mel read and
    checked once: a NaN mel cached then is computed again (and now refused)."""
    stamp_file = cache_dir / f"{song_id}{STAMP_SUFFIX}"
    recorded = _read_json(stamp_file, default=None)
    mel_file = cache_dir / f"{song_id}.npy"
    if recorded is None or not mel_file.is_file() or SourceStamp.from_dict(recorded) != stamp:
        return None
    if not recorded.get("finite"):
        if not np.isfinite(np.load(mel_file, mmap_mode="r", allow_pickle=False)).all():
            return None
        _write_json(stamp_file, {**recorded, "finite": True})
    return int(recorded["n_frames"])


def _remove_song(cache_dir: Path, song_id: str) -> None:
    (cache_dir / f"{song_id}{STAMP_SUFFIX}").unlink(missing_ok=True)
    (cache_dir / f"{song_id}.npy").unlink(missing_ok=True)


def _remove_orphans(cache_dir: Path, sources: dict[str, Path]) -> int:
    """Delete the mels of songs that left the dataset; return how many."""
    orphans = [path.stem for path in cache_dir.glob("*.npy") if path.stem not in sources]
    for song_id in orphans:
        _remove_song(cache_dir, song_id)
    return len(orphans)


def _failure_text(entry: dict[str, Any]) -> str:
    return f"{entry['code']}: {entry['reason']}"


def _write_json(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=1), sync=False)


def _read_json(path: Path, default: Any = ...) -> Any:
    """Parsed JSON of `path`; `default` when it is missing (if given)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if default is ...:
            raise
        return default


class MelCache:
    """A finished mel cache, read-only: song ids, frame counts, memory-mapped mels."""

    def __init__(
        self,
        cache_dir: Path,
        config: FrontEndConfig,
        n_frames: dict[str, int],
        failures: dict[str, str],
    ) -> None:
        self.cache_dir = cache_dir
        self.config = config
        self.failures = failures
        self._n_frames = n_frames

    @classmethod
    def open(cls, cache_dir: Path) -> MelCache:
        """Open a cache folder; `FileNotFoundError` if it is not a finished mel cache."""
        cache_dir = Path(cache_dir)
        if not (cache_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{cache_dir}: not a mel cache (no {CONFIG_FILE})")
        if not (cache_dir / INDEX_FILE).is_file():
            raise FileNotFoundError(
                f"{cache_dir}: unfinished mel cache (no {INDEX_FILE}): run `coldstart featurize`"
            )
        config = FrontEndConfig.from_dict(_read_json(cache_dir / CONFIG_FILE))
        n_frames = {song: int(n) for song, n in _read_json(cache_dir / INDEX_FILE)["songs"].items()}
        failures = {
            song_id: _failure_text(entry)
            for song_id, entry in _read_json(cache_dir / FAILURES_FILE, default={}).items()
        }
        return cls(cache_dir, config, n_frames, failures)

    @property
    def song_ids(self) -> list[str]:
        """The songs with a stored mel, sorted."""
        return list(self._n_frames)

    def __contains__(self, song_id: object) -> bool:
        return song_id in self._n_frames

    def __len__(self) -> int:
        return len(self._n_frames)

    def n_frames(self, song_id: str) -> int:
        return self._n_frames[self._known(song_id)]

    def load(self, song_id: str) -> np.ndarray:
        """The song's log-mel (n_mels, n_frames) float16, memory-mapped read-only."""
        path = self.cache_dir / f"{self._known(song_id)}.npy"
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def _known(self, song_id: str) -> str:
        if song_id not in self._n_frames:
            reason = self.failures.get(song_id, "not in the dataset when it was featurized")
            raise KeyError(f"{song_id!r} has no mel in {self.cache_dir} ({reason})")
        return song_id
