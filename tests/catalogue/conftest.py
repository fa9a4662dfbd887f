"""Every catalogue test runs on a SQLite file and on PostgreSQL (a fresh schema per test).

PostgreSQL: `COLDSTART_TEST_POSTGRES_URL` (default the `test` database on 127.0.0.1:5432).
When no server answers, the PostgreSQL variants are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from catalogue import Catalogue, open_catalogue
from tests.postgres import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalogue.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_admin_url")) as url:
        yield url


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
