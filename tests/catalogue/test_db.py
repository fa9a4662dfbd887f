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


def test_a_database_of_a_newer_schema_is_refused_in_one_line(database_url, tmp_path):
    """A newer coldstart's migration (one revision past this code's head) ran on the
    database: this code names both schema versions and leaves it as it is."""
    import shutil
    import subprocess
    import sys

    from alembic import command
    from alembic.config import Config

    from catalogue import SchemaTooNew
    from catalogue.db import create_catalogue_engine

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    newer = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, newer, ignore=shutil.ignore_patterns("__pycache__"))
    (newer / "versions" / "9999_from_the_future.py").write_text(
        f'revision = "9999"\ndown_revision = "{head}"\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade():\n    pass\n"
    )
    engine = create_catalogue_engine(database_url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(newer))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()

    with pytest.raises(SchemaTooNew) as refused:
        open_catalogue(database_url)
    message = str(refused.value)
    assert "\n" not in message
    assert "schema version 9999" in message and f"its newest is {head}" in message
    engine = create_catalogue_engine(database_url)
    try:
        with engine.connect() as connection:  # untouched: still the newer code's
            assert MigrationContext.configure(connection).get_current_revision() == "9999"
    finally:
        engine.dispose()

    # A command that opens it says so in one line, exit code 1, no traceback.
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "songs.csv").write_text("song_id,title,artist\ns1,One,A\n")
    (dataset / "listens.tsv").write_text("u1\ts1\t1\n")
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import app; app()", "import"]
        + ["--dataset", str(dataset), "--database", database_url, "--no-copy-audio"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "schema version 9999" in lines[0], lines
