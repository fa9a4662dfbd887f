"""Listens in bulk, at Taste Profile scale (48M rows): in and out of the database in chunks.

PostgreSQL gets them by COPY (psycopg 3's `cursor.copy` on the raw connection of the
SQLAlchemy transaction), as text rows that Arrow kernels build, and gives them as Arrow
batches (the ADBC PostgreSQL driver's COPY BINARY reader); SQLite by `executemany` of one
chunk's tuples and a cursor read `fetchmany` at a time. Either way memory is bounded by a
chunk, and no ORM object or dict is built per listen. The table and column names come
from the models (`catalogue.models.Listen`), which stay the source of the schema.

Validation is the caller's (`catalogue.repository`): these functions write what they are
given and read what the database holds.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from itertools import repeat
from types import TracebackType
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from adbc_driver_postgresql import dbapi as adbc_postgresql
from sqlalchemy import (
    Connection,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Table,
    func,
    select,
)
from sqlalchemy.schema import AddConstraint, DropConstraint

from catalogue.models import Listen
from corpus.dataset import tsv_block

# Summed listens read per chunk.
EXPORT_CHUNK_ROWS = 500_000
WRITE_CHUNK_ROWS = 200_000  # listens per COPY block or executemany call
_READ_AHEAD = 4  # Arrow batches (~16 MB each) read ahead of the export's consumer
_POSTGRES_INDEX_BUILD_MEM = "256MB"  # maintenance_work_mem of an import's index builds
_SQLITE_IMPORT_CACHE_KIB = 512 << 10  # page cache for index inserts of one import (512 MiB)
_LISTENS = cast(Table, Listen.__table__)
# dropped for a first load, rebuilt after it
_LISTEN_INDEXES: tuple[Index, ...] = tuple(_LISTENS.indexes)
# On PostgreSQL a COPY checks these row by row (the foreign key's trigger looks each listen's
# track up and locks it: 2.8x the COPY's time at 1M listens; the primary key's index takes
# each id), so a first load drops them too and adds them back after, each checked in bulk
# (one index build, one anti-join of listens against tracks). SQLite cannot drop a constraint.
_LISTEN_KEYS: tuple[PrimaryKeyConstraint | ForeignKeyConstraint, ...] = (
    _LISTENS.primary_key,
    *_LISTENS.foreign_key_constraints,
)
_INSERTED = (Listen.user_id, Listen.track_id, Listen.count, Listen.played_at)


class ListenWriter:
    """Writes validated chunks of listens into the open transaction of `connection`.

    Each chunk is a frame with columns user_id, song_id (categorical or str) and
    play_count (integers), all stamped `played_at`. Use as a context manager: entering takes
    the first load's locks (see `__enter__`); a PostgreSQL COPY opens at the first `write`,
    so the connection still answers queries until then, stays open across chunks and is
    finished on a clean exit."""

    def __init__(self, connection: Connection, played_at: datetime) -> None:
        self.connection = connection
        self.postgres = connection.dialect.name == "postgresql"
        # the driver's own connection (psycopg or sqlite3): its COPY and executemany
        self.raw: Any = connection.connection.dbapi_connection
        self.stamp: Any
        table = Listen.__table__
        quote = connection.dialect.identifier_preparer.quote
        columns = ", ".join(quote(column.name) for column in _INSERTED)
        name = connection.dialect.identifier_preparer.format_table(table)
        self.table_name = name
        if self.postgres:
            self.statement = f"COPY {name} ({columns}) FROM STDIN"
            self.stamp = played_at.astimezone(UTC).isoformat()
        else:
            marks = ", ".join("?" for _ in _INSERTED)
            self.statement = f"INSERT INTO {name} ({columns}) VALUES ({marks})"
            process = table.c.played_at.type.bind_processor(connection.dialect)
            stamp = process(played_at) if process else played_at
            # adapted to what SQLite stores once, as the driver would for every row
            self.stamp = sqlite3.adapt(stamp, sqlite3.PrepareProtocol, stamp)

    def __enter__(self) -> ListenWriter:
        if self.postgres:
            # memory for the index builds at the end (reset when the transaction ends)
            self.connection.exec_driver_sql(
                f"SET LOCAL maintenance_work_mem = '{_POSTGRES_INDEX_BUILD_MEM}'"
            )
        else:
            self._cache = self.raw.execute("PRAGMA cache_size").fetchone()[0]
            self.raw.execute(f"PRAGMA cache_size=-{_SQLITE_IMPORT_CACHE_KIB}")
        # What bulk loaders do for a first load (PostgreSQL's "Populating a Database"): no
        # index to update nor key to check per row; each is rebuilt or checked once at the
        # end. Inside the transaction, so a failed import rolls the drop back; on PostgreSQL
        # the listens table is locked for the import's length, and so is tracks (dropping the
        # foreign key drops its triggers there): readers of either wait for the commit. Into
        # a table that already holds listens all stay: rebuilding them would cost the whole
        # table for what may be a day's append, and would block the live feed meanwhile.
        self.rebuild_indexes = listens_table_is_empty(self.connection)
        if self.rebuild_indexes:
            if self.postgres:
                for constraint in _LISTEN_KEYS:
                    self.connection.execute(DropConstraint(constraint))
            for index in _LISTEN_INDEXES:
                index.drop(self.connection)
        self._copy_open = ExitStack()  # the COPY and its cursor, once the first write opens them
        self._copy: Any = None
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Write `frame`, `WRITE_CHUNK_ROWS` rows at a time."""
        if self.postgres:
            if self._copy is None:
                cursor = self._copy_open.enter_context(self.raw.cursor())
                self._copy = self._copy_open.enter_context(cursor.copy(self.statement))
            for start in range(0, len(frame), WRITE_CHUNK_ROWS):
                rows = frame.iloc[start : start + WRITE_CHUNK_ROWS]
                self._copy.write(_copy_text_block(rows, self.stamp))
            return
        users, user_codes = _values_and_codes(frame["user_id"])
        songs, song_codes = _values_and_codes(frame["song_id"])
        counts = frame["play_count"].to_numpy(dtype=np.int64)
        for start in range(0, len(frame), WRITE_CHUNK_ROWS):
            rows = slice(start, start + WRITE_CHUNK_ROWS)
            self.raw.executemany(
                self.statement,
                zip(
                    users[user_codes[rows]],
                    songs[song_codes[rows]],
                    counts[rows].tolist(),
                    repeat(self.stamp),
                ),
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._copy_open.__exit__(exc_type, exc, traceback)
            if exc_type is None and self.rebuild_indexes:
                for index in _LISTEN_INDEXES:
                    index.create(self.connection)
                if self.postgres:
                    for constraint in _LISTEN_KEYS:
                        self.connection.execute(AddConstraint(constraint))
                    # statistics of the rows just loaded, as PostgreSQL's "Populating a
                    # Database" advises: the nightly GROUP BY is planned for the table's
                    # real size, not for what it held before (autovacuum comes later)
                    self.connection.exec_driver_sql(f"ANALYZE {self.table_name}")
        finally:
            if not self.postgres:
                self.raw.execute(f"PRAGMA cache_size={self._cache}")


def listens_table_is_empty(connection: Connection) -> bool:
    return connection.execute(select(Listen.id).limit(1)).first() is None


@contextmanager
def first_load_journal(connection: Connection) -> Iterator[bool]:
    """On SQLite, a first load of listens (into an empty table, `connection` not in a
    transaction) runs under the rollback journal instead of WAL, and WAL is set back after
    it; yields whether it switched. Pages new to the file are never journaled, where WAL
    writes every page twice (log, then checkpoint) and slows as the one transaction's log
    grows: 18 s per million listens at 48M, against 4.7 s at 4.8M. The switch needs the
    file to itself: while any other connection holds it (a running service), the load
    stays in WAL, and while the load runs, new connections wait or fail as busy."""
    if connection.dialect.name != "sqlite":
        yield False
        return
    raw: Any = connection.connection.dbapi_connection
    empty = listens_table_is_empty(connection)
    connection.rollback()  # the check's read transaction: the mode changes outside one
    switched = False
    if empty:
        timeout = raw.execute("PRAGMA busy_timeout").fetchone()[0]
        raw.execute("PRAGMA busy_timeout=0")  # another connection holds it: do not wait
        try:
            switched = raw.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
        except sqlite3.OperationalError:  # "database is locked": someone else has it open
            switched = False
        finally:
            raw.execute(f"PRAGMA busy_timeout={timeout}")
    try:
        yield switched
    finally:
        if switched:
            if connection.in_transaction():
                connection.rollback()
            raw.execute("PRAGMA journal_mode=WAL")


def _values_and_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A column as its distinct `str` values (object array) and each row's code into them,
    so that rows refer to a few strings instead of holding one each."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(str).astype("category")
    return column.cat.categories.to_numpy(dtype=object), column.cat.codes.to_numpy()


def _copy_text_block(frame: pd.DataFrame, stamp: str) -> pa.Buffer:
    """One chunk as COPY text rows `user<TAB>track<TAB>count<TAB>played_at`: ids hold no
    control characters (the catalogue's rule, checked before), so a backslash, doubled, is
    the only escape text format needs; built by Arrow kernels, no Python string per row."""
    users = pc.replace_substring(pa.array(frame["user_id"]).cast(pa.string()), "\\", "\\\\")
    songs = pc.replace_substring(pa.array(frame["song_id"]).cast(pa.string()), "\\", "\\\\")
    counts = pa.array(frame["play_count"].to_numpy(dtype=np.int64)).cast(pa.string())
    return tsv_block(users, songs, counts, pa.scalar(stamp))


def _summed_query(connection: Connection, through_id: int | None) -> str:
    """SELECT user_id, track_id, sum(count) ... [WHERE id <= through_id] GROUP BY, ORDER BY
    user, track: the SQL of the models' names in this connection's dialect, the bound
    (an int) written in."""
    query = (
        select(Listen.user_id, Listen.track_id, func.sum(Listen.count))
        .group_by(Listen.user_id, Listen.track_id)
        .order_by(Listen.user_id, Listen.track_id)
    )
    if through_id is not None:
        query = query.where(Listen.id <= int(through_id))
    return str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))


def summed_listens(
    connection: Connection, chunk_rows: int = EXPORT_CHUNK_ROWS, through_id: int | None = None
) -> Iterator[pd.DataFrame]:
    """Plays summed per (user, song), sorted by user then song, as consecutive frames of
    `chunk_rows` rows (the last one shorter): user_id, song_id (categorical, each frame its
    own categories) and play_count (int64, unclipped); one chunk in memory at a time. Only
    listens with an id up to `through_id` count, when it is given.

    PostgreSQL: read as Arrow batches by the ADBC driver (COPY BINARY decoded in C++, no
    Python object per row: measured 1.5-1.8x faster than psycopg's server-side cursor, a
    third of its CPU) on a connection of its own to `connection`'s database; the one query
    reads one snapshot.
    SQLite: a cursor of `connection`, inside its transaction, `fetchmany` at a time."""
    query = _summed_query(connection, through_id)
    if connection.dialect.name == "postgresql":
        yield from _postgres_summed(connection, query, chunk_rows)
        return
    raw: Any = connection.connection.dbapi_connection  # sqlite3's
    cursor = raw.execute(query)
    try:
        while rows := cursor.fetchmany(chunk_rows):
            users, songs, counts = zip(*rows, strict=True)
            del rows
            yield pd.DataFrame(
                {
                    "user_id": pd.Categorical(users),
                    "song_id": pd.Categorical(songs),
                    "play_count": np.asarray(counts, dtype=np.int64),
                }
            )
    finally:
        cursor.close()


def _postgres_summed(connection: Connection, query: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """`summed_listens` on PostgreSQL: the driver's batches (about 16 MB each) of `query`
    regrouped into frames of `chunk_rows` rows."""
    uri = connection.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with adbc_postgresql.connect(uri, autocommit=True) as adbc, adbc.cursor() as cursor:
        cursor.execute(query)
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in _read_ahead(cursor.fetch_record_batch()):
            pending.append(batch)
            held += batch.num_rows
            while held >= chunk_rows:
                table = pa.Table.from_batches(pending).combine_chunks()
                yield _sums_frame(table.slice(0, chunk_rows))
                rest = table.slice(chunk_rows)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield _sums_frame(pa.Table.from_batches(pending).combine_chunks())


def _read_ahead(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """`reader`'s batches, read by a thread up to `_READ_AHEAD` batches ahead, so that the
    server streams the next rows while the caller works on the last ones (Arrow reads
    without the GIL). The thread ends with the reader, or when the caller stops early."""
    ready: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(_READ_AHEAD)
    stop = threading.Event()

    def offer(item: pa.RecordBatch | BaseException | None) -> bool:
        """Queue `item` unless the caller stopped (then False): never blocks for good."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in reader:
                if not offer(batch):
                    return
            offer(None)
        except BaseException as error:  # handed to the caller, raised there
            offer(error)

    thread = threading.Thread(target=read, name="coldstart-summed-listens", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _sums_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow columns (user, track, sum) as `summed_listens` frames them: ids dictionary-
    encoded by Arrow, so pandas gets categoricals without a Python string per row."""
    users, songs, counts = (table.column(i).combine_chunks() for i in range(3))
    return pd.DataFrame(
        {
            "user_id": pc.dictionary_encode(users).to_pandas(),
            "song_id": pc.dictionary_encode(songs).to_pandas(),
            "play_count": counts.to_numpy().astype(np.int64, copy=False),
        }
    )
