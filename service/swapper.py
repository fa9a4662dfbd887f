"""Taking a newly published model version into service without a restart.

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
   also while the nightly run was going) go into both spaces (`ColdTracks.place`): at
   their stored vector for this version (a restart), or re-embedded from their stored
   audio with this version's encoder (the vector then stored). A track the version already
   holds keeps the version's vector: the pipeline embedded it, or listens made it warm. A
   stored vector that is unusable (NaN, the wrong shape: written behind the service's
   back) is re-embedded instead; a track whose audio is missing or does not decode is left
   out. Each such track is logged and counted (`coldstart_catalogue_track_problems_total`):
   one bad track never keeps a version from being served.

The switch itself takes the served state's lock, which track writes hold: tracks added or
deleted while the version was being prepared are caught up, then one `Serving` replaces
the old one in a single assignment. A version that fails to load or prepare is logged and
counted and the old one keeps serving; it is tried again when `current` names another
version, or after `RETRY_FAILED_VERSION_S`. One that waited in vain for a decode worker to
re-embed a cold track (`DecoderUnavailable`: all busy) is tried again at the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from artifacts.manifest import ArtifactError
from audio.config import FrontEndMismatchError
from catalogue import Catalogue
from corpus.dataset import read_songs
from index.vector_index import UnknownIdError
from pipeline.registry.layout import RegistryError
from pipeline.registry.read import LoadedVersion, current_version_id, load_version
from service.cold_tracks import ColdTracks
from service.errors import DecoderUnavailable
from service.memory import give_back_free_memory
from service.metrics import ServiceMetrics
from service.serving import ServedState, Serving
from service.settings import Settings

# Seconds after a swap before freed memory is handed back (`service.memory`).
TRIM_AFTER_SWAP_S = 5.0
log = logging.getLogger("coldstart.service")

# A version that failed to load is tried again after this long even if `current` still
# names it (an I/O error may pass), but not at every poll.
RETRY_FAILED_VERSION_S = 300.0
# Failures expected of a bad version; anything else is logged with its traceback.
_VERSION_ERRORS = (RegistryError, ArtifactError, FrontEndMismatchError, OSError)


class _SwapStopped(Exception):
    """The service is shutting down while a version was being prepared."""


class VersionSwapper:
    """Loads the version `REG/current` names and makes it the served one."""

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        state: ServedState,
        cold_tracks: ColdTracks,
        catalogue: Callable[[], Catalogue],
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self.cold_tracks = cold_tracks
        self.catalogue = catalogue
        self.stop = stop
        self._failed: tuple[str, float] | None = None
        self._registry_problem: str | None = None
        # One swap at a time: the watcher's polls and an activation through the API.
        self._swapping = threading.Lock()

    def load_first(self) -> None:
        """Serve the current version (blocking); a registry without a usable one leaves
        the service up but not ready (503s) until one is published."""
        self.metrics.model_loaded.set(0)
        try:
            version_id = current_version_id(self.settings.registry)
        except RegistryError as error:
            self.state.load_error = self._registry_problem = str(error)
            log.error("no model version loaded: %s", error)
            return
        self._switch_to(version_id)

    def poll_registry(self) -> bool:
        """Switch to the version `REG/current` names if it is another one; True if it did.
        Waits for a swap in progress (the watcher's, or an activation's) to end first."""
        with self._swapping:
            return self._poll()

    def _poll(self) -> bool:
        try:
            version_id = current_version_id(self.settings.registry)
        except (RegistryError, OSError) as error:
            if str(error) != self._registry_problem:  # once per problem, not every poll
                self._registry_problem = str(error)
                log.warning("model registry: %s", error)
            return False
        self._registry_problem = None
        serving = self.state.serving
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
        previous = self.state.serving
        was = previous.version.version_id if previous else "none"
        try:
            serving, re_embedded = self._prepare(version_id, previous)
        except _SwapStopped:
            log.info("stopped while preparing model version %s", version_id)
            return False
        except DecoderUnavailable as error:  # no fault of the version's: the next poll
            log.warning(
                "model version %s not loaded yet, still serving %s: %s", version_id, was, error
            )
            return False
        except Exception as error:  # whatever fails off to the side must not stop serving
            self._failed = (version_id, time.monotonic())
            self.metrics.model_swap_failures.inc()
            if previous is None:
                self.state.load_error = f"model version {version_id}: {error}"
            log.error(
                "model version %s not loaded, still serving %s: %s",
                version_id,
                was,
                error,
                exc_info=not isinstance(error, _VERSION_ERRORS),
            )
            return False
        self._failed = None
        self.state.load_error = None
        version = serving.version
        self.metrics.model_swaps.inc()
        self.metrics.model.info({"version": version.version_id, "created_at": version.created_at})
        self.metrics.model_loaded.set(1)
        self.state.count_songs(self.metrics)
        log.info(
            "now serving model version %s (was %s): ready in %.1f s, %d cold tracks re-embedded",
            version.version_id,
            was,
            time.perf_counter() - started,
            re_embedded,
        )
        # The old version is freed once the last request pinned to it ends: trim after that.
        threading.Timer(TRIM_AFTER_SWAP_S, give_back_free_memory).start()
        return True

    def _prepare(self, version_id: str, previous: Serving | None) -> tuple[Serving, int]:
        """Load `version_id`, bring its index in line with the catalogue, and make it the
        served one; returns it and how many cold tracks were re-embedded for it."""
        state = self.state
        with state.lock:
            state.collect_touched()
        try:
            version = load_version(
                self.settings.registry, version_id, nprobe=self.settings.index_nprobe
            )
            self._check_stop()
            catalogue = self.catalogue()
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
            added, re_embedded = self.cold_tracks.place(
                version, [record for record in records if record.origin == "cold"], self._check_stop
            )
            with state.lock:
                touched = state.take_touched()
                caught_up, gone, caught_re_embedded = self._catch_up(version, touched)
                serving = Serving(
                    version=version,
                    new_ids=frozenset((version.cold_song_ids | added | caught_up) - gone - deleted),
                    published_songs=published_songs,
                )
                state.serving = serving
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
            with state.lock:
                state.take_touched()

    def _songs_to_import(self, published: frozenset[str], previous: Serving | None) -> set[str]:
        """The songs of a dataset version the catalogue should gain: all of them for a fresh
        catalogue, else those it adds over the previous version (never songs deleted
        through the API since); none on a restart over a catalogue that has its songs."""
        if previous is not None:
            return set(published - previous.published_songs)
        if self.catalogue().count_tracks("warm") == 0:
            return set(published)
        return set()

    def _catch_up(
        self, version: LoadedVersion, touched: set[str]
    ) -> tuple[set[str], set[str], int]:
        """Apply to `version` the tracks added or deleted while it was prepared (the lock
        held): returns the ids placed, the ids gone, and how many were re-embedded."""
        records = self.catalogue().get_tracks(touched)
        gone = touched - records.keys()
        for track_id in touched:
            try:  # gone, or placed from an incarnation that a delete + add replaced
                version.index.remove_track(track_id)
            except UnknownIdError:
                pass
        placed, re_embedded = self.cold_tracks.place(
            version,
            [record for record in records.values() if record.origin == "cold"],
            self._check_stop,
        )
        return placed, gone, re_embedded

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise _SwapStopped
