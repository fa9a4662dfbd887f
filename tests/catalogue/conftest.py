"""Every catalogue test runs on a SQLite file and on PostgreSQL (a fresh schema per test).

PostgreSQL: `COLDSTART_TEST_POSTGRES_URL` (default the `test` database on 127.0.0.1:5432).
When no server answers, the PostgreSQL variants are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from catalogue import Catalogue, open_catalogue

POSTGRES_URL = os.environ.get(
    "COLDSTART_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {str(error.orig).strip()[:200]}")
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalogue.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    schema = f"coldstart_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture()
def open_db(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Catalogue]]:
    """Opens the test database (again and again, as a restarted service would); every
    catalogue opened is closed at the end, before the schema is dropped."""
    opened: list[Catalogue] = []

    def opener(audio_root: Path | None = tmp_path / "audio") -> Catalogue:
        catalogue = open_catalogue(database_url, audio_root)
        opened.append(catalogue)
        return catalogue

    yield opener
    for catalogue in opened:
        catalogue.close()


@pytest.fixture()
def db(open_db: Callable[..., Catalogue]) -> Catalogue:
    return open_db()
