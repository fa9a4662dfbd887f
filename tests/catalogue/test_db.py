"""Opening the catalogue: migrations from empty, persistence across reopen, backend set-up."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import catalogue
from catalogue import ListenIn, open_catalogue
from catalogue.db import MIGRATIONS, database_url
from catalogue.models import Base


def test_migration_from_empty_gives_the_models_schema(db):
    for module in pkgutil.iter_modules(catalogue.__path__, "catalogue."):
        importlib.import_module(module.name)  # every table model registers on Base.metadata
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert context.get_current_revision() == head
        assert compare_metadata(context, Base.metadata) == []
        tables = set(inspect(connection).get_table_names())
    assert {"tracks", "listens", "alembic_version"} <= tables


def test_tracks_and_listens_survive_closing_and_reopening(open_db):
    first = open_db()
    first.add_track("cold-1", "Night Drive", "Nobody", audio=b"RIFF....", audio_ext="wav")
    played_at = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert first.add_listens([ListenIn("u1", "cold-1", 3, played_at)])[0].accepted
    first.close()

    again = open_db()  # migrating an up-to-date database is a no-op
    track = again.get_track("cold-1")
    assert (track.title, track.artist, track.origin) == ("Night Drive", "Nobody", "cold")
    assert again.audio_store.path(track.audio_path).read_bytes() == b"RIFF...."
    listens = again.export_listens()
    assert listens.to_dict("list") == {"user_id": ["u1"], "song_id": ["cold-1"], "play_count": [3]}


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    with (
        open_catalogue(tmp_path / "db" / "catalogue.db") as opened,
        opened.engine.connect() as connection,
    ):
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_concurrent_listen_batches_all_land(db):
    db.add_track("cold-1", "A", audio=b"a", audio_ext="wav")
    db.add_track("cold-2", "B", audio=b"b", audio_ext="wav")
    errors: list[BaseException] = []

    def post_batches(worker: int) -> None:
        try:
            for batch in range(15):
                results = db.add_listens(
                    [ListenIn(f"u{worker}", "cold-1"), ListenIn(f"u{batch}", "cold-2", 2)]
                )
                assert all(result.accepted for result in results)
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    workers = [threading.Thread(target=post_batches, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    totals = db.export_listens().groupby("song_id", observed=True)["play_count"].sum()
    assert totals.to_dict() == {"cold-1": 60, "cold-2": 120}


def test_database_urls():
    assert database_url(Path("/data/c.db")) == "sqlite:////data/c.db"
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("sqlite:///c.db") == "sqlite:///c.db"
    with pytest.raises(ValueError, match="in-memory"):
        open_catalogue("sqlite://")


def test_a_foreign_key_violation_is_refused_by_the_database(db):
    with pytest.raises(Exception, match="(?i)foreign key"), db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO listens (user_id, track_id, count, played_at) "
                "VALUES ('u', 'ghost', 1, CURRENT_TIMESTAMP)"
            )
        )
