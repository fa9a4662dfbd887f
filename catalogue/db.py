"""Open the catalogue database: engine set-up per backend, migrations to head on open.

SQLite (a file; the default for one machine) and PostgreSQL (by URL, for a shared
deployment) behave the same to callers:

- SQLite runs in WAL mode (readers never wait for the writer; a first bulk load of listens
  alone on the file leaves it for the rollback journal, `catalogue.bulk`) with foreign keys on
  (SQLite leaves them off per connection) and `synchronous=FULL` (a committed listen
  survives power loss). Write transactions start with `BEGIN IMMEDIATE`: a deferred
  transaction that reads and then writes fails at once with "database is locked" when
  another connection wrote in between, which concurrent `add_listens` calls would hit;
  an immediate one waits its turn (up to the busy timeout) instead.
- PostgreSQL migrations run under an advisory lock, so service workers starting together
  do not race to create the tables.

Migrations ship inside the package (`catalogue/migrations`) and are located from here,
so no alembic.ini is needed at runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text

from catalogue.audio_store import AudioStore
from catalogue.errors import SchemaTooNew
from catalogue.repository import WRITE_OPTION, Catalogue

DATABASE_URL_ENV = "COLDSTART_DATABASE_URL"
SQLITE_PREFIX = "sqlite:///"
# The service, the scheduler and the nightly run default to one catalogue, so they meet.
DEFAULT_DATABASE_URL = f"{SQLITE_PREFIX}coldstart-catalogue.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30
_MIGRATION_LOCK_KEY = 0x636F6C64  # "cold": one advisory lock id for catalogue migrations


def database_url(url: str | Path) -> str:
    """A SQLAlchemy URL: a path means a SQLite file; plain postgresql:// URLs get psycopg 3."""
    if isinstance(url, Path):
        return f"{SQLITE_PREFIX}{url}"
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def url_or_path(value: str) -> str:
    """A database as a user names it (`--database`): a URL as given, or a plain path taken
    as a SQLite file, made absolute."""
    return value if "://" in value else database_url(Path(value).resolve())


def default_audio_store(url: str | Path) -> Path | None:
    """Where the audio of a catalogue's tracks lives unless a folder is named: `<file>.audio/`
    beside a SQLite database file; None for a server database, which needs one named."""
    url = database_url(url)
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX) and ":memory:" not in url:
        return Path(url[len(SQLITE_PREFIX) :] + ".audio")
    return None


def create_catalogue_engine(url: str | Path) -> Engine:
    """An engine set up for its backend (see the module docstring); no migrations."""
    url = database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database in (None, "", ":memory:"):
        raise ValueError(
            f"{url}: in-memory SQLite gives each connection its own database; use a file"
        )
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by pysqlite
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=FULL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


def check_schema_known(connection: Connection) -> None:
    """Refuse a database whose schema version this code does not know (`SchemaTooNew`):
    a newer coldstart migrated it, and Alembic would fail with "Can't locate revision"."""
    script = ScriptDirectory(str(MIGRATIONS))
    known = {revision.revision for revision in script.walk_revisions()}
    for revision in MigrationContext.configure(connection).get_current_heads():
        if revision not in known:
            raise SchemaTooNew(
                f"the catalogue database is at schema version {revision}, newer than this"
                f" coldstart knows (its newest is {script.get_current_head()}): upgrade"
                " coldstart to open it"
            )


def upgrade_to_head(engine: Engine) -> None:
    """Apply every migration the database lacks (a no-op when it is current); a database
    of a newer schema than this code knows is refused (`SchemaTooNew`), untouched."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        check_schema_known(connection)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_catalogue(url: str | Path, audio_root: Path | None = None) -> Catalogue:
    """Open (creating and migrating as needed) the catalogue at `url`.

    `url` is a SQLAlchemy URL (`sqlite:///catalogue.db`, `postgresql://user@host/db`) or a
    path to a SQLite file; the service reads it from `COLDSTART_DATABASE_URL`. `audio_root`
    is the folder of the audio store; without one, tracks cannot be added with audio.
    """
    engine = create_catalogue_engine(url)
    try:
        upgrade_to_head(engine)
    except BaseException:
        engine.dispose()
        raise
    return Catalogue(engine, AudioStore(audio_root) if audio_root is not None else None)
