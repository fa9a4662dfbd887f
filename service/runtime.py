"""What a running service holds: the model version it serves, the catalogue, and the cold
tracks added on top of that version; what each request does with them; and how a newly
published version takes over without a restart.

Loading a version (at start, and whenever `REG/current` names another one) happens off to
the side while the old version keeps answering:

1. `load_version` verifies the version file by file and loads it;
2. a version built from a dataset (`parameters.source` "dataset", or none: older versions)
   has its songs (titles, artists) imported: all of them into a fresh catalogue, or the
   ones it adds over the version served before; a catalogue that already has songs keeps
   them as they are, so a song deleted through the API stays deleted. A version built from
   the catalogue DB ("database") needs nothing imported;
3. songs the version holds that the catalogue no longer has (deleted) leave its index;
4. cold tracks of the catalogue that the version's index lacks (added through the API,
   also while the nightly run was going) go into both spaces: at their stored vector for
   this version (a restart), or re-embedded from their stored audio with this version's
   encoder (the vector then stored). A track the version already holds keeps the
   version's vector: the pipeline embedded it, or listens made it warm.

The switch itself takes the write lock that `add_track` and `delete_track` hold: tracks
added or deleted while the version was being prepared are caught up, then one `Serving`
replaces the old one in a single assignment. A version that fails to load or prepare is
logged and counted and the old one keeps serving; it is tried again when `current` names
another version, or after `RETRY_FAILED_VERSION_S`.

Several replicas (processes, machines) may serve one catalogue, each with its own index in
memory. Every track written through any of them logs an event in the catalogue
(`catalogue.events`), and a second thread follows that log every `catalogue_poll_seconds`:
a track another replica added enters this index at the vector that replica stored for
the served version (waited for across polls; after `VECTOR_GRACE_S` re-embedded here from
the stored audio, and stored), a track it deleted leaves it. A track is brought in line
with the catalogue as it is now, not replayed, so this replica's own writes come back as
no-ops. A track seen while a swap prepares also joins the swap's catch-up, so the new
version has it too; one seen earlier was already in the catalogue the swap read.

Each request reads the serving state once, at its first use, and keeps it to its end (the
app's middleware opens `Runtime.pinned` around every request): a request that began on the
old version finishes on it and names it, and the old version is freed once the last such
request is done.

All methods here are blocking (database, model, index): routes call them in worker
threads, the CPU-heavy ones through `Runtime.cpu` so that only `inference_slots` run at
once.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import numpy as np
import torch
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from artifacts.manifest import ArtifactError
from audio.config import FrontEndMismatchError
from audio.decode import DecodeLimits
from audio.errors import AudioError
from catalogue import (
    Catalogue,
    DuplicateTrack,
    InvalidAudio,
    InvalidTrack,
    TrackNotFound,
    TrackRecord,
    open_catalogue,
)
from catalogue import ListenIn as CatalogueListen
from catalogue.events import EventCursor, TrackEvent
from catalogue.vectors import put_track_vector, track_vectors
from corpus.dataset import AUDIO_EXTENSIONS, find_audio, read_songs
from index.vector_index import UnknownIdError
from pipeline.registry.layout import RegistryError
from pipeline.registry.read import LoadedVersion, current_version_id, load_version
from service import schemas
from service.errors import BadRequest, Conflict, NotFound, NotReady, from_audio_error
from service.metrics import ServiceMetrics
from service.settings import Settings
from training.inference import Embedding, embed_audio

log = logging.getLogger("coldstart.service")

T = TypeVar("T")
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
}
# A version that failed to load is tried again after this long even if `current` still
# names it (an I/O error may pass), but not at every poll.
RETRY_FAILED_VERSION_S = 300.0
# How long a track another replica added waits for that replica to store its vector for
# the served version (it does so right after the row) before this one embeds it itself.
VECTOR_GRACE_S = 10.0
# Failures expected of a bad version; anything else is logged with its traceback.
_VERSION_ERRORS = (RegistryError, ArtifactError, FrontEndMismatchError, OSError)


@dataclass(frozen=True)
class UploadResult:
    """An upload's embedding and its nearest songs as (id, cosine), with the search time."""

    embedding: Embedding
    neighbours: list[tuple[str, float]]
    search_ms: float


@dataclass(frozen=True)
class Serving:
    """A model version with what the service put on top of it, replaced whole by a swap
    and by every write (so a request's pinned state never changes under it).

    `new_ids`: the version's cold songs plus the cold tracks added on top of it (what the
    `new` flag and `only_new` mean); `published_songs`: the ids of the version's songs.csv,
    so that the next dataset version imports only the songs it adds."""

    version: LoadedVersion
    new_ids: frozenset[str]
    published_songs: frozenset[str]


class _Pin:
    """The serving state one request uses: taken at its first use, then kept."""

    __slots__ = ("serving", "taken")

    def __init__(self) -> None:
        self.serving: Serving | None = None
        self.taken = False


_PIN: ContextVar[_Pin | None] = ContextVar("coldstart_pin", default=None)


class _SwapStopped(Exception):
    """The service is shutting down while a version was being prepared."""


class Runtime:
    """The service's state; one per app."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limits = DecodeLimits(
            max_seconds=settings.max_audio_seconds, max_bytes=settings.max_upload_bytes
        )
        self.catalogue: Catalogue | None = None
        self.load_error: str | None = None
        self._serving: Serving | None = None
        # Held by track writes and the last step of a swap; `_touched` collects the ids
        # written while a swap prepares, for it to catch up.
        self._write_lock = threading.Lock()
        self._touched: set[str] | None = None
        self._failed: tuple[str, float] | None = None
        self._registry_problem: str | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._follower: threading.Thread | None = None
        # The change log as read so far, and the tracks it named that the served version
        # has not been brought in line with yet: id -> (version id, first seen).
        self._events: EventCursor | None = None
        self._pending: dict[str, tuple[str, float]] = {}
        self._follow_problem: str | None = None
        self._dataset_audio: tuple[str, dict[str, Path]] | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the catalogue and load the current version (blocking); a registry without
        a usable version leaves the service up but not ready (503s)."""
        torch.set_num_threads(self.settings.torch_threads)
        self.catalogue = open_catalogue(self.settings.database_url, self.settings.audio_store_dir())
        # Before the version reads the catalogue: what it misses comes after this point.
        self._events = EventCursor(self.catalogue)
        self.metrics.event_floor.set(self._events.floor)
        self.metrics.model_loaded.set(0)
        try:
            version_id = current_version_id(self.settings.registry)
        except RegistryError as error:
            self.load_error = self._registry_problem = str(error)
            log.error("no model version loaded: %s", error)
            return
        self._switch_to(version_id)

    def start_watching(self) -> None:
        """Poll `REG/current` every `model_poll_seconds` and the catalogue's change log
        every `catalogue_poll_seconds`, each in its own thread (0: never), so that a long
        swap preparation does not hold up the other replicas' writes."""
        model_interval = self.settings.model_poll_seconds
        if model_interval > 0 and self._watcher is None:
            self._watcher = threading.Thread(
                target=self._repeat,
                args=(self.poll_registry, model_interval),
                name="coldstart-model-watcher",
                daemon=True,
            )
            self._watcher.start()
        catalogue_interval = self.settings.catalogue_poll_seconds
        if catalogue_interval > 0 and self._follower is None:
            self._follower = threading.Thread(
                target=self._repeat,
                args=(self.follow_catalogue, catalogue_interval),
                name="coldstart-catalogue-follower",
                daemon=True,
            )
            self._follower.start()

    def close(self) -> None:
        """Stop the threads (a preparation in progress is abandoned) and the catalogue."""
        self._stop.set()
        for thread in (self._watcher, self._follower):
            if thread is not None:
                thread.join()
        self._watcher = self._follower = None
        if self.catalogue is not None:
            self.catalogue.close()

    def _repeat(self, poll: Callable[[], object], interval: float) -> None:
        while not self._stop.wait(interval):
            poll()

    def poll_registry(self) -> bool:
        """Switch to the version `REG/current` names if it is another one; True if it did."""
        try:
            version_id = current_version_id(self.settings.registry)
        except (RegistryError, OSError) as error:
            if str(error) != self._registry_problem:  # once per problem, not every poll
                self._registry_problem = str(error)
                log.warning("model registry: %s", error)
            return False
        self._registry_problem = None
        serving = self._serving
        if serving is not None and serving.version.version_id == version_id:
            return False
        failed = self._failed
        if (
            failed is not None
            and failed[0] == version_id
            and time.monotonic() - failed[1] < RETRY_FAILED_VERSION_S
        ):
            return False
        return self._switch_to(version_id)

    def _switch_to(self, version_id: str) -> bool:
        """Load and prepare `version_id` off to the side, then serve it; on any failure the
        version served so far (if any) stays. True if the switch happened."""
        started = time.perf_counter()
        previous = self._serving
        was = previous.version.version_id if previous else "none"
        try:
            serving, re_embedded = self._prepare(version_id, previous)
        except _SwapStopped:
            log.info("stopped while preparing model version %s", version_id)
            return False
        except Exception as error:  # whatever fails off to the side must not stop serving
            self._failed = (version_id, time.monotonic())
            self.metrics.model_swap_failures.inc()
            if previous is None:
                self.load_error = f"model version {version_id}: {error}"
            log.error(
                "model version %s not loaded, still serving %s: %s",
                version_id,
                was,
                error,
                exc_info=not isinstance(error, _VERSION_ERRORS),
            )
            return False
        self._failed = None
        self.load_error = None
        version = serving.version
        self.metrics.model_swaps.inc()
        self.metrics.model.info({"version": version.version_id, "created_at": version.created_at})
        self.metrics.model_loaded.set(1)
        self._count_songs()
        log.info(
            "now serving model version %s (was %s): ready in %.1f s, %d cold tracks re-embedded",
            version.version_id,
            was,
            time.perf_counter() - started,
            re_embedded,
        )
        return True

    def _prepare(self, version_id: str, previous: Serving | None) -> tuple[Serving, int]:
        """Load `version_id`, bring its index in line with the catalogue, and make it the
        served one; returns it and how many cold tracks were re-embedded for it."""
        with self._write_lock:
            self._touched = set()
        try:
            version = load_version(
                self.settings.registry, version_id, nprobe=self.settings.index_nprobe
            )
            self._check_stop()
            catalogue = self._catalogue()
            songs = read_songs(version.songs_file)
            published_songs = frozenset(songs["song_id"])
            if version.manifest["parameters"].get("source", "dataset") == "dataset":
                fresh = self._songs_to_import(published_songs, previous)
                if fresh:
                    imported = catalogue.import_songs(
                        songs[songs["song_id"].isin(fresh)], vector_version=version_id
                    )
                    log.info("imported %d songs of model version %s", imported, version_id)
            records = catalogue.list_tracks()
            known = {record.id for record in records}
            published = set(version.index.space("cf").ids())
            published |= set(version.index.space("content").ids())
            deleted = published - known
            for song_id in deleted:
                version.index.remove_track(song_id)
            added, re_embedded = self._place_cold_tracks(
                version, [record for record in records if record.origin == "cold"]
            )
            with self._write_lock:
                touched, self._touched = self._touched or set(), None
                caught_up, gone, caught_re_embedded = self._catch_up(version, touched)
                serving = Serving(
                    version=version,
                    new_ids=frozenset((version.cold_song_ids | added | caught_up) - gone - deleted),
                    published_songs=published_songs,
                )
                self._serving = serving
            log.info(
                "model version %s: %d deleted songs left out, %d cold tracks added on top"
                " (%d written during the preparation)",
                version_id,
                len(deleted),
                len(added | caught_up),
                len(touched),
            )
            return serving, re_embedded + caught_re_embedded
        finally:
            with self._write_lock:
                self._touched = None

    def _songs_to_import(self, published: frozenset[str], previous: Serving | None) -> set[str]:
        """The songs of a dataset version the catalogue should gain: all of them for a fresh
        catalogue, else those it adds over the previous version (never songs deleted
        through the API since); none on a restart over a catalogue that has its songs."""
        if previous is not None:
            return set(published - previous.published_songs)
        if self._catalogue().count_tracks("warm") == 0:
            return set(published)
        return set()

    def _place_cold_tracks(
        self, version: LoadedVersion, records: list[TrackRecord]
    ) -> tuple[set[str], int]:
        """Put the cold tracks among `records` that `version`'s index lacks into both its
        spaces (stored vector, or re-embedded); returns the ids placed and how many were
        re-embedded."""
        catalogue = self._catalogue()
        missing = [record for record in records if record.id not in version.index]
        stored = track_vectors(catalogue, version.version_id, [record.id for record in missing])
        placed: set[str] = set()
        re_embedded: list[str] = []
        for record in missing:
            vector = stored.get(record.id)
            if vector is None:
                self._check_stop()
                vector = self._re_embed(version, record)
                if vector is None:
                    continue
                self._store_vector(record.id, version.version_id, vector)
                re_embedded.append(record.id)
            version.index.add_track(record.id, vector, vector)
            placed.add(record.id)
        if re_embedded:
            catalogue.set_vector_version(re_embedded, version.version_id)
        return placed, len(re_embedded)

    def _catch_up(
        self, version: LoadedVersion, touched: set[str]
    ) -> tuple[set[str], set[str], int]:
        """Apply to `version` the tracks added or deleted while it was prepared (write lock
        held): returns the ids placed, the ids gone, and how many were re-embedded."""
        records = self._catalogue().get_tracks(touched)
        gone = touched - records.keys()
        for track_id in touched:
            try:  # gone, or placed from an incarnation that a delete + add replaced
                version.index.remove_track(track_id)
            except UnknownIdError:
                pass
        placed, re_embedded = self._place_cold_tracks(
            version, [record for record in records.values() if record.origin == "cold"]
        )
        return placed, gone, re_embedded

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _SwapStopped

    def _store_vector(self, track_id: str, version_id: str, vector: np.ndarray) -> None:
        """Store a track's vector for a version. Another replica storing the same key at
        the same instant (same encoder, same audio: the same vector) or deleting the track
        (its event then takes it out) makes this a no-op rather than a failure."""
        try:
            put_track_vector(self._catalogue(), track_id, version_id, vector)
        except IntegrityError as error:
            log.info("vector of %s for %s not stored: %s", track_id, version_id, error.orig)

    # ---- following the other replicas' writes -------------------------------------------

    def follow_catalogue(self) -> int:
        """Bring the served index in line with the tracks added or deleted since the last
        call by any process sharing the catalogue; returns how many tracks that placed or
        removed (this replica's own writes come back as no-ops). A failure is logged and
        counted; the tracks it concerned are tried again at the next call."""
        cursor = self._events
        if cursor is None:
            return 0
        try:
            self._note_changes(cursor.read(self._catalogue()))
            changed, overdue = self._sync_pending()
            for version, record in overdue:
                if self._stop.is_set():
                    break
                self._embed_overdue(version, record)
        except SQLAlchemyError as error:
            self.metrics.follow_failures.inc()
            if str(error) != self._follow_problem:  # once per problem, not every poll
                self._follow_problem = str(error)
                log.warning("following the catalogue's changes: %s", error)
            return 0
        self._follow_problem = None
        self.metrics.event_floor.set(cursor.floor)
        if changed:
            self._count_songs()
        return changed

    def _note_changes(self, events: list[TrackEvent]) -> None:
        """Mark the tracks `events` name: for the swap being prepared to catch up, and for
        the served version to be brought in line with (imports name none: warm songs get
        vectors from the next version)."""
        track_ids = {event.track_id for event in events if event.track_id is not None}
        now = time.monotonic()
        with self._write_lock:
            if self._touched is not None:
                self._touched |= track_ids
            serving = self._serving
            if serving is None:  # the first version reads the catalogue as it is
                self._pending.clear()
                return
            version_id = serving.version.version_id
            self._forget_pending_of_other_versions(version_id)
            for track_id in track_ids:
                self._pending.setdefault(track_id, (version_id, now))

    def _sync_pending(self) -> tuple[int, list[tuple[LoadedVersion, TrackRecord]]]:
        """Place or remove the noted tracks in the served index as the catalogue has them
        now (write lock held: no write of this replica interleaves). Returns how many
        changed, and the cold tracks whose stored vector is overdue."""
        catalogue = self._catalogue()
        with self._write_lock:
            serving = self._serving
            if serving is None:
                return 0, []
            version = serving.version
            self._forget_pending_of_other_versions(version.version_id)
            track_ids = list(self._pending)
            if not track_ids:
                return 0, []
            records = catalogue.get_tracks(track_ids)
            cold = [track_id for track_id in track_ids if self._is_cold(records.get(track_id))]
            stored = track_vectors(catalogue, version.version_id, cold)
            new_ids = set(serving.new_ids)
            placed = removed = 0
            for track_id in track_ids:
                if track_id not in records:
                    if track_id in version.index:
                        version.index.remove_track(track_id)
                        removed += 1
                    new_ids.discard(track_id)
                elif track_id in stored:
                    vector = stored[track_id]
                    if not self._holds(version, track_id, vector):
                        version.index.add_track(track_id, vector, vector)
                        placed += 1
                    new_ids.add(track_id)
                elif track_id in cold:
                    continue  # its vector is not stored yet: noted still
                del self._pending[track_id]
            if new_ids != serving.new_ids:
                self._serving = dataclasses.replace(serving, new_ids=frozenset(new_ids))
        self.metrics.followed_changes.labels("placed").inc(placed)
        self.metrics.followed_changes.labels("removed").inc(removed)
        now = time.monotonic()
        overdue = [
            (version, records[track_id])
            for track_id, (_, since) in self._pending.items()
            if now - since >= VECTOR_GRACE_S
        ]
        return placed + removed, overdue

    def _forget_pending_of_other_versions(self, version_id: str) -> None:
        """Drop tracks noted under another version (write lock held): the swap to the
        served one read them from the catalogue, or caught them up."""
        self._pending = {
            track_id: noted for track_id, noted in self._pending.items() if noted[0] == version_id
        }

    @staticmethod
    def _is_cold(record: TrackRecord | None) -> bool:
        return record is not None and record.origin == "cold"

    @staticmethod
    def _holds(version: LoadedVersion, track_id: str, vector: np.ndarray) -> bool:
        """Whether both spaces hold `track_id` at `vector` already."""
        index = version.index
        if track_id not in index.space("cf") or track_id not in index.space("content"):
            return False
        content = index.space("content")
        expected = content.check_vectors(vector[np.newaxis])[0]
        return bool(np.allclose(content.vector(track_id), expected, atol=1e-5))

    def _embed_overdue(self, version: LoadedVersion, record: TrackRecord) -> None:
        """Embed a cold track whose vector for `version` never came (its replica went down,
        or serves another version) from its stored audio, and store it for the next sync
        and every other replica; unless the track changed meanwhile."""
        vector = self._re_embed(version, record)
        with self._write_lock:
            if vector is None:  # no usable audio (logged): nothing will ever place it
                self._pending.pop(record.id, None)
                return
            current = self._catalogue().get_tracks([record.id]).get(record.id)
            same = current is not None and (current.audio_sha256, current.added_at) == (
                record.audio_sha256,
                record.added_at,
            )
            if same and not track_vectors(self._catalogue(), version.version_id, [record.id]):
                self._store_vector(record.id, version.version_id, vector)

    def _re_embed(self, version: LoadedVersion, record: TrackRecord) -> np.ndarray | None:
        store = self._catalogue().audio_store
        if record.audio_path is None or store is None:
            log.warning("cold track %s has no stored audio; left out of the index", record.id)
            return None
        try:
            return embed_audio(
                version.encoder, store.path(record.audio_path), self.limits, record.id
            ).vector
        except (AudioError, InvalidAudio, OSError) as error:
            log.warning("cold track %s: cannot re-embed its audio (%s)", record.id, error)
            return None

    # ---- plumbing -----------------------------------------------------------------------

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within this block (one request, and the worker threads it calls, which copy
        its context), the serving state is read once, at its first use, and kept."""
        token = _PIN.set(_Pin())
        try:
            yield
        finally:
            _PIN.reset(token)

    def _current(self) -> Serving | None:
        """The request's pinned serving state, or outside a request the latest one."""
        pin = _PIN.get()
        if pin is None:
            return self._serving
        if not pin.taken:
            pin.serving, pin.taken = self._serving, True
        return pin.serving

    def _require(self) -> Serving:
        serving = self._current()
        if serving is None:
            raise NotReady(f"no model version loaded ({self.load_error or 'starting'})")
        return serving

    @property
    def ready(self) -> bool:
        return self._serving is not None

    @property
    def version(self) -> LoadedVersion | None:
        """The version being served now (a request uses `require_version`)."""
        serving = self._serving
        return serving.version if serving else None

    def require_version(self) -> LoadedVersion:
        """The version this request answers with; `NotReady` if none is loaded."""
        return self._require().version

    def _catalogue(self) -> Catalogue:
        if self.catalogue is None:
            raise NotReady("the catalogue is not open yet")
        return self.catalogue

    async def cpu(self, function: Callable[..., T], *args: object) -> T:
        """Run CPU-heavy `function(*args)` in a worker thread, `inference_slots` at a time."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.inference_slots)
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    def _count_songs(self) -> None:
        serving = self._serving
        if serving is not None:
            for space in ("cf", "content"):
                self.metrics.songs.labels(space).set(len(serving.version.index.space(space)))

    def is_new(self, song_id: str) -> bool:
        """A cold song of the version, or a cold track added on top of it (one that the
        version holds with WMF factors is not new any more)."""
        serving = self._current()
        return serving is not None and song_id in serving.new_ids

    # ---- reading ------------------------------------------------------------------------

    def records(self, song_ids: Iterable[str]) -> dict[str, TrackRecord]:
        """The catalogue rows of `song_ids` (ids it does not hold are left out)."""
        return self._catalogue().get_tracks(song_ids)

    def hits(self, neighbours: list[tuple[str, float]]) -> list[schemas.SongHit]:
        """Result rows with titles and artists; songs deleted meanwhile are left out."""
        records = self.records(song_id for song_id, _ in neighbours)
        return [
            schemas.SongHit(
                id=song_id,
                title=records[song_id].title,
                artist=records[song_id].artist,
                score=score,
                new=self.is_new(song_id),
                has_audio=self._has_audio(records[song_id]),
            )
            for song_id, score in neighbours
            if song_id in records
        ]

    def track(self, track_id: str) -> schemas.Track:
        serving = self._require()
        record = self.records([track_id]).get(track_id)
        if record is None:
            raise NotFound(f"no track {track_id!r}", code="track_not_found")
        return self._track_view(serving, record)

    def _track_view(self, serving: Serving, record: TrackRecord) -> schemas.Track:
        spaces: list[schemas.Space] = ["cf", "content"]
        return schemas.Track(
            id=record.id,
            title=record.title,
            artist=record.artist,
            origin=record.origin,
            new=record.id in serving.new_ids,
            has_audio=self._has_audio(record),
            added_at=record.added_at,
            spaces=[space for space in spaces if record.id in serving.version.index.space(space)],
        )

    def similar_to_upload(
        self, data: bytes, name: str, k: int, space: schemas.Space
    ) -> UploadResult:
        version = self.require_version()
        embedding = self._embed(version, data, name)
        started = time.perf_counter()
        neighbours = version.index.similar(embedding.vector, k, space)
        return UploadResult(embedding, neighbours, (time.perf_counter() - started) * 1e3)

    def similar_to_track(
        self, track_id: str, k: int, space: schemas.Space
    ) -> list[tuple[str, float]]:
        version = self.require_version()
        try:
            return version.index.similar_to(track_id, k, space)
        except UnknownIdError as error:
            raise NotFound(
                f"track {track_id!r} has no vector in the {space} space", code="track_not_found"
            ) from error

    def recommend(self, user_id: str, k: int, only_new: bool) -> list[tuple[str, float]]:
        serving = self._require()
        version = serving.version
        user_vector = version.user_vector(user_id)
        if user_vector is None:
            raise NotFound(
                f"user {user_id!r} has no factors in model version {version.version_id}"
                " (users get them at the next factorization)",
                code="user_not_found",
            )
        return version.index.recommend(
            user_vector, k, only_ids=serving.new_ids if only_new else None
        )

    def audio_file(self, track_id: str) -> tuple[Path, str]:
        """The file to play for a track: its stored upload, or a warm song's dataset file."""
        record = self.records([track_id]).get(track_id)
        if record is None:
            raise NotFound(f"no track {track_id!r}", code="track_not_found")
        store = self._catalogue().audio_store
        path: Path | None = None
        if record.audio_path is not None and store is not None:
            path = store.path(record.audio_path)
        else:
            path = self._dataset_audio_files().get(track_id)
        if path is None or not path.is_file():
            raise NotFound(f"track {track_id!r} has no stored audio", code="no_audio")
        return path, MEDIA_TYPES.get(path.suffix[1:].lower(), "application/octet-stream")

    def _has_audio(self, record: TrackRecord) -> bool:
        return record.audio_path is not None or record.id in self._dataset_audio_files()

    def _dataset_audio_files(self) -> dict[str, Path]:
        """Warm songs' recordings in the dataset the served version was published from, if
        that folder is still there (listed once per dataset folder)."""
        serving = self._current()
        root = serving.version.manifest["parameters"].get("dataset_root") if serving else None
        if not root:
            return {}
        listed = self._dataset_audio
        if listed is None or listed[0] != root:
            listed = (root, find_audio(Path(root)))
            self._dataset_audio = listed
        return listed[1]

    # ---- writing ------------------------------------------------------------------------

    def add_track(
        self, data: bytes, filename: str, title: str, artist: str, track_id: str | None
    ) -> tuple[schemas.Track, Embedding]:
        """Embed the upload, store track + audio + vector durably, then index it.

        The embedding runs outside the write lock; the rest inside, into the version served
        by then: if a swap came in between, the upload is embedded again with the new
        version's encoder, so that the new version has the track (this request still
        answers with the version it began on)."""
        pinned = self._require()
        embedding = self._embed(pinned.version, data, filename)
        extension = audio_extension(filename, data)
        track_id = track_id or f"new-{secrets.token_hex(8)}"
        catalogue = self._catalogue()
        with self._write_lock:
            serving = self._serving or pinned
            version = serving.version
            vector = (
                embedding.vector
                if version is pinned.version
                else self._embed(version, data, filename).vector
            )
            try:
                record = catalogue.add_track(
                    track_id,
                    title,
                    artist,
                    audio=data,
                    audio_ext=extension,
                    origin="cold",
                    vector_version=version.version_id,
                )
            except DuplicateTrack as error:
                raise Conflict(str(error), code="track_exists") from error
            except (InvalidTrack, InvalidAudio) as error:
                raise BadRequest(str(error), code="invalid_track") from error
            self._store_vector(track_id, version.version_id, vector)
            version.index.add_track(track_id, vector, vector)
            serving = dataclasses.replace(serving, new_ids=serving.new_ids | {track_id})
            self._serving = serving
            if self._touched is not None:
                self._touched.add(track_id)
        self._count_songs()
        return self._track_view(serving, record), embedding

    def delete_track(self, track_id: str) -> None:
        self._require()
        with self._write_lock:
            try:
                self._catalogue().delete_track(track_id)
            except TrackNotFound as error:
                raise NotFound(str(error), code="track_not_found") from error
            serving = self._serving
            if serving is not None:
                try:
                    serving.version.index.remove_track(track_id)
                except UnknownIdError:
                    pass  # a song without vectors (no audio, no listens) is only in the catalogue
                if track_id in serving.new_ids:
                    self._serving = dataclasses.replace(
                        serving, new_ids=serving.new_ids - {track_id}
                    )
            if self._touched is not None:
                self._touched.add(track_id)
        self._count_songs()

    def add_listens(self, listens: list[schemas.ListenIn]) -> list[schemas.ListenResult]:
        results = self._catalogue().add_listens(
            [
                CatalogueListen(item.user_id, item.song_id, item.count, item.played_at)
                for item in listens
            ]
        )
        return [
            schemas.ListenResult(index=index, status="stored")
            if result.accepted
            else schemas.ListenResult(
                index=index,
                status="rejected",
                error=schemas.ErrorDetail(
                    code="unknown_song"
                    if (result.error or "").startswith("unknown track")
                    else "invalid_listen",
                    message=result.error or "rejected",
                ),
            )
            for index, result in enumerate(results)
        ]

    def _embed(self, version: LoadedVersion, data: bytes, name: str) -> Embedding:
        try:
            embedding = embed_audio(version.encoder, data, self.limits, name)
        except AudioError as error:
            raise from_audio_error(error) from error
        self.metrics.observe_stages(
            decode=embedding.decode_ms, features=embedding.features_ms, model=embedding.model_ms
        )
        return embedding


# Leading bytes of the containers the front end reads, for uploads without a usable name.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "wav"),
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"),
    (4, b"ftyp", "m4a"),
)


def audio_extension(filename: str, data: bytes) -> str:
    """The extension the audio store files an upload under: the upload's own when the
    front end reads that kind, else one read from the container's leading bytes."""
    suffix = Path(filename).suffix[1:].lower()
    if suffix in AUDIO_EXTENSIONS:
        return suffix
    for offset, signature, extension in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return extension
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "mp3"  # an MPEG audio frame sync without an ID3 tag
    raise BadRequest(
        f"{filename}: cannot tell the audio format; name the file with one of"
        f" {', '.join(AUDIO_EXTENSIONS)}",
        code="unknown_audio_format",
    )
