"""What a running service holds, composed: the served state, the version swapper, the
catalogue follower, track writes, the searches and the response views; and the threads.

- `service.serving`: the `Serving` (version + the cold tracks on top of it) and the
  pinning of each request to the one it first reads (`Runtime.pinned`, opened around
  every request by the app's middleware);
- `service.swapper`: loading a newly published version off to the side and switching to
  it without a restart;
- `service.follower`: bringing the index in line with the tracks other replicas write;
- `service.cold_tracks`: placing cold tracks in an index (stored vector or re-embedded);
- `service.listeners`: a user's played songs and vector (fitted, or folded in);
- `service.track_writes`, `service.queries`, `service.views`: what the routes do;
- `service.decode_pool`: the worker processes that decode uploads.

All methods here are blocking (database, model, index): routes call them in worker
threads, the CPU-heavy ones through `Runtime.cpu` so that only `inference_slots` run at
once; the recommendation and a track's neighbours (a search in microseconds, at most one
indexed read) run on the event loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import anyio
import faiss
import torch

from audio.decode import DecodeLimits
from catalogue import Catalogue, SchemaTooNew, open_catalogue
from catalogue.runs import last_finished_run, record_activation
from pipeline.registry.current import (
    Activation,
    VersionSummary,
    activate_version,
    describe_versions,
)
from pipeline.registry.read import LoadedVersion
from service import schemas
from service.cold_tracks import ColdTracks
from service.decode_pool import DecodePool
from service.embedder import UploadEmbedder
from service.errors import NotReady
from service.follower import CatalogueFollower
from service.listeners import Listeners
from service.memory import TRIM_EVERY_S, trim_free_memory
from service.metrics import Freshness, LastRun, ServiceMetrics
from service.queries import Queries, Recommendations, UploadResult
from service.serving import ServedState
from service.settings import Settings
from service.swapper import VersionSwapper
from service.track_writes import Placed, TrackWriter
from service.views import Views
from training.inference import Embedding

T = TypeVar("T")
log = logging.getLogger("coldstart.service")


def one_search_thread() -> None:
    """Run the calling thread's FAISS searches on that thread alone. A request searches for
    one vector: OpenMP's team for it cost more than the search (10x on a busy machine),
    and the cores are the workers' to use. OpenMP keeps the thread count per thread: the
    event loop's thread sets it at start-up, `Runtime.cpu` in each worker thread."""
    faiss.omp_set_num_threads(1)


def _searching_alone(function: Callable[..., T], *args: object) -> T:
    one_search_thread()
    return function(*args)


class Runtime:
    """The service's state; one per app. Routes depend on this class alone."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limits = DecodeLimits(
            max_seconds=settings.max_audio_seconds, max_bytes=settings.max_upload_bytes
        )
        self.catalogue: Catalogue | None = None
        self.state = ServedState()
        self._stop = threading.Event()
        self.decode_pool = DecodePool(
            settings.decode_worker_limits(), settings.max_upload_bytes, metrics
        )
        embedder = UploadEmbedder(self.decode_pool, self.limits, metrics)
        self.cold_tracks = ColdTracks(self._catalogue, embedder, metrics)
        self.swapper = VersionSwapper(
            settings, metrics, self.state, self.cold_tracks, self._catalogue, self._stop
        )
        self.views = Views(self._catalogue, self.state, embedder)
        self.follower = CatalogueFollower(
            self._catalogue, self.state, self.cold_tracks, metrics, self._stop, self.views.forget
        )
        self.listeners = Listeners(self._catalogue, metrics, settings.folded_users_kept)
        self.queries = Queries(self.state, embedder, self.listeners)
        self.tracks = TrackWriter(self._catalogue, self.state, embedder, self.views, metrics)
        self._threads: list[threading.Thread] = []
        self._limiter: anyio.CapacityLimiter | None = None
        metrics.add_scraped(Freshness(self._served_created_at, self._last_run))

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the catalogue and load the current version (blocking); a registry without
        a usable version leaves the service up but not ready (503s)."""
        torch.set_num_threads(self.settings.torch_threads)
        try:
            self.catalogue = open_catalogue(
                self.settings.database_url, self.settings.audio_store_dir()
            )
        except SchemaTooNew as error:  # the one line an operator needs, before the traceback
            log.error("%s", error)
            raise
        self.follower.open()  # before the version reads the catalogue
        self.decode_pool.start()
        self.swapper.load_first()

    def start_watching(self) -> None:
        """Poll `REG/current` every `model_poll_seconds` and the catalogue's change log
        every `catalogue_poll_seconds`, each in its own thread (0: never), so that a long
        swap preparation does not hold up the other replicas' writes; and trim the free
        memory glibc holds every `TRIM_EVERY_S` (`service.memory`)."""
        if self._threads:
            return
        for poll, interval, name in (
            (self.poll_registry, self.settings.model_poll_seconds, "model-watcher"),
            (self.follow_catalogue, self.settings.catalogue_poll_seconds, "catalogue-follower"),
            (trim_free_memory, TRIM_EVERY_S, "memory-trim"),
        ):
            if interval > 0:
                thread = threading.Thread(
                    target=self._repeat,
                    args=(poll, interval),
                    name=f"coldstart-{name}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def close(self) -> None:
        """Stop the threads (a preparation in progress is abandoned) and the catalogue."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []
        self.decode_pool.close()
        if self.catalogue is not None:
            self.catalogue.close()

    def _repeat(self, poll: Callable[[], object], interval: float) -> None:
        while not self._stop.wait(interval):
            poll()

    def poll_registry(self) -> bool:
        """Switch to the version `REG/current` names if it is another one; True if it did."""
        return self.swapper.poll_registry()

    def follow_catalogue(self) -> int:
        """Bring the served index in line with other replicas' writes; how many changed."""
        return self.follower.follow()

    # ---- the served state ---------------------------------------------------------------

    def pinned(self) -> AbstractContextManager[None]:
        """Pin the serving state for one request (see `ServedState.pinned`)."""
        return self.state.pinned()

    def require_version(self) -> LoadedVersion:
        """The version this request answers with; `NotReady` if none is loaded."""
        return self.state.require().version

    def is_new(self, song_id: str) -> bool:
        return self.state.is_new(song_id)

    def _served_created_at(self) -> datetime | None:
        serving = self.state.serving
        return None if serving is None else datetime.fromisoformat(serving.version.created_at)

    def _last_run(self) -> LastRun | None:
        if self.catalogue is None:
            return None
        run = last_finished_run(self.catalogue)
        if run is None or run.finished_at is None:
            return None
        seconds = (run.finished_at - run.started_at).total_seconds() if run.started_at else None
        return LastRun(run.status, seconds, run.finished_at)

    def _catalogue(self) -> Catalogue:
        if self.catalogue is None:
            raise NotReady("the catalogue is not open yet")
        return self.catalogue

    async def cpu(self, function: Callable[..., T], *args: object) -> T:
        """Run CPU-heavy `function(*args)` in a worker thread, `inference_slots` at a time,
        its searches on that thread alone (`one_search_thread`)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.inference_slots)
        return await anyio.to_thread.run_sync(
            _searching_alone, function, *args, limiter=self._limiter
        )

    # ---- what the routes call -----------------------------------------------------------

    def hits(self, neighbours: list[tuple[str, float]]) -> list[dict[str, object]]:
        return self.views.hits(neighbours)

    def track(self, track_id: str) -> schemas.Track:
        return self.views.track(track_id)

    def map_songs(self, space: schemas.Space, limit: int) -> schemas.CatalogueMapResponse:
        return self.views.map_songs(space, limit)

    def audio_file(self, track_id: str) -> tuple[Path, str]:
        return self.views.audio_file(track_id)

    def similar_to_upload(
        self, data: bytes, name: str, k: int, space: schemas.Space, artist: str | None = None
    ) -> UploadResult:
        return self.queries.similar_to_upload(data, name, k, space, artist)

    def similar_to_track(
        self, track_id: str, k: int, space: schemas.Space
    ) -> list[tuple[str, float]]:
        return self.queries.similar_to_track(track_id, k, space)

    def recommend(
        self, user_id: str, k: int, only_new: bool, include_played: bool
    ) -> Recommendations:
        return self.queries.recommend(user_id, k, only_new, include_played)

    def add_track(
        self, data: bytes, filename: str, title: str, artist: str, track_id: str | None
    ) -> tuple[schemas.Track, Embedding, Placed]:
        return self.tracks.add_track(data, filename, title, artist, track_id)

    def delete_track(self, track_id: str) -> None:
        self.tracks.delete_track(track_id)

    def activate(
        self, version_id: str, requested_by: str | None, note: str | None
    ) -> tuple[Activation, str | None]:
        """Make `version_id` current (a rollback, or a roll forward), record it in the run
        history with who asked, and swap to it here at once, as the watcher would (the
        other replicas swap at their next poll). Returns the activation and the id of its
        run record (None when it was current already: nothing changed)."""
        catalogue = self._catalogue()  # the history must be writable before anything changes
        activation = activate_version(self.settings.registry, version_id, requested_by, note)
        run_id = None
        if activation.changed:
            run_id = record_activation(
                catalogue, "api", version_id, activation.previous, requested_by, note
            ).id
        self.swapper.poll_registry()
        return activation, run_id

    def versions(self) -> list[VersionSummary]:
        """The registry's versions, newest first, with which is current and withdrawn."""
        return describe_versions(self.settings.registry)

    def add_listens(self, listens: list[schemas.ListenIn]) -> list[schemas.ListenResult]:
        """Record plays, then fold their users in again for the served version (if any)."""
        results = self.tracks.add_listens(listens)
        serving = self.state.current()
        if serving is not None:
            stored = {listens[r.index].user_id for r in results if r.status == "stored"}
            self.listeners.refresh(serving.version, stored)
        return results
