"""What the service and the nightly job do with the catalogue, as one `Catalogue` object.

Open it with `catalogue.db.open_catalogue`. Methods return plain frozen records (never
ORM objects bound to a session) and raise the domain errors of `catalogue.errors`.
Every change to `tracks` logs its event (`catalogue.events`) in its own transaction, which
service replicas follow.

Rules on values, checked here so both backends agree (SQLite would store anything): ids
(track and user) are 1-200 characters without control characters or surrounding spaces;
titles and artists at most 1000 characters without control characters. A track added
through the service needs a title and its audio; songs imported from a dataset are taken
with the metadata they have (an empty title or artist is allowed there).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import union_categoricals
from sqlalchemy import (
    CursorResult,
    Engine,
    Result,
    Row,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from catalogue.audio_store import AudioStore, StoredAudio
from catalogue.bulk import EXPORT_CHUNK_ROWS, ListenWriter, first_load_journal, summed_listens
from catalogue.errors import CatalogueError, DuplicateTrack, InvalidTrack, TrackNotFound
from catalogue.events import record_event
from catalogue.models import (
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_VERSION_LENGTH,
    ORIGINS,
    WRITE_OPTION,
    Listen,
    Track,
    utc_now,
)
from catalogue.vectors import TrackVector, vector_row
from corpus.dataset import read_songs

Origin = Literal["warm", "cold"]
# Why a listen was refused: its track is not in the catalogue, or its fields break a rule.
ListenRejection = Literal["unknown_track", "invalid_listen"]

MAX_PLAY_COUNT = np.iinfo(np.int32).max
_IMPORT_CHUNK = 20_000  # rows per executemany: bounded memory for million-song imports
_IN_CHUNK = 900  # ids per IN (...) list, under SQLite's bound-parameter limit
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# One user's plays since a listen id, per song (`Catalogue.user_listens_since`); the
# (user_id, id) index reads only those rows.
_USER_LISTENS_SINCE = (
    select(Listen.track_id, func.sum(Listen.count))
    .where(Listen.user_id == bindparam("user_id"), Listen.id > bindparam("after_id"))
    .group_by(Listen.track_id)
    .order_by(Listen.track_id)
)


@dataclass(frozen=True)
class TrackRecord:
    """One row of `tracks`."""

    id: str
    title: str
    artist: str
    origin: Origin
    audio_path: str | None
    audio_sha256: str | None
    added_at: datetime
    vector_version: str | None

    @classmethod
    def from_row(cls, row: Track | Row[Any]) -> TrackRecord:
        return cls(
            id=row.id,
            title=row.title,
            artist=row.artist,
            origin=row.origin,  # type: ignore[arg-type]
            audio_path=row.audio_path,
            audio_sha256=row.audio_sha256,
            added_at=row.added_at,
            vector_version=row.vector_version,
        )


@dataclass(frozen=True)
class ListenIn:
    """One play to record: `count` plays of `track_id` by `user_id` (at `played_at`, UTC
    aware; now when None)."""

    user_id: str
    track_id: str
    count: int = 1
    played_at: datetime | None = None


@dataclass(frozen=True)
class ListenResult:
    """The outcome of one `ListenIn`: stored, or rejected with `reason` and a sentence
    (`error`) saying what was wrong."""

    accepted: bool
    error: str | None = None
    reason: ListenRejection | None = None


def _id_problem(value: object, what: str) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string"
    if len(value) > MAX_ID_LENGTH:
        return f"{what} is longer than {MAX_ID_LENGTH} characters"
    if _CONTROL.search(value) or value != value.strip():
        return f"{what} {value!r} holds control characters or surrounding spaces"
    if "/" in value:  # the API addresses a track as one path segment: /v1/tracks/{id}
        return f"{what} {value!r} holds a '/', which no URL path segment can carry"
    return None


def _text_problem(value: object, what: str, required: bool) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string"
    if required and not value.strip():
        return f"{what} must not be blank"
    if len(value) > MAX_TEXT_LENGTH:
        return f"{what} is longer than {MAX_TEXT_LENGTH} characters"
    if _CONTROL.search(value):
        return f"{what} holds control characters"
    return None


def _check_version(version: str | None) -> None:
    if version is not None and (not version or len(version) > MAX_VERSION_LENGTH):
        raise InvalidTrack(f"vector_version must be 1-{MAX_VERSION_LENGTH} characters")


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Catalogue:
    """The tracks, their stored audio and the listens, behind one database engine."""

    def __init__(self, engine: Engine, audio_store: AudioStore | None) -> None:
        self.engine = engine
        self.audio_store = audio_store
        self._reading = sessionmaker(engine, expire_on_commit=False)
        self._writing = sessionmaker(
            engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    def close(self) -> None:
        """Close every pooled connection (the data stays; open again to use it)."""
        self.engine.dispose()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- tracks -------------------------------------------------------------------------

    def add_track(
        self,
        track_id: str,
        title: str,
        artist: str = "",
        *,
        audio: bytes | BinaryIO | Path | None = None,
        audio_ext: str | None = None,
        origin: Origin = "cold",
        vector_version: str | None = None,
        vector: np.ndarray | None = None,
    ) -> TrackRecord:
        """Add one track, all or nothing; a cold track (added by audio) must come with its
        `audio`, which is stored durably (content-addressed) before the row is written.

        `vector` `(dim,)` is the track's predicted vector for model `vector_version`: it is
        written in the transaction of the row and its "added" event, so a reader sees the
        three together or none. When the transaction fails the audio file this call
        stored is removed again (unless another track has the same bytes).

        Raises `InvalidTrack`, `InvalidAudio`, `DuplicateTrack` (and `ValueError` for a
        vector that is not one finite row)."""
        problem = (
            _id_problem(track_id, "track id")
            or _text_problem(title, "title", required=True)
            or _text_problem(artist, "artist", required=False)
        )
        if problem:
            raise InvalidTrack(problem)
        if origin not in ORIGINS:
            raise InvalidTrack(f"origin must be one of {ORIGINS}, got {origin!r}")
        _check_version(vector_version)
        if origin == "cold" and audio is None:
            raise InvalidTrack(f"cold track {track_id!r} needs its audio")
        if vector is not None and vector_version is None:
            raise InvalidTrack("a vector needs the vector_version it was predicted by")
        vector_values = (
            vector_row(track_id, vector_version, vector)
            if vector is not None and vector_version is not None
            else None
        )
        if self._exists(track_id):  # before storing audio that would then go unused
            raise DuplicateTrack(f"track {track_id!r} already exists")
        stored = None
        if audio is not None:
            if self.audio_store is None:
                raise CatalogueError(
                    "no audio store configured: open the catalogue with audio_root"
                )
            if audio_ext is None:
                raise InvalidTrack("audio_ext is needed with audio")
            stored = self.audio_store.put(audio, audio_ext)
        row = Track(
            id=track_id,
            title=title,
            artist=artist,
            origin=origin,
            audio_path=stored.relative_path if stored else None,
            audio_sha256=stored.sha256 if stored else None,
            added_at=utc_now(),
            vector_version=vector_version,
        )
        try:
            with self._writing.begin() as session:
                if session.get(Track, track_id) is not None:
                    raise DuplicateTrack(f"track {track_id!r} already exists")
                session.add(row)
                session.flush()  # the row first: a concurrent duplicate fails before its event
                if vector_values is not None:
                    session.execute(insert(TrackVector).values(**vector_values))
                record_event(session, "added", track_id)
        except BaseException as error:
            if stored is not None:
                self._forget_audio(stored)
            if isinstance(error, IntegrityError) and self._exists(track_id):
                # a concurrent add won the race (PostgreSQL)
                raise DuplicateTrack(f"track {track_id!r} already exists") from error
            raise
        if stored is not None and isinstance(audio, bytes | Path):
            self._keep_audio(stored, audio)
        return TrackRecord.from_row(row)

    def get_track(self, track_id: str) -> TrackRecord:
        """The track `track_id`; `TrackNotFound` when there is none."""
        with self._reading() as session:
            row = session.get(Track, track_id)
            if row is None:
                raise TrackNotFound(f"no track {track_id!r}")
            return TrackRecord.from_row(row)

    def get_tracks(self, track_ids: Iterable[str]) -> dict[str, TrackRecord]:
        """The tracks among `track_ids`, by id (ids with no track are left out): one query
        per 900 ids, for decorating a page of search results with titles and artists."""
        wanted = list(dict.fromkeys(track_ids))
        found: dict[str, TrackRecord] = {}
        with self._reading() as session:
            for chunk in _chunks(wanted, _IN_CHUNK):
                for row in session.scalars(select(Track).where(Track.id.in_(chunk))):
                    found[row.id] = TrackRecord.from_row(row)
        return found

    def delete_track(self, track_id: str) -> None:
        """Delete a track and its listens. Its audio file stays in the store: other tracks
        may share the bytes, and the store is append-only by design."""
        with self._writing.begin() as session:
            deleted = _rowcount(session.execute(delete(Track).where(Track.id == track_id)))
            if deleted:
                record_event(session, "deleted", track_id)
        if not deleted:
            raise TrackNotFound(f"no track {track_id!r}")

    def list_tracks(
        self, origin: Origin | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[TrackRecord]:
        """Tracks in the order they were added (then by id), optionally of one origin. Read
        as plain rows, not ORM objects (the snapshot lists 385k tracks: 2.4x faster)."""
        query = (
            select(*Track.__table__.columns)
            .order_by(Track.added_at, Track.id)
            .offset(offset)
            .limit(limit)
        )
        if origin is not None:
            query = query.where(Track.origin == origin)
        with self._reading() as session:
            return [TrackRecord.from_row(row) for row in session.execute(query)]

    def count_tracks(self, origin: Origin | None = None) -> int:
        query = select(func.count()).select_from(Track)
        if origin is not None:
            query = query.where(Track.origin == origin)
        with self._reading() as session:
            return int(session.scalar(query) or 0)

    def set_vector_version(self, track_ids: Sequence[str], version: str) -> int:
        """Record that the index now holds vectors of model `version` for `track_ids`;
        returns how many tracks were updated (unknown ids are skipped)."""
        _check_version(version)
        updated = 0
        with self._writing.begin() as session:
            for chunk in _chunks(list(track_ids), _IN_CHUNK):
                statement = update(Track).where(Track.id.in_(chunk)).values(vector_version=version)
                updated += _rowcount(session.execute(statement))
        return updated

    def import_songs(
        self,
        songs: str | Path | pd.DataFrame,
        vector_version: str | None = None,
        audio: Mapping[str, Path] | None = None,
    ) -> int:
        """Import a dataset's songs (`songs.csv`, or its DataFrame song_id,title,artist) as
        warm tracks in one transaction; ids already in the catalogue are left as they are,
        so importing again is harmless. Returns how many tracks were added. One "imported"
        event is logged when any was (not one per song: see `catalogue.events`).

        `audio` (song id -> recording) copies those recordings into the audio store first,
        so that the catalogue alone holds what the nightly job trains on.
        Raises `InvalidTrack` naming the first bad row (nothing is imported then)."""
        _check_version(vector_version)
        frame = songs if isinstance(songs, pd.DataFrame) else read_songs(Path(songs))
        self._check_songs(frame)
        stored = {}
        if audio:
            if self.audio_store is None:
                raise CatalogueError("no audio store configured: open the catalogue with one")
            wanted = set(frame["song_id"])
            for song_id, path in audio.items():
                if song_id in wanted:
                    stored[song_id] = self.audio_store.put(Path(path), Path(path).suffix[1:])
        added_at = utc_now()
        rows = [
            {
                "id": song_id,
                "title": title,
                "artist": artist,
                "origin": "warm",
                "audio_path": stored[song_id].relative_path if song_id in stored else None,
                "audio_sha256": stored[song_id].sha256 if song_id in stored else None,
                "added_at": added_at,
                "vector_version": vector_version,
            }
            for song_id, title, artist in zip(
                frame["song_id"], frame["title"], frame["artist"], strict=True
            )
        ]
        with self._writing.begin() as session:
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            statement = dialect.insert(Track).on_conflict_do_nothing(index_elements=["id"])
            before = session.scalar(select(func.count()).select_from(Track)) or 0
            for chunk in _chunks(rows, _IMPORT_CHUNK):
                session.execute(statement, chunk)
            after = session.scalar(select(func.count()).select_from(Track)) or 0
            if after > before:
                record_event(session, "imported", None)
        return int(after - before)

    # ---- listens ------------------------------------------------------------------------

    def import_listens(
        self, listens: pd.DataFrame | Iterable[pd.DataFrame], played_at: datetime | None = None
    ) -> int:
        """Bulk-add a dataset's listening history, all stamped `played_at` (default now), in
        one transaction: a frame with columns user_id, song_id, play_count (as
        `corpus.dataset.read_listens` gives them), or consecutive such frames (as
        `corpus.dataset.iter_listens` streams `listens.tsv`), written by COPY / executemany
        (`catalogue.bulk`) a chunk at a time. Every song must be in the catalogue already
        (import the songs first). Raises `InvalidTrack` naming the first bad row (counted
        from 0 over all frames: an unknown song, a bad user id or play count), and nothing
        is added. Returns how many rows were added."""
        played_at = played_at or utc_now()
        frames = [listens] if isinstance(listens, pd.DataFrame) else listens
        added = 0
        with self.engine.connect() as connection, first_load_journal(connection):
            with connection.execution_options(**{WRITE_OPTION: True}).begin():
                with ListenWriter(connection, played_at) as writer:
                    # read after the writer's locks: a first load on PostgreSQL holds tracks
                    # from here to its commit, so no song checked here can go before it
                    tracks = connection.execute(select(Track.id)).scalars().all()
                    known = pa.array(tracks, pa.string())
                    for frame in frames:
                        _check_listens(frame, known, first_row=added)
                        writer.write(frame)
                        added += len(frame)
        return added

    def count_listens(self) -> int:
        with self._reading() as session:
            return int(session.scalar(select(func.count()).select_from(Listen)) or 0)

    def add_listens(self, listens: Sequence[ListenIn]) -> list[ListenResult]:
        """Record a batch of plays; one `ListenResult` per item, in order.

        Items with an unknown track, a count below 1 or a bad user id are rejected one by
        one; the others are committed in one transaction before this returns."""
        results: list[ListenResult | None] = []
        for listen in listens:
            problem = _id_problem(listen.user_id, "user_id") or self._listen_problem(listen)
            results.append(ListenResult(False, problem, "invalid_listen") if problem else None)
        pending = [i for i, result in enumerate(results) if result is None]
        if pending:
            with self._writing.begin() as session:
                track_ids = sorted({listens[i].track_id for i in pending})
                known: set[str] = set()
                for chunk in _chunks(track_ids, _IN_CHUNK):
                    query = select(Track.id).where(Track.id.in_(chunk)).with_for_update(read=True)
                    known.update(session.scalars(query))
                rows = []
                now = utc_now()
                for i in pending:
                    listen = listens[i]
                    if listen.track_id not in known:
                        results[i] = ListenResult(
                            False, f"unknown track {listen.track_id!r}", "unknown_track"
                        )
                        continue
                    rows.append(
                        {
                            "user_id": listen.user_id,
                            "track_id": listen.track_id,
                            "count": int(listen.count),
                            "played_at": listen.played_at or now,
                        }
                    )
                    results[i] = ListenResult(True)
                if rows:
                    session.execute(insert(Listen), rows)
        return results  # type: ignore[return-value]

    def last_listen_id(self) -> int:
        """The highest listen id (0 without listens), read so that every listen up to it
        is committed: a watermark, up to which a snapshot takes the listens and above which
        the service counts them as posted since its model version was built.

        PostgreSQL gives ids at insert, not at commit, so id 10 may commit after 11: the read
        waits, under `LOCK TABLE listens IN SHARE MODE` (held for this one statement), for
        the transactions inserting listens to end. A SQLite write transaction has the file
        to itself. (SQLite may give a new listen the id of the highest one if that one was
        deleted, with its track, after the watermark was read: such a listen then waits
        for the next version.)"""
        with self._writing.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("LOCK TABLE listens IN SHARE MODE"))
            return int(session.scalar(select(func.max(Listen.id))) or 0)

    def listens_since(
        self, user_ids: Iterable[str], after_id: int | None
    ) -> list[tuple[str, str, int]]:
        """Plays of `user_ids` with a listen id above `after_id` (every one of theirs with
        None), summed per (user, song): `(user_id, song_id, plays)` sorted by user, song.
        The (user_id, id) index reads only those rows, however many a user had before."""
        rows: list[tuple[str, str, int]] = []
        with self._reading() as session:
            for chunk in _chunks(sorted(set(user_ids)), _IN_CHUNK):
                query = (
                    select(Listen.user_id, Listen.track_id, func.sum(Listen.count))
                    .where(Listen.user_id.in_(chunk))
                    .group_by(Listen.user_id, Listen.track_id)
                    .order_by(Listen.user_id, Listen.track_id)
                )
                if after_id is not None:
                    query = query.where(Listen.id > after_id)
                rows.extend(
                    (user, song, int(plays)) for user, song, plays in session.execute(query)
                )
        return rows

    def user_listens_since(self, user_id: str, after_id: int | None) -> list[tuple[str, int]]:
        """One user's plays with a listen id above `after_id` (every one with None), summed
        per song: `(song_id, plays)` sorted by song. `listens_since` for one user, on a
        pooled connection with a cached statement and no ORM session: the one database
        read of a recommendation (about a third of the time)."""
        with self.engine.connect() as connection:
            after = -1 if after_id is None else after_id
            rows = connection.execute(_USER_LISTENS_SINCE, {"user_id": user_id, "after_id": after})
            return [(song, int(plays)) for song, plays in rows]

    def iter_listens(
        self, chunk_rows: int = EXPORT_CHUNK_ROWS, through_id: int | None = None
    ) -> Iterator[pd.DataFrame]:
        """Plays summed per (user, song), sorted by user then song, streamed by one query
        as consecutive frames of about `chunk_rows` rows (Arrow batches from the ADBC
        driver on PostgreSQL, a cursor on SQLite; `catalogue.bulk`): user_id and song_id
        (categorical, each frame its own categories), play_count (int32, sums clipped at
        2**31 - 1). What the nightly snapshot writes to `listens.tsv` as it reads, of the
        listens with an id up to `through_id` (`last_listen_id`; None: all)."""
        with self._reading() as session:
            for frame in summed_listens(session.connection(), chunk_rows, through_id):
                frame["play_count"] = np.minimum(frame["play_count"], MAX_PLAY_COUNT).astype(
                    np.int32
                )
                yield frame

    def export_listens(self) -> pd.DataFrame:
        """Every summed play in one frame (`iter_listens` joined): columns as
        `corpus.dataset.read_listens` gives them, sorted by user, song."""
        frames = list(self.iter_listens())
        if not frames:
            return pd.DataFrame(
                {
                    "user_id": pd.Categorical([]),
                    "song_id": pd.Categorical([]),
                    "play_count": np.zeros(0, dtype=np.int32),
                }
            )
        return pd.DataFrame(
            {
                column: union_categoricals(
                    [frame[column] for frame in frames], sort_categories=True
                )
                for column in ("user_id", "song_id")
            }
            | {"play_count": np.concatenate([frame["play_count"].to_numpy() for frame in frames])}
        )

    # ---- internals ----------------------------------------------------------------------

    @staticmethod
    def _listen_problem(listen: ListenIn) -> str | None:
        if not isinstance(listen.track_id, str) or not listen.track_id:
            return "track_id must be a non-empty string"
        count = listen.count
        if isinstance(count, bool) or not isinstance(count, int | np.integer):
            return f"count must be an integer, got {count!r}"
        if not 1 <= count <= MAX_PLAY_COUNT:
            return f"count must be between 1 and {MAX_PLAY_COUNT}, got {count}"
        if listen.played_at is not None and (
            not isinstance(listen.played_at, datetime) or listen.played_at.tzinfo is None
        ):
            return "played_at must be a timezone-aware datetime"
        return None

    def _forget_audio(self, stored: StoredAudio) -> None:
        """Remove the file a failed `add_track` stored, unless it was there before or a
        track (another upload of the same bytes) refers to it."""
        if not stored.created or self.audio_store is None:
            return
        with self._reading() as session:
            shared = session.scalar(
                select(func.count()).select_from(Track).where(Track.audio_sha256 == stored.sha256)
            )
        if not shared:
            self.audio_store.remove(stored)

    def _keep_audio(self, stored: StoredAudio, audio: bytes | Path) -> None:
        """After a commit: put the file back should a failing upload of the same bytes
        have removed it between this call's `put` and its commit."""
        store = self.audio_store
        if store is not None and not store.path(stored.relative_path).is_file():
            store.put(audio, stored.relative_path.rsplit(".", 1)[1])

    def _exists(self, track_id: str) -> bool:
        with self._reading() as session:
            return session.get(Track, track_id) is not None

    @staticmethod
    def _check_songs(frame: pd.DataFrame) -> None:
        """Vectorised checks of an imported songs table; `InvalidTrack` on the first bad row."""
        missing = {"song_id", "title", "artist"} - set(frame.columns)
        if missing:
            raise InvalidTrack(f"songs table lacks columns {sorted(missing)}")
        ids = frame["song_id"].astype(str)
        checks = {
            "song_id is empty, too long or has control characters or surrounding spaces": (
                _bad_ids(ids)
            ),
            "song_id appears more than once": ids.duplicated(),
        }
        for column in ("title", "artist"):
            text = frame[column].astype(str)
            checks[f"{column} is too long or has control characters"] = (
                text.str.len() > MAX_TEXT_LENGTH
            ) | text.str.contains(_CONTROL.pattern, regex=True)
        for problem, bad in checks.items():
            if bad.any():
                row = int(np.flatnonzero(np.asarray(bad))[0])
                raise InvalidTrack(f"songs row {row} ({ids.iloc[row]!r}): {problem}")


def _rowcount(result: Result[Any]) -> int:
    """Rows a DELETE or UPDATE touched: `execute` gives a `CursorResult` for them, typed as
    a plain `Result`."""
    return cast("CursorResult[Any]", result).rowcount


def _bad_ids(ids: pd.Series | pd.Index) -> np.ndarray:
    """Which of `ids` (strings) break the id rule of `_id_problem`, vectorised: bool array."""
    ids = pd.Series(ids, dtype=object).astype(str)
    return (
        (ids.str.len() == 0)
        | (ids.str.len() > MAX_ID_LENGTH)
        | ids.str.contains(_CONTROL.pattern, regex=True)
        | (ids != ids.str.strip())
    ).to_numpy()


def _is_in(values: pd.Index, known: pa.Array) -> np.ndarray:
    """Which `values` (n,) are among `known`, by Arrow's hash lookup: pandas' own `isin` on
    Arrow-backed strings boxes every known value per call (4 s a block at 386k songs)."""
    try:
        strings = pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # ids that are not all text: by pandas
        return np.asarray(values.isin(known.to_pylist()))
    return pc.is_in(strings, value_set=known).to_numpy(zero_copy_only=False)


def _check_listens(listens: pd.DataFrame, known_songs: pa.Array, first_row: int) -> None:
    """Vectorised checks of one frame of imported listens; `InvalidTrack` naming the first
    bad row (its number offset by `first_row`, the rows of earlier frames). The id checks
    run over each column's distinct values, then reach the rows through their codes."""
    missing = {"user_id", "song_id", "play_count"} - set(listens.columns)
    if missing:
        raise InvalidTrack(f"listens table lacks columns {sorted(missing)}")
    users = listens["user_id"].astype("category")
    songs = listens["song_id"].astype("category")
    user_codes, song_codes = users.cat.codes.to_numpy(), songs.cat.codes.to_numpy()
    counts = listens["play_count"].to_numpy()
    if counts.dtype.kind not in "iuf":
        counts = pd.to_numeric(listens["play_count"], errors="coerce").to_numpy(dtype=float)
    whole = np.isfinite(counts) & (counts == np.floor(counts)) if counts.dtype.kind == "f" else 1
    problems = {
        "user_id is empty, too long or has control characters or surrounding spaces": (
            user_codes < 0
        )
        | _bad_ids(users.cat.categories)[user_codes],
        "song is not in the catalogue (import the songs first)": (song_codes < 0)
        | ~_is_in(songs.cat.categories, known_songs)[song_codes],
        f"play count must be an integer from 1 to {MAX_PLAY_COUNT}": ~(
            (whole & (counts >= 1) & (counts <= MAX_PLAY_COUNT)).astype(bool)
        ),
    }
    firsts = {problem: np.flatnonzero(bad) for problem, bad in problems.items() if bad.any()}
    if firsts:
        problem, rows = min(firsts.items(), key=lambda item: item[1][0])
        row = int(rows[0])
        raise InvalidTrack(
            f"listens row {first_row + row} (user {users.iloc[row]!r}, song "
            f"{songs.iloc[row]!r}, count {counts[row]!r}): {problem}"
        )
