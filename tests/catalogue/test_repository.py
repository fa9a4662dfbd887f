"""Catalogue operations on both backends: tracks, warm imports, listens, the export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from catalogue import (
    CatalogueError,
    DuplicateTrack,
    InvalidAudio,
    InvalidTrack,
    ListenIn,
    ListenResult,
    TrackNotFound,
)


def write_songs_csv(path, n: int, start: int = 0):
    rows = [f"S{i:07d},Song {i},Artist {i % 50}" for i in range(start, start + n)]
    path.write_text("song_id,title,artist\n" + "\n".join(rows) + "\n")
    return path


def test_add_get_list_and_delete_a_cold_track(db):
    before = datetime.now(UTC)
    track = db.add_track("cold-1", "Night Drive", "Nobody", audio=b"ID3 bytes", audio_ext=".MP3")
    assert track.origin == "cold" and track.vector_version is None
    assert track.audio_path == f"{track.audio_sha256[:2]}/{track.audio_sha256}.mp3"
    assert track.added_at.tzinfo is not None and before <= track.added_at <= datetime.now(UTC)
    assert db.get_track("cold-1") == track
    assert db.get_tracks(["ghost", "cold-1", "cold-1"]) == {"cold-1": track}

    db.add_track("warm-1", "Old Hit", "Someone", origin="warm")
    assert [t.id for t in db.list_tracks()] == ["cold-1", "warm-1"]
    assert [t.id for t in db.list_tracks("warm")] == ["warm-1"]
    assert db.count_tracks() == 2 and db.count_tracks("cold") == 1

    db.add_listens([ListenIn("u1", "cold-1", 2), ListenIn("u1", "warm-1")])
    db.delete_track("cold-1")
    with pytest.raises(TrackNotFound):
        db.get_track("cold-1")
    with pytest.raises(TrackNotFound):
        db.delete_track("cold-1")
    assert db.export_listens()["song_id"].tolist() == ["warm-1"]  # its listens went with it
    assert db.audio_store.path(track.audio_path).is_file()  # the store is append-only


def test_duplicates_are_refused(db):
    db.add_track("cold-1", "A", audio=b"a", audio_ext="wav")
    with pytest.raises(DuplicateTrack, match="cold-1"):
        db.add_track("cold-1", "B", audio=b"b", audio_ext="wav")
    assert db.get_track("cold-1").title == "A"


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"title": ""}, InvalidTrack, "title must not be blank"),
        ({"title": "   "}, InvalidTrack, "title must not be blank"),
        ({"title": "x" * 1001}, InvalidTrack, "longer than 1000"),
        ({"artist": "y" * 5000}, InvalidTrack, "longer than 1000"),
        ({"title": "nul\x00byte"}, InvalidTrack, "control characters"),
        ({"track_id": ""}, InvalidTrack, "non-empty string"),
        ({"track_id": "t" * 201}, InvalidTrack, "longer than 200"),
        ({"track_id": " padded"}, InvalidTrack, "surrounding spaces"),
        ({"track_id": "line\nbreak"}, InvalidTrack, "control characters"),
        ({"track_id": "a/b"}, InvalidTrack, "no URL path segment"),
        ({"track_id": 42}, InvalidTrack, "non-empty string"),
        ({"origin": "lukewarm"}, InvalidTrack, "origin must be one of"),
        ({"vector_version": "v" * 101}, InvalidTrack, "vector_version"),
        ({"audio": None}, InvalidTrack, "needs its audio"),
        ({"audio_ext": None}, InvalidTrack, "audio_ext"),
        ({"audio_ext": "exe"}, InvalidAudio, "not one of"),
        ({"audio": b""}, InvalidAudio, "empty audio"),
    ],
)
def test_hostile_tracks_are_refused(db, fields, error, message):
    arguments = {"track_id": "cold-1", "title": "A", "audio": b"abc", "audio_ext": "wav"}
    arguments |= fields
    with pytest.raises(error, match=message):
        db.add_track(arguments.pop("track_id"), arguments.pop("title"), **arguments)
    assert db.count_tracks() == 0


def test_audio_needs_a_store(open_db):
    catalogue = open_db(audio_root=None)
    with pytest.raises(CatalogueError, match="no audio store"):
        catalogue.add_track("cold-1", "A", audio=b"abc", audio_ext="wav")
    assert catalogue.add_track("warm-1", "A", origin="warm").audio_path is None


def test_import_thousands_of_songs_idempotently(db, tmp_path):
    # Speed is bench/load_listens.py's to measure, not a timed assertion's.
    songs_csv = write_songs_csv(tmp_path / "songs.csv", 5000)
    assert db.import_songs(songs_csv, vector_version="v1") == 5000
    assert db.count_tracks("warm") == 5000
    assert len(db.get_tracks(f"S{i:07d}" for i in range(0, 6000, 2))) == 2500
    song = db.get_track("S0000042")
    assert (song.title, song.artist, song.origin, song.vector_version, song.audio_path) == (
        "Song 42",
        "Artist 42",
        "warm",
        "v1",
        None,
    )
    # Again, with 100 new songs: the 4900 known ones are left alone.
    db.add_listens([ListenIn("u", "S0000001")])
    assert db.import_songs(str(write_songs_csv(tmp_path / "more.csv", 5000, start=100))) == 100
    assert db.count_tracks() == 5100 and db.get_track("S0000100").vector_version == "v1"


def test_import_takes_dataset_metadata_as_it_is_but_refuses_bad_rows(db):
    frame = pd.DataFrame({"song_id": ["a", "b"], "title": ["", "B"], "artist": ["", "X"]})
    assert db.import_songs(frame) == 2
    assert db.get_track("a").title == ""
    for bad, message in [
        ({"song_id": ["c", ""]}, "row 1 \\(''\\): song_id is empty"),
        ({"song_id": ["c", "c"]}, "appears more than once"),
        ({"song_id": ["c", "d" * 201]}, "row 1"),
        ({"title": ["ok", "tab\there"]}, "title is too long or has control"),
        ({"artist": ["ok", "z" * 1001]}, "artist is too long"),
    ]:
        rows = {"song_id": ["c", "d"], "title": ["C", "D"], "artist": ["", ""]} | bad
        with pytest.raises(InvalidTrack, match=message):
            db.import_songs(pd.DataFrame(rows))
    assert db.count_tracks() == 2


def test_listens_are_accepted_or_rejected_one_by_one(db):
    db.import_songs(pd.DataFrame({"song_id": ["s1", "s2"], "title": ["1", "2"], "artist": "a"}))
    at = datetime(2024, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    batch = [
        ListenIn("u1", "s1", 3, at),
        ListenIn("u1", "ghost"),
        ListenIn("u2", "s2", 0),
        ListenIn("u2", "s2", -4),
        ListenIn("u2", "s2", True),
        ListenIn("u2", "s2", 2.5),  # type: ignore[arg-type]
        ListenIn("u2", "s2", 2**31),
        ListenIn("", "s2"),
        ListenIn("u" * 201, "s2"),
        ListenIn("u2", "s2", 1, datetime(2024, 3, 1, 9, 0)),
        ListenIn("u2", "s2", np.int64(4)),  # type: ignore[arg-type]
        ListenIn("u1", "s1", 2),
    ]
    results = db.add_listens(batch)
    assert [r.accepted for r in results] == [True] + [False] * 9 + [True, True]
    reasons = [r.error for r in results[1:10]]
    assert "unknown track 'ghost'" in reasons[0]
    assert all("count must be" in reason for reason in reasons[1:6])
    assert "user_id" in reasons[6] and "user_id" in reasons[7]
    assert "timezone-aware" in reasons[8]
    assert [r.reason for r in results] == [None, "unknown_track"] + ["invalid_listen"] * 8 + [
        None,
        None,
    ]
    assert results[0] == ListenResult(True)

    listens = db.export_listens()
    assert listens.to_dict("list") == {
        "user_id": ["u1", "u2"],
        "song_id": ["s1", "s2"],
        "play_count": [5, 4],
    }
    assert isinstance(listens["user_id"].dtype, pd.CategoricalDtype)
    assert listens["play_count"].dtype == np.int32
    assert db.add_listens([]) == []


def test_played_at_is_kept_in_utc(db):
    from sqlalchemy import select

    from catalogue.models import Listen

    db.add_track("s1", "A", origin="warm")
    at = datetime(2024, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    db.add_listens([ListenIn("u1", "s1", 1, at)])
    with db.engine.connect() as connection:
        stored = connection.execute(select(Listen.played_at)).scalar_one()
    assert stored == at and stored.utcoffset() == timedelta(0)


def test_export_of_no_listens_is_an_empty_table(db):
    listens = db.export_listens()
    assert list(listens.columns) == ["user_id", "song_id", "play_count"] and listens.empty
    assert listens["play_count"].dtype == np.int32


def test_vector_versions_are_recorded(db):
    db.import_songs(pd.DataFrame({"song_id": ["s1", "s2"], "title": ["1", "2"], "artist": "a"}))
    assert db.set_vector_version(["s1", "s2", "ghost"], "2024-06-01") == 2
    assert {t.vector_version for t in db.list_tracks()} == {"2024-06-01"}
    with pytest.raises(InvalidTrack):
        db.set_vector_version(["s1"], "")


def stored_files(db) -> list:
    return sorted(p for p in db.audio_store.root.rglob("*") if p.is_file())


def test_a_track_with_its_vector_is_written_all_or_nothing(db):
    from sqlalchemy import text

    from catalogue.events import last_event_seq
    from catalogue.vectors import track_vectors

    with pytest.raises(ValueError, match="finite"):
        db.add_track("bad", "Bad", audio=b"x" * 100, audio_ext="wav", vector_version="v1",
                     vector=np.full(4, np.nan))  # fmt: skip
    with pytest.raises(InvalidTrack, match="vector_version"):
        db.add_track("bad", "Bad", audio=b"x" * 100, audio_ext="wav", vector=np.ones(4))
    assert db.count_tracks() == 0 and stored_files(db) == [] and last_event_seq(db) == 0

    vector = np.arange(1, 5, dtype=np.float32)
    db.add_track("good", "Good", audio=b"y" * 100, audio_ext="wav", vector_version="v1",
                 vector=vector)  # fmt: skip
    np.testing.assert_array_equal(track_vectors(db, "v1", ["good"])["good"], vector)
    with db.engine.connect() as connection:
        kinds = connection.execute(text("SELECT kind FROM track_events")).scalars().all()
    assert kinds == ["added"]


def test_racing_adds_of_one_id_leave_one_track_and_one_file(db):
    """Eight uploads of different bytes under one id at once: one wins, and the audio
    the losers stored before their transaction failed is taken back."""
    from concurrent.futures import ThreadPoolExecutor

    def add(n: int) -> bool:
        try:
            db.add_track("race", f"Take {n}", audio=bytes([n]) * 1000, audio_ext="wav",
                         vector_version="v1", vector=np.ones(4))  # fmt: skip
        except DuplicateTrack:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(add, range(8)))
    assert sum(won) == 1
    track = db.get_track("race")
    assert stored_files(db) == [db.audio_store.path(track.audio_path)]
    assert not any((db.audio_store.root / ".incoming").iterdir())


def test_a_failed_add_keeps_audio_another_track_shares(db):
    db.add_track("first", "First", audio=b"same" * 100, audio_ext="wav")
    with pytest.raises(DuplicateTrack):
        db.add_track("first", "Again", audio=b"other" * 100, audio_ext="wav")
    shared = db.add_track("second", "Second", audio=b"same" * 100, audio_ext="wav")
    with pytest.raises(DuplicateTrack):
        db.add_track("second", "Again", audio=b"same" * 100, audio_ext="wav")
    assert stored_files(db) == [db.audio_store.path(shared.audio_path)]


def test_listens_since_a_watermark_and_up_to_it(db):
    """`last_listen_id` marks where a snapshot stops; `listens_since` reads a user's plays
    above it and `iter_listens(through_id=)` those up to it: each listen on one side."""
    db.import_songs(pd.DataFrame({"song_id": ["s1", "s2", "s3"], "title": "t", "artist": "a"}))
    assert db.last_listen_id() == 0
    db.add_listens([ListenIn("u1", "s1", 2), ListenIn("u2", "s2"), ListenIn("u1", "s1")])
    watermark = db.last_listen_id()
    db.add_listens([ListenIn("u1", "s2", 4), ListenIn("u1", "s1"), ListenIn("u3", "s3", 7)])
    assert db.last_listen_id() > watermark

    assert db.listens_since(["u1"], watermark) == [("u1", "s1", 1), ("u1", "s2", 4)]
    assert db.listens_since(["u1"], None) == [("u1", "s1", 4), ("u1", "s2", 4)]
    assert db.listens_since(["u3", "u2", "u3"], watermark) == [("u3", "s3", 7)]
    assert db.listens_since(["nobody"], None) == []
    assert db.listens_since(["u1"], db.last_listen_id()) == []

    before = pd.concat(list(db.iter_listens(through_id=watermark)))
    assert _rows(before) == [("u1", "s1", 3), ("u2", "s2", 1)]
    assert _rows(pd.concat(list(db.iter_listens()))) == [
        ("u1", "s1", 4),
        ("u1", "s2", 4),
        ("u2", "s2", 1),
        ("u3", "s3", 7),
    ]


def _rows(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    return [
        (str(user), str(song), int(count))
        for user, song, count in zip(
            frame["user_id"], frame["song_id"], frame["play_count"], strict=True
        )
    ]


def test_the_watermark_waits_for_listens_being_written(db):
    """A listen whose transaction took its id before the watermark was read is committed
    by the time the watermark is given: nothing at or below it arrives later."""
    import threading

    from sqlalchemy import insert

    from catalogue.models import WRITE_OPTION, Listen, utc_now

    db.import_songs(pd.DataFrame({"song_id": ["s1"], "title": "t", "artist": "a"}))
    inserted, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with db.engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
            connection.execute(
                insert(Listen).values(user_id="u", track_id="s1", count=1, played_at=utc_now())
            )
            inserted.set()
            release.wait(10)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert inserted.wait(10)
    watermark: list[int] = []
    reader = threading.Thread(target=lambda: watermark.append(db.last_listen_id()))
    reader.start()
    reader.join(0.5)
    assert reader.is_alive()  # waits for the insert in flight ...
    release.set()
    writer.join()
    reader.join(10)
    assert watermark == [1]  # ... and then counts it
