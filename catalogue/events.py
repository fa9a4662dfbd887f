"""The catalogue's change log (table `track_events`): one row per track added or deleted,
and one per songs import, written in the transaction of the change itself.

Several service replicas share one catalogue but each holds its own in-memory index; a
replica follows this log to apply the tracks the others added or deleted (see
`service/follower.py`). Because the event commits with its change, a reader never sees a
track without its event, or an event without its track change.

An import of a dataset's songs writes one "imported" event (track_id NULL), not one per
song: imports reach a million songs, and imported songs are warm, without a vector until
the next model version, so a follower has nothing to place for them.

Sequence numbers come from the database (SQLite AUTOINCREMENT, a PostgreSQL sequence).
On PostgreSQL they are taken when the event is inserted, not when it commits: a
transaction holding seq 10 may commit after another committed 11, and one that rolls
back leaves a hole forever. `EventCursor` follows the log without missing the late ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    Integer,
    String,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from catalogue.models import MAX_ID_LENGTH, Base, UTCDateTime, utc_now

if TYPE_CHECKING:
    from catalogue.repository import Catalogue

EventKind = Literal["added", "deleted", "imported"]
EVENT_KINDS: tuple[EventKind, ...] = ("added", "deleted", "imported")
# How long a hole in the sequence is waited for before the cursor gives up on it: far
# longer than a write transaction holds its seq (the event is its last statement).
GAP_GRACE_S = 60.0
# A new cursor re-reads this many seqs below the end: a transaction that took one of
# them and commits after the cursor was made is still delivered.
TAIL_SEQS = 1000
DEFAULT_LIMIT = 1000


class TrackEventRow(Base):
    __tablename__ = "track_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    track_id: Mapped[str | None] = mapped_column(String(MAX_ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("kind IN ('added', 'deleted', 'imported')", name="kind"),
        CheckConstraint("(track_id IS NULL) = (kind = 'imported')", name="track_id"),
        {"sqlite_autoincrement": True},  # never reuse a seq, even the highest one
    )


@dataclass(frozen=True)
class TrackEvent:
    """One change: `track_id` added or deleted, or songs imported (`track_id` None)."""

    seq: int
    track_id: str | None
    kind: EventKind
    at: datetime


def record_event(session: Session | Connection, kind: EventKind, track_id: str | None) -> None:
    """Log a change inside the caller's open write transaction; call it last in that
    transaction, so that its seq is taken just before the commit."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"kind must be one of {EVENT_KINDS}, got {kind!r}")
    session.execute(insert(TrackEventRow).values(track_id=track_id, kind=kind, at=utc_now()))


def events_after(catalogue: Catalogue, seq: int, limit: int = DEFAULT_LIMIT) -> list[TrackEvent]:
    """The committed events with a seq above `seq`, lowest first, at most `limit`."""
    query = (
        select(TrackEventRow.seq, TrackEventRow.track_id, TrackEventRow.kind, TrackEventRow.at)
        .where(TrackEventRow.seq > seq)
        .order_by(TrackEventRow.seq)
        .limit(limit)
    )
    with catalogue.engine.connect() as connection:
        return [
            TrackEvent(seq=seq, track_id=track_id, kind=kind, at=at)  # type: ignore[arg-type]
            for seq, track_id, kind, at in connection.execute(query)
        ]


def last_event_seq(catalogue: Catalogue) -> int:
    """The highest committed seq (0 for an empty log)."""
    with catalogue.engine.connect() as connection:
        return int(connection.execute(select(func.max(TrackEventRow.seq))).scalar() or 0)


class EventCursor:
    """Follows the log from its end as of creation: each `read` returns the events not
    returned before, including ones whose seq is below others already read (committed
    late).

    It keeps a floor (every seq at or below it was read or given up) and the seqs read
    above it. A hole just above the floor holds the floor back for `gap_grace_s` of the
    `clock`, then is skipped (a rolled-back transaction never fills it); events above a
    hole are delivered at once all the same."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        gap_grace_s: float = GAP_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gap_grace_s = gap_grace_s
        self._clock = clock
        last = last_event_seq(catalogue)
        self._floor = max(0, last - TAIL_SEQS)
        self._read: set[int] = {
            event.seq for event in events_after(catalogue, self._floor, last - self._floor)
        }
        self._stalled: tuple[int, float] | None = None  # (floor, since when) at a hole
        self._advance()

    @property
    def floor(self) -> int:
        """Every event with a seq at or below this one has been read or given up."""
        return self._floor

    def read(self, catalogue: Catalogue, limit: int = DEFAULT_LIMIT) -> list[TrackEvent]:
        """The events committed since the last read (at most `limit`), lowest seq first."""
        rows = events_after(catalogue, self._floor, limit + len(self._read))
        fresh = [event for event in rows if event.seq not in self._read][:limit]
        self._read.update(event.seq for event in fresh)
        self._advance()
        return fresh

    def _advance(self) -> None:
        while self._read:
            if self._floor + 1 in self._read:
                self._floor += 1
                self._read.discard(self._floor)
                continue
            now = self._clock()
            if self._stalled is None or self._stalled[0] != self._floor:
                self._stalled = (self._floor, now)
            if now - self._stalled[1] < self.gap_grace_s:
                return
            self._floor = min(self._read) - 1  # give the hole up
        self._stalled = None
