"""The change log on both backends: events written with their change, in order, and a
cursor that misses no event committed out of seq order."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import insert, select

from catalogue import DuplicateTrack, TrackNotFound
from catalogue.events import (
    EventCursor,
    TrackEventRow,
    events_after,
    last_event_seq,
    record_event,
)
from catalogue.models import Track, utc_now


def changes(db, after: int = 0) -> list[tuple[str, str | None]]:
    return [(event.kind, event.track_id) for event in events_after(db, after)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def insert_event(db, seq: int, track_id: str) -> None:
    """An event with a chosen seq: what a transaction that took `seq` earlier commits."""
    with db.engine.begin() as connection:
        connection.execute(
            insert(TrackEventRow).values(seq=seq, track_id=track_id, kind="added", at=utc_now())
        )


def test_adds_deletes_and_imports_are_logged_in_order(db):
    assert last_event_seq(db) == 0 and events_after(db, 0) == []
    db.add_track("cold-1", "A", audio=b"a", audio_ext="wav")
    db.add_track("cold-2", "B", audio=b"b", audio_ext="wav")
    db.delete_track("cold-1")
    songs = pd.DataFrame({"song_id": ["S1", "S2"], "title": ["x", "y"], "artist": ["", ""]})
    assert db.import_songs(songs) == 2
    assert db.import_songs(songs) == 0  # nothing new: no event

    assert changes(db) == [
        ("added", "cold-1"),
        ("added", "cold-2"),
        ("deleted", "cold-1"),
        ("imported", None),
    ]
    events = events_after(db, 0)
    seqs = [event.seq for event in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert last_event_seq(db) == seqs[-1]
    assert events_after(db, seqs[1], limit=1) == [events[2]]
    assert all(event.at.tzinfo is not None for event in events)


def test_a_refused_change_logs_nothing(db):
    db.add_track("cold-1", "A", audio=b"a", audio_ext="wav")
    with pytest.raises(DuplicateTrack):
        db.add_track("cold-1", "B", audio=b"b", audio_ext="wav")
    with pytest.raises(TrackNotFound):
        db.delete_track("ghost")
    assert changes(db) == [("added", "cold-1")]


def test_an_event_commits_or_rolls_back_with_its_change(db):
    with pytest.raises(RuntimeError), db.engine.begin() as connection:
        connection.execute(
            insert(Track).values(id="t", title="t", artist="", origin="warm", added_at=utc_now())
        )
        record_event(connection, "added", "t")
        raise RuntimeError("the transaction fails after both statements")
    assert db.get_tracks(["t"]) == {} and changes(db) == []
    with pytest.raises(ValueError, match="kind"), db.engine.begin() as connection:
        record_event(connection, "renamed", "t")  # type: ignore[arg-type]


def test_the_cursor_starts_at_the_end_and_reads_each_event_once(db):
    db.add_track("before", "A", audio=b"a", audio_ext="wav")
    cursor = EventCursor(db)
    assert cursor.read(db) == []
    db.add_track("cold-1", "B", audio=b"b", audio_ext="wav")
    db.delete_track("before")
    assert [(e.kind, e.track_id) for e in cursor.read(db)] == [
        ("added", "cold-1"),
        ("deleted", "before"),
    ]
    assert cursor.read(db) == []
    assert cursor.floor == last_event_seq(db)
    for n in range(5):
        db.add_track(f"many-{n}", "C", audio=b"c", audio_ext="wav")
    assert [e.track_id for e in cursor.read(db, limit=3)] == ["many-0", "many-1", "many-2"]
    assert [e.track_id for e in cursor.read(db, limit=3)] == ["many-3", "many-4"]


def test_an_event_committed_after_a_higher_seq_is_still_read(db):
    clock = Clock()
    cursor = EventCursor(db, gap_grace_s=60.0, clock=clock)
    insert_event(db, 2, "second")  # seq 1 is held by a transaction not committed yet
    assert [e.track_id for e in cursor.read(db)] == ["second"]
    assert cursor.floor == 0
    clock.now = 30.0
    insert_event(db, 1, "first")  # it commits within the grace time
    assert [e.track_id for e in cursor.read(db)] == ["first"]
    assert cursor.floor == 2 and cursor.read(db) == []


def test_a_hole_never_filled_is_given_up_after_the_grace_time(db):
    clock = Clock()
    cursor = EventCursor(db, gap_grace_s=60.0, clock=clock)
    insert_event(db, 2, "after-a-rollback")  # seq 1 was rolled back: never committed
    assert [e.track_id for e in cursor.read(db)] == ["after-a-rollback"]
    insert_event(db, 3, "next")
    clock.now = 59.0
    assert [e.track_id for e in cursor.read(db)] == ["next"]  # delivered despite the hole
    assert cursor.floor == 0
    clock.now = 61.0
    assert cursor.read(db) == [] and cursor.floor == 3


def test_a_new_cursor_still_reads_a_late_commit_below_the_end(db):
    insert_event(db, 5, "committed")
    cursor = EventCursor(db)  # seq 4 is still in flight
    assert cursor.read(db) == []
    insert_event(db, 4, "late")
    assert [e.track_id for e in cursor.read(db)] == ["late"]


def test_postgresql_out_of_order_commits_are_all_read(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises write transactions: seqs commit in order")
    cursor = EventCursor(db)
    with db.engine.begin() as slow:  # takes its seq, then commits after a later one
        slow.execute(
            insert(Track).values(id="slow", title="s", artist="", origin="warm", added_at=utc_now())
        )
        record_event(slow, "added", "slow")
        db.add_track("fast", "f", audio=b"f", audio_ext="wav")
        assert [e.track_id for e in cursor.read(db)] == ["fast"]
        held = slow.execute(select(TrackEventRow.seq).where(TrackEventRow.track_id == "slow"))
        assert held.scalar() < last_event_seq(db)
    assert [e.track_id for e in cursor.read(db)] == ["slow"]
    assert cursor.floor == last_event_seq(db)
