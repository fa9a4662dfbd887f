"""Listens in bulk (COPY on PostgreSQL, executemany on SQLite): the rows a plain query sees."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete, event, func, insert, inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError

from catalogue.errors import InvalidTrack
from catalogue.models import Listen, Track
from corpus.dataset import iter_listens, listens_tsv_block, read_listens

AT = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)


def _stored_rows(db) -> list[tuple[str, str, int, datetime]]:
    """Every listen as the ORM reads it: the reference the bulk paths must match."""
    query = select(Listen.user_id, Listen.track_id, Listen.count, Listen.played_at)
    with db.engine.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(query))


def _summed_rows(db) -> list[tuple[str, str, int]]:
    """Plays summed per (user, song) by a plain GROUP BY (what export_listens used to run)."""
    query = select(Listen.user_id, Listen.track_id, func.sum(Listen.count)).group_by(
        Listen.user_id, Listen.track_id
    )
    with db.engine.connect() as connection:
        return sorted((user, song, int(total)) for user, song, total in connection.execute(query))


def _listens_schema(db) -> dict[str, object]:
    """The listens table's indexes, keys and checks as the database holds them (a first
    load drops some and puts them back)."""
    inspector = inspect(db.engine)
    return {
        "indexes": {
            (index["name"], tuple(index["column_names"]))
            for index in inspector.get_indexes("listens")
        },
        "primary_key": inspector.get_pk_constraint("listens"),
        "foreign_keys": inspector.get_foreign_keys("listens"),
        "checks": sorted(check["name"] for check in inspector.get_check_constraints("listens")),
    }


MODEL_INDEXES = {(index.name, tuple(index.columns.keys())) for index in Listen.__table__.indexes}


def _frame_rows(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    return sorted(
        zip(
            frame["user_id"].astype(str),
            frame["song_id"].astype(str),
            frame["play_count"].astype(int),
            strict=True,
        )
    )


def test_streamed_import_stores_every_listen_and_exports_the_sums(db, tiny_world: Path) -> None:
    from corpus.dataset import read_songs

    db.import_songs(read_songs(tiny_world / "songs.csv"))
    migrated = _listens_schema(db)
    assert migrated["indexes"] == MODEL_INDEXES and migrated["foreign_keys"]
    expected = read_listens(tiny_world / "listens.tsv")
    # blocks of 4 KiB: dozens of frames, each with categories of its own
    added = db.import_listens(iter_listens(tiny_world / "listens.tsv", block_bytes=4096), AT)
    assert added == len(expected)
    stored = _stored_rows(db)
    assert [row[:3] for row in stored] == _frame_rows(expected)
    assert {row[3] for row in stored} == {AT}
    assert _listens_schema(db) == migrated  # indexes and keys rebuilt after the load

    # the same listens again, as one frame: every pair now summed from two rows; into a
    # table that holds listens already the indexes stay (a day's append rebuilds nothing)
    statements: list[str] = []
    record = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        db.import_listens(expected, AT)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert statements and not [s for s in statements if "INDEX" in s.upper()]
    exported = db.export_listens()
    assert _frame_rows(exported) == _summed_rows(db)
    assert _frame_rows(exported) == [(u, s, 2 * c) for u, s, c in _frame_rows(expected)]
    assert exported["play_count"].dtype == np.int32
    assert isinstance(exported["song_id"].dtype, pd.CategoricalDtype)
    order = list(zip(exported["user_id"].astype(str), exported["song_id"].astype(str), strict=True))
    with db.engine.connect() as connection:  # the database's own order, as the query gave it
        database_order = connection.execute(
            select(Listen.user_id, Listen.track_id)
            .group_by(Listen.user_id, Listen.track_id)
            .order_by(Listen.user_id, Listen.track_id)
        ).all()
    assert order == [tuple(row) for row in database_order]

    chunks = list(db.iter_listens(chunk_rows=97))
    assert len(chunks) > 1
    assert _frame_rows(
        pd.concat([chunk.astype({"user_id": str, "song_id": str}) for chunk in chunks])
    ) == _frame_rows(exported)


def test_ids_with_commas_quotes_and_backslashes_survive_both_ways(db) -> None:
    songs = ['a,"b"', "c\\d", "é ü 🎵", "plain"]
    db.import_songs(pd.DataFrame({"song_id": songs, "title": "t", "artist": ""}))
    listens = pd.DataFrame(
        {
            "user_id": ['u,"1"', "u\\2", "ユーザー", 'u,"1"'],
            "song_id": songs,
            "play_count": [1, 2, 2**31 - 1, 4],
        }
    )
    assert db.import_listens(listens, AT) == 4
    assert [row[:3] for row in _stored_rows(db)] == _frame_rows(listens)
    assert _frame_rows(db.export_listens()) == _frame_rows(listens)


def test_sums_beyond_int32_are_clipped(db) -> None:
    db.import_songs(pd.DataFrame({"song_id": ["s"], "title": "t", "artist": ""}))
    db.import_listens(
        pd.DataFrame({"user_id": ["u", "u"], "song_id": ["s", "s"], "play_count": [2**31 - 1, 5]})
    )
    assert db.export_listens()["play_count"].tolist() == [2**31 - 1]


def _large_listens(n_rows: int, n_songs: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(
                np.arange(n_rows) // 20, [f"user-{i}" for i in range((n_rows + 19) // 20)]
            ),
            "song_id": pd.Categorical.from_codes(
                rng.integers(0, n_songs, n_rows), [f"song-{i}" for i in range(n_songs)]
            ),
            "play_count": rng.integers(1, 50, n_rows).astype(np.int32),
        }
    )


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("song_id", "ghost", "not in the catalogue"),
        ("play_count", 0, "play count"),
        ("user_id", " padded", "user_id"),
    ],
)
def test_a_bad_row_in_the_middle_of_a_large_import_leaves_nothing(
    db, column: str, value: object, reason: str
) -> None:
    n_rows, bad_row, chunk = 120_000, 91_111, 25_000
    listens = _large_listens(n_rows, 500)
    songs = listens["song_id"].cat.categories
    db.import_songs(pd.DataFrame({"song_id": songs, "title": "t", "artist": ""}))
    migrated = _listens_schema(db)
    listens = listens.astype({column: object})
    listens.loc[bad_row, column] = value
    frames = (listens.iloc[start : start + chunk] for start in range(0, n_rows, chunk))
    with pytest.raises(InvalidTrack, match=f"listens row {bad_row} .*{reason}"):
        db.import_listens(frames)  # three chunks written before the bad one
    assert db.count_listens() == 0
    assert db.export_listens().empty
    assert _listens_schema(db) == migrated  # the load drops indexes and keys: rolled back too


def test_the_songs_a_first_load_checked_stay_until_it_commits_and_the_key_holds_after(
    db,
) -> None:
    """A first PostgreSQL load checks its songs once and drops the foreign key for the COPY:
    the songs must not go meanwhile; afterwards the key is back and cascades."""
    listens = _large_listens(40_000, 100)
    songs = listens["song_id"].cat.categories
    db.import_songs(pd.DataFrame({"song_id": songs, "title": "t", "artist": ""}))

    def frames() -> Iterator[pd.DataFrame]:
        yield listens.iloc[:20_000]
        if db.engine.dialect.name == "postgresql":  # SQLite writers take the whole file
            with db.engine.connect() as other:
                other.exec_driver_sql("SET lock_timeout = '200ms'")
                with pytest.raises(OperationalError, match="lock timeout"):
                    other.execute(delete(Track).where(Track.id == songs[0]))
        yield listens.iloc[20_000:]

    assert db.import_listens(frames(), AT) == len(listens)
    db.delete_track(songs[0])
    assert db.count_listens() == len(listens) - int((listens["song_id"] == songs[0]).sum())
    with pytest.raises(IntegrityError), db.engine.begin() as connection:
        connection.execute(
            insert(Listen).values(user_id="u", track_id=songs[0], count=1, played_at=AT)
        )


def test_an_unknown_song_deep_in_a_streamed_file_leaves_nothing(db, tmp_path: Path) -> None:
    listens = _large_listens(120_000, 500)
    songs = listens["song_id"].cat.categories
    db.import_songs(pd.DataFrame({"song_id": songs[1:], "title": "t", "artist": ""}))
    path = tmp_path / "listens.tsv"
    path.write_bytes(listens_tsv_block(listens).to_pybytes())
    first = int(np.flatnonzero(listens["song_id"] == songs[0])[0])
    with pytest.raises(InvalidTrack, match=f"listens row {first} .*{songs[0]}"):
        db.import_listens(iter_listens(path, block_bytes=256 << 10))
    assert db.count_listens() == 0


def test_a_malformed_line_rejects_the_whole_import_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    listens = _large_listens(100_000, 300)
    pd.DataFrame({"song_id": listens["song_id"].cat.categories, "title": "t", "artist": ""}).to_csv(
        dataset / "songs.csv", index=False
    )
    lines = listens_tsv_block(listens).to_pybytes().split(b"\n")
    lines[70_000] = b"user-x\tsong-1"  # two fields
    (dataset / "listens.tsv").write_bytes(b"\n".join(lines))
    database = tmp_path / "catalogue.db"
    result = CliRunner().invoke(
        app, ["import", "--dataset", str(dataset), "--database", str(database)]
    )
    assert result.exit_code == 1 and "Expected 3 columns" in " ".join(result.output.split())
    from catalogue import open_catalogue

    with open_catalogue(database) as catalogue:
        assert catalogue.count_listens() == 0


def _sqlite_catalogue(path: Path, listens: pd.DataFrame):
    from catalogue import open_catalogue

    db = open_catalogue(path)
    db.import_songs(
        pd.DataFrame({"song_id": listens["song_id"].cat.categories, "title": "t", "artist": ""})
    )
    return db


def _journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_a_first_sqlite_load_skips_the_write_ahead_log_and_leaves_the_file_in_wal(
    tmp_path: Path,
) -> None:
    listens = _large_listens(60_000, 300)
    path = tmp_path / "catalogue.db"
    with _sqlite_catalogue(path, listens) as db:
        size_before = path.stat().st_size
        wal_before = _wal_bytes(path)
        assert db.import_listens(listens, AT) == len(listens)
        grown = path.stat().st_size - size_before
        # under the rollback journal the new pages go to the file once, not through the log
        assert grown > 1 << 20 and _wal_bytes(path) - wal_before < grown // 10
        assert _journal_mode(path) == "wal"
        # a second import appends to a table that holds listens: it goes through the log
        db.import_listens(listens.iloc[:20_000], AT)
        assert _wal_bytes(path) > 256 << 10
        assert db.count_listens() == len(listens) + 20_000
    assert _journal_mode(path) == "wal"


def test_a_first_sqlite_load_beside_another_connection_stays_in_wal(tmp_path: Path) -> None:
    listens = _large_listens(60_000, 300)
    path = tmp_path / "catalogue.db"
    with _sqlite_catalogue(path, listens) as db, closing(sqlite3.connect(path)) as reader:
        reader.execute("SELECT count(*) FROM tracks").fetchone()  # a service holding the file
        assert db.import_listens(listens, AT) == len(listens)
        assert _wal_bytes(path) > 1 << 20  # it could not have the file alone: WAL, no waiting
        assert reader.execute("SELECT count(*) FROM listens").fetchone() == (len(listens),)
        assert _stored_rows(db) == sorted(
            (user, song, int(count), AT)
            for user, song, count in zip(
                listens["user_id"].astype(str),
                listens["song_id"].astype(str),
                listens["play_count"],
                strict=True,
            )
        )
    assert _journal_mode(path) == "wal"


def test_a_bad_row_in_a_first_sqlite_load_leaves_nothing_and_the_file_in_wal(
    tmp_path: Path,
) -> None:
    listens = _large_listens(90_000, 300).astype({"play_count": object})
    listens.loc[70_000, "play_count"] = -1
    path = tmp_path / "catalogue.db"
    with _sqlite_catalogue(path, listens) as db:
        chunks = (listens.iloc[start : start + 20_000] for start in range(0, 90_000, 20_000))
        with pytest.raises(InvalidTrack, match="listens row 70000 "):
            db.import_listens(chunks, AT)
        assert db.count_listens() == 0
        assert _listens_schema(db)["indexes"] == MODEL_INDEXES
    assert _journal_mode(path) == "wal" and not Path(f"{path}-journal").exists()


def test_song_ids_that_are_not_text_are_not_in_the_catalogue(db) -> None:
    db.import_songs(pd.DataFrame({"song_id": ["5", "s1"], "title": "t", "artist": ""}))
    mixed = pd.DataFrame({"user_id": ["u1", "u2"], "song_id": ["s1", 5], "play_count": [1, 2]})
    with pytest.raises(InvalidTrack, match="listens row 1 .*not in the catalogue"):
        db.import_listens(mixed, AT)
    numbers = pd.DataFrame({"user_id": ["u1"], "song_id": [5], "play_count": [1]})
    with pytest.raises(InvalidTrack, match="listens row 0 .*not in the catalogue"):
        db.import_listens(numbers, AT)
    assert db.count_listens() == 0
