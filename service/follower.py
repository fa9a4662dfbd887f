"""Following the tracks other replicas write, so that this replica's index has them too.

Several replicas (processes, machines) may serve one catalogue, each with its own index in
memory. Every track written through any of them logs an event in the catalogue
(`catalogue.events`), and a thread follows that log every `catalogue_poll_seconds`: a
track another replica added enters this index at the vector that replica stored for the
served version (waited for across polls; after `VECTOR_GRACE_S` re-embedded here from the
stored audio, and stored), a track it deleted leaves it. A track is brought in line with
the catalogue as it is now, not replayed, so this replica's own writes come back as
no-ops. A track seen while a swap prepares also joins the swap's catch-up, so the new
version has it too; one seen earlier was already in the catalogue the swap read.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from catalogue import Catalogue, TrackRecord
from catalogue.events import EventCursor, TrackEvent
from catalogue.vectors import track_vectors, vector_problem
from pipeline.registry.read import LoadedVersion
from service.cold_tracks import ColdTracks
from service.errors import DecoderUnavailable
from service.metrics import ServiceMetrics
from service.serving import ServedState

log = logging.getLogger("coldstart.service")

# How long a track another replica added waits for that replica to store its vector for
# the served version (it does so right after the row) before this one embeds it itself.
VECTOR_GRACE_S = 10.0


class CatalogueFollower:
    """Reads the catalogue's change log and brings the served index in line with it."""

    def __init__(
        self,
        catalogue: Callable[[], Catalogue],
        state: ServedState,
        cold_tracks: ColdTracks,
        metrics: ServiceMetrics,
        stop: threading.Event,
        forget: Callable[[list[str]], None],
    ) -> None:
        """`forget(ids)`: drop what this replica keeps of tracks deleted elsewhere."""
        self.catalogue = catalogue
        self.forget = forget
        self.state = state
        self.cold_tracks = cold_tracks
        self.metrics = metrics
        self.stop = stop
        # The change log as read so far, and the tracks it named that the served version
        # has not been brought in line with yet: id -> (version id, first seen).
        self._events: EventCursor | None = None
        self._pending: dict[str, tuple[str, float]] = {}
        self._problem: str | None = None

    def open(self) -> None:
        """Start reading the log from now: call before the first version reads the
        catalogue, so that what it misses comes after this point."""
        self._events = EventCursor(self.catalogue())
        self.metrics.event_floor.set(self._events.floor)

    def follow(self) -> int:
        """Bring the served index in line with the tracks added or deleted since the last
        call by any process sharing the catalogue; returns how many tracks that placed or
        removed (this replica's own writes come back as no-ops). A failure is logged and
        counted; the tracks it concerned are tried again at the next call."""
        cursor = self._events
        if cursor is None:
            return 0
        try:
            self._note_changes(cursor.read(self.catalogue()))
            changed, overdue = self._sync_pending()
            for version, record in overdue:
                if self.stop.is_set():
                    break
                try:
                    self._embed_overdue(version, record)
                except DecoderUnavailable as error:  # all busy: the next call tries again
                    log.info("track %s not re-embedded yet: %s", record.id, error)
                    break
        except SQLAlchemyError as error:
            self.metrics.follow_failures.inc()
            if str(error) != self._problem:  # once per problem, not every poll
                self._problem = str(error)
                log.warning("following the catalogue's changes: %s", error)
            return 0
        self._problem = None
        self.metrics.event_floor.set(cursor.floor)
        if changed:
            self.state.count_songs(self.metrics)
        return changed

    def _note_changes(self, events: list[TrackEvent]) -> None:
        """Mark the tracks `events` name: for the swap being prepared to catch up, and for
        the served version to be brought in line with (imports name none: warm songs get
        vectors from the next version)."""
        track_ids = {event.track_id for event in events if event.track_id is not None}
        now = time.monotonic()
        with self.state.lock:
            self.state.touch(track_ids)
            serving = self.state.serving
            if serving is None:  # the first version reads the catalogue as it is
                self._pending.clear()
                return
            version_id = serving.version.version_id
            self._forget_pending_of_other_versions(version_id)
            for track_id in track_ids:
                self._pending.setdefault(track_id, (version_id, now))

    def _sync_pending(self) -> tuple[int, list[tuple[LoadedVersion, TrackRecord]]]:
        """Place or remove the noted tracks in the served index as the catalogue has them
        now (the lock held: no write of this replica interleaves). Returns how many
        changed, and the cold tracks whose stored vector is overdue."""
        catalogue = self.catalogue()
        with self.state.lock:
            serving = self.state.serving
            if serving is None:
                return 0, []
            version = serving.version
            self._forget_pending_of_other_versions(version.version_id)
            track_ids = list(self._pending)
            if not track_ids:
                return 0, []
            records = catalogue.get_tracks(track_ids)
            self.forget([track_id for track_id in track_ids if track_id not in records])
            cold = [track_id for track_id in track_ids if _is_cold(records.get(track_id))]
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
                    vector = self.cold_tracks.usable_stored(version, track_id, stored[track_id])
                    if vector is None:  # re-embedded from its audio, now, by the caller
                        self._pending[track_id] = (version.version_id, -VECTOR_GRACE_S)
                        continue
                    if not self.cold_tracks.holds(version, track_id, vector):
                        self.cold_tracks.add_to_index(version, records[track_id], vector)
                        placed += 1
                    new_ids.add(track_id)
                elif track_id in cold:
                    continue  # its vector is not stored yet: noted still
                del self._pending[track_id]
            if new_ids != serving.new_ids:
                self.state.serving = dataclasses.replace(serving, new_ids=frozenset(new_ids))
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
        """Drop tracks noted under another version (the lock held): the swap to the
        served one read them from the catalogue, or caught them up."""
        self._pending = {
            track_id: noted for track_id, noted in self._pending.items() if noted[0] == version_id
        }

    def _embed_overdue(self, version: LoadedVersion, record: TrackRecord) -> None:
        """Embed a cold track whose vector for `version` never came (its replica went down,
        or serves another version) from its stored audio, and store it for the next sync
        and every other replica; unless the track changed meanwhile."""
        vector = self.cold_tracks.re_embed(version, record)
        with self.state.lock:
            if vector is None:  # no usable audio (logged): nothing will ever place it
                self._pending.pop(record.id, None)
                return
            current = self.catalogue().get_tracks([record.id]).get(record.id)
            same = current is not None and (current.audio_sha256, current.added_at) == (
                record.audio_sha256,
                record.added_at,
            )
            stored = track_vectors(self.catalogue(), version.version_id, [record.id])
            usable = record.id in stored and vector_problem(stored[record.id], vector.size) is None
            if same and not usable:
                self.cold_tracks.store_vector(record.id, version.version_id, vector)


def _is_cold(record: TrackRecord | None) -> bool:
    return record is not None and record.origin == "cold"
