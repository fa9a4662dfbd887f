"""Every problem of a dataset folder, each with its file and line (`coldstart validate`).

The loader (`corpus.dataset`) trusts a folder and stops at its first bad row; this pass reads
the same files with the same parser (pyarrow's CSV reader) but keeps going: rows of the wrong
width are set aside with their line numbers, ids stay dictionary-encoded, and every other
check runs vectorised, first over the few distinct values (is this count an integer? is this
song in songs.csv?) and then over the int32 codes of the rows. At Taste Profile scale (48M
listens) that is one read, a few passes over the codes and one sort for the duplicate pairs;
no Python line runs per listen. Only the first `max_per_kind` problems of a kind are kept as
`Problem`s (each with its line), the rest are counted.

Audio is probed: PyAV opens each file and decodes its first frame (is there an audio stream,
does it decode, how long is it, are its samples usable by the front end's one rule,
`audio.decode.sample_peak`: NaN or inf is an error, a peak above full scale a warning, as the
front end peak-normalises it), in a thread pool that runs beside the text checks. Given a
`ClipCheck` (`coldstart validate` passes the front end's: a full decode and
`audio.decode.check_usable`), each file is also decoded and judged as featurize will judge
it (too short for one window, silent), which costs a full decode per file.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from audio.decode import FULL_SCALE, frames_to_mono, sample_peak
from audio.errors import AudioError
from corpus.dataset import (
    AUDIO_DIR,
    AUDIO_EXTENSIONS,
    COUNT_OK,
    LISTEN_COLUMNS,
    LISTENS_FILE,
    SONG_COLUMNS,
    SONGS_FILE,
    classify_counts,
    count_message,
)

Severity = Literal["error", "warning"]

# kind -> (severity, what a problem of this kind is, in the plural: "... and 12 more <that>")
KINDS: dict[str, tuple[Severity, str]] = {
    "missing": ("error", "missing or empty files and folders"),
    "listens-fields": ("error", "listens.tsv lines that are not user<TAB>song<TAB>count"),
    "listens-id": ("error", "empty or non-UTF-8 ids in listens.tsv"),
    "listens-count": ("error", "play counts that are not integers >= 1"),
    "listens-duplicate": ("error", "repeated (user, song) pairs"),
    "listens-unknown-song": ("error", "listens of songs not in songs.csv"),
    "songs-header": ("error", "songs.csv header problems"),
    "songs-fields": ("error", "songs.csv rows that are not song_id,title,artist"),
    "songs-id": ("error", "empty or non-UTF-8 values in songs.csv"),
    "songs-duplicate": ("error", "repeated song ids in songs.csv"),
    "audio-duplicate": ("error", "extra audio files for one song"),
    "audio-undecodable": ("error", "audio files that do not open or decode"),
    "audio-invalid-samples": ("error", "audio files with NaN or infinite samples"),
    "whitespace": ("warning", "ids with leading or trailing whitespace"),
    # A back catalogue without previews is normal: such songs are placed by their listens.
    "audio-missing": ("warning", "songs without an audio file (placed by their listens alone)"),
    "audio-unknown-song": ("warning", "audio files of songs not in songs.csv (ignored)"),
    "audio-ignored": ("warning", "files in audio/ that are not <song_id>.<ext> (ignored)"),
    "audio-duration": ("warning", "audio files without a duration"),
    "audio-unusable": ("warning", "audio files the front end refuses (featurize skips them)"),
    "audio-over-full-scale": ("warning", "audio files peaking above full scale (normalised)"),
}

# Why the front end would refuse the clip at this path, or None: corpus lies upstream of
# audio, so the check (decode + `audio.decode.check_usable`) is handed in by the caller.
ClipCheck = Callable[[Path], str | None]

PROBES_PER_TASK = 64  # audio files per thread-pool task: few futures even for 400k songs
_QUOTE_LIMIT = 60


@dataclass(frozen=True)
class Problem:
    """One problem: where it is (file relative to the dataset root, 1-based line) and what."""

    file: str
    line: int | None
    message: str
    kind: str

    @property
    def severity(self) -> Severity:
        return KINDS[self.kind][0]

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


@dataclass
class Summary:
    """What the folder holds; audio fields are None when audio was not checked (or probed)."""

    users: int = 0
    songs: int = 0  # rows of songs.csv with a usable id
    listens: int = 0  # listens.tsv lines with three fields
    plays: int = 0  # sum of the valid play counts
    density: float = 0.0  # listens / (users * songs)
    songs_listened: int = 0  # songs of songs.csv with at least one listen
    unknown_songs: int = 0  # distinct song ids in listens.tsv missing from songs.csv
    median_listens_per_user: float = 0.0
    median_listeners_per_song: float = 0.0  # over the songs with a listen
    audio_files: int | None = None
    songs_with_audio: int | None = None
    audio_seconds: float | None = None  # from the probes, over songs.csv's songs
    shortest_clip_seconds: float | None = None
    longest_clip_seconds: float | None = None


@dataclass
class ValidationReport:
    """Problems (the first `max_per_kind` of each kind, in file and line order), every one
    counted in `counts`, and the summary."""

    root: Path
    problems: list[Problem]
    counts: dict[str, int]
    summary: Summary

    @property
    def errors(self) -> int:
        return sum(n for kind, n in self.counts.items() if KINDS[kind][0] == "error")

    @property
    def warnings(self) -> int:
        return sum(n for kind, n in self.counts.items() if KINDS[kind][0] == "warning")

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def omitted(self) -> dict[str, int]:
        """Per kind, how many problems were counted but not kept."""
        kept = Counter(problem.kind for problem in self.problems)
        return {kind: n - kept[kind] for kind, n in self.counts.items() if n > kept[kind]}


@dataclass(frozen=True)
class AudioProbe:
    """What the probe learnt of one file: its length and the peak of its first frame (None
    if unknown), or why it is not usable audio (`invalid_samples`: NaN or inf); and why the
    front end refuses it (`refused`, only when a `ClipCheck` ran)."""

    seconds: float | None
    error: str | None = None
    peak: float | None = None
    invalid_samples: bool = False
    refused: str | None = None


def probe_audio(path: Path, clip_check: ClipCheck | None = None) -> AudioProbe:
    """Open `path` with PyAV and decode its first audio frame (not the whole file); then,
    when it opened, run `clip_check` on it.

    The duration comes from the container's header, so a truncated file with an intact header
    passes; the front end's full decode is what catches that.
    """
    probe = _probe_header(path)
    if clip_check is None or probe.error is not None:
        return probe
    return dataclasses.replace(probe, refused=clip_check(path))


def _probe_header(path: Path) -> AudioProbe:
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                return AudioProbe(None, "no audio stream")
            stream = container.streams.audio[0]
            frame = next(container.decode(stream), None)
            if frame is None:
                return AudioProbe(None, "no decodable audio frame")
            try:
                peak = sample_peak(frames_to_mono([frame]), path.name)
            except AudioError as error:
                return AudioProbe(None, error.reason, invalid_samples=True)
            seconds = None
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / av.time_base
            return AudioProbe(seconds, peak=peak)
    except (av.FFmpegError, OSError) as error:
        return AudioProbe(None, f"cannot be read as audio: {error.strerror or error}")


def _probe_all(paths: list[Path], clip_check: ClipCheck | None) -> list[AudioProbe]:
    return [probe_audio(path, clip_check) for path in paths]


def _advance(progress: Progress, task: TaskID, n: int, _: Future[list[AudioProbe]]) -> None:
    progress.advance(task, n)


class _Collector:
    """Counts every problem; keeps the first `limit` of each kind (lowest lines first)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.kept: dict[str, list[Problem]] = defaultdict(list)
        self.counts: Counter[str] = Counter()

    def add(self, kind: str, file: str, line: int | None, message: str) -> None:
        self.add_many(kind, file, 1, [(line, message)])

    def add_many(
        self, kind: str, file: str, total: int, located: Iterable[tuple[int | None, str]]
    ) -> None:
        """Count `total` problems; `located` yields (line, message) of them in line order,
        and is read only as far as the limit."""
        if total == 0:
            return
        self.counts[kind] += total
        kept = self.kept[kind]
        kept.extend(
            Problem(file, None if line is None else int(line), message, kind)
            for line, message in islice(located, self.limit)
        )
        if self.limit is not None and len(kept) > 2 * self.limit:
            self._trim(kept)

    def _trim(self, kept: list[Problem]) -> None:
        kept.sort(key=_reading_order)
        if self.limit is not None:
            del kept[self.limit :]

    def problems(self) -> list[Problem]:
        kept = []
        for problems in self.kept.values():
            self._trim(problems)
            kept.extend(problems)
        return sorted(kept, key=_reading_order)


def _reading_order(problem: Problem) -> tuple[int, str, int]:
    """songs.csv, then listens.tsv, then the audio files by name; by line within a file."""
    files = (SONGS_FILE, LISTENS_FILE)
    rank = files.index(problem.file) if problem.file in files else len(files)
    return rank, problem.file, problem.line or 0


def _quote(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "...")


@dataclass
class _Rows:
    """A delimited file read by pyarrow, rows of the wrong width set aside by record number.

    Record numbers count from 1 at the top of the file (a header is record 1); they are line
    numbers unless a quoted field holds a line break, which `line_breaks` accounts for.
    """

    table: pa.Table
    bad_records: np.ndarray  # (n_bad,) int64, ascending
    bad_samples: list[tuple[int, int, str]]  # (record, fields found, text) of the first few
    first_record: int
    line_breaks: np.ndarray | None = None  # line breaks inside the records before each record

    def records(self, rows: np.ndarray) -> np.ndarray:
        """Record numbers of table rows: each row is pushed down by the bad rows above it."""
        rows = np.asarray(rows, dtype=np.int64) + self.first_record
        shifted = self.bad_records - np.arange(self.bad_records.size)
        return rows + np.searchsorted(shifted, rows, side="right")

    def lines(self, records: np.ndarray) -> np.ndarray:
        records = np.asarray(records, dtype=np.int64)
        return records if self.line_breaks is None else records + self.line_breaks[records]

    def row_lines(self, rows: np.ndarray) -> np.ndarray:
        return self.lines(self.records(rows))


class _SetAside:
    """pyarrow's handler of rows of the wrong width: numbers them all, keeps a few whole."""

    def __init__(self, keep: int | None) -> None:
        self.keep = keep
        self.records = array("q")  # 8 bytes a row, even if every line of 48M is bad
        self.line_breaks = array("q")
        self.samples: list[tuple[int, int, str]] = []  # (record, fields found, text)
        self.unnumbered = False

    def __call__(self, row: pacsv.InvalidRow) -> str:
        if row.number is None:  # the threaded reader does not know it
            self.unnumbered = True
            return "error"
        self.records.append(row.number)
        self.line_breaks.append(row.text.count("\n"))
        if self.keep is None or len(self.samples) < self.keep:
            self.samples.append((row.number, row.actual_columns, row.text))
        return "skip"


def _read_rows(
    path: Path,
    columns: tuple[str, ...],
    parse: pacsv.ParseOptions,
    header: bool,
    keep: int | None,
) -> _Rows:
    """Read every row as binary (UTF-8 is checked afterwards, per distinct value).

    The threaded reader does not number bad rows, so the first bad row sends the read back
    to the serial reader, which does: a clean file pays for the fast path only.
    """
    convert = pacsv.ConvertOptions(
        column_types={name: pa.dictionary(pa.int32(), pa.binary()) for name in columns}
    )
    parse.ignore_empty_lines = False  # an empty line keeps its number (and is reported)
    for threads in (True, False):
        set_aside = _SetAside(keep)
        parse.invalid_row_handler = set_aside
        read = pacsv.ReadOptions(
            column_names=list(columns), skip_rows=int(header), use_threads=threads
        )
        try:
            table = pacsv.read_csv(
                path, read_options=read, parse_options=parse, convert_options=convert
            )
            break
        except pa.ArrowInvalid:
            if not set_aside.unnumbered:
                raise
    rows = _Rows(
        table.unify_dictionaries(),
        np.array(set_aside.records, dtype=np.int64),
        set_aside.samples,
        first_record=1 + int(header),
    )
    if parse.quote_char:
        _count_line_breaks(rows, np.array(set_aside.line_breaks, dtype=np.int64))
    return rows


def _count_line_breaks(rows: _Rows, bad_breaks: np.ndarray) -> None:
    """Map record numbers to line numbers when quoted fields hold line breaks."""
    breaks = np.zeros(rows.table.num_rows, dtype=np.int64)
    for column in rows.table.columns:
        per_value = pc.count_substring(_values(column), "\n").to_numpy(zero_copy_only=False)
        if per_value.any():
            breaks += per_value[_codes(column)]
    if not breaks.any() and not bad_breaks.any():
        return
    last = rows.first_record + rows.table.num_rows + rows.bad_records.size
    per_record = np.zeros(last + 1, dtype=np.int64)
    per_record[rows.records(np.arange(rows.table.num_rows))] = breaks
    per_record[rows.bad_records] = bad_breaks
    rows.line_breaks = np.concatenate([[0], np.cumsum(per_record)[:-1]])


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """(n_rows,) int32 codes of a dictionary column whose chunks share one dictionary."""
    if column.num_chunks == 0:
        return np.empty(0, dtype=np.int32)
    return np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks])


def _values(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0).dictionary if column.num_chunks else pa.array([], pa.binary())


@dataclass
class _Values:
    """The distinct values of one column, as text, with per-value flags."""

    text: np.ndarray  # (n_values,) object: str
    not_utf8: np.ndarray  # (n_values,) bool
    empty: np.ndarray
    padded: np.ndarray  # leading or trailing whitespace

    @classmethod
    def of(cls, values: pa.Array) -> _Values:
        try:
            text = values.cast(pa.string())
            not_utf8 = np.zeros(len(values), dtype=bool)
        except pa.ArrowInvalid:  # rare: find the culprits one by one, over distinct values only
            raw = values.to_pylist()
            not_utf8 = np.array([not _is_utf8(value) for value in raw], dtype=bool)
            text = pa.array([value.decode("utf-8", "replace") for value in raw], pa.string())
        return cls(
            text=text.to_numpy(zero_copy_only=False),
            not_utf8=not_utf8,
            empty=pc.equal(pc.utf8_length(text), 0).to_numpy(False),
            padded=pc.match_substring_regex(text, r"^\s|\s$").to_numpy(False),
        )

    def code_of_empty(self) -> int | None:
        found = np.flatnonzero(self.empty)
        return int(found[0]) if found.size else None


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _flagged_rows(flags: np.ndarray, codes: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """Rows whose value is flagged (a lookup through the codes), minus excluded rows."""
    if not flags.any():
        return np.empty(0, dtype=np.int64)
    mask = flags[codes]
    if exclude is not None:
        mask &= ~exclude
    return np.flatnonzero(mask)


def _report_rows(
    collector: _Collector,
    kind: str,
    file: str,
    rows: np.ndarray,
    lines_of: Callable[[np.ndarray], np.ndarray],
    message: Callable[[int], str],
) -> None:
    """Report flagged rows: all counted, the first few located and described."""
    head = rows[: collector.limit] if collector.limit is not None else rows
    located = zip(lines_of(head).tolist(), map(message, head.tolist()), strict=True)
    collector.add_many(kind, file, int(rows.size), located)


def _duplicate_rows(
    user_codes: np.ndarray, song_codes: np.ndarray, n_songs: int, rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows that repeat an earlier (user, song) pair, and the row of each one's first listen.

    One in-place sort of the int64 pair keys answers "any repeats?"; only when there are some
    are the keys rebuilt and the few repeated pairs traced back to their rows.
    """

    def pair_keys() -> np.ndarray:
        users, songs = (
            (user_codes, song_codes) if rows is None else (user_codes[rows], song_codes[rows])
        )
        return users.astype(np.int64) * n_songs + songs

    keys = pair_keys()
    keys.sort()
    repeated = keys[1:][keys[1:] == keys[:-1]]
    del keys
    if repeated.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    keys = pair_keys()
    candidates = np.flatnonzero(pd.Series(keys).isin(np.unique(repeated)).to_numpy())
    _, first, inverse = np.unique(keys[candidates], return_index=True, return_inverse=True)
    first_rows = candidates[first][inverse]
    later = candidates != first_rows
    found, first_found = candidates[later], first_rows[later]
    if rows is not None:
        found, first_found = rows[found], rows[first_found]
    return found, first_found


def _empty_lines(values: dict[str, _Values], codes: dict[str, np.ndarray]) -> np.ndarray | None:
    """(n_rows,) bool: rows whose every field is empty (an empty line reads as such a row)."""
    empty_codes = [values[name].code_of_empty() for name in values]
    if any(code is None for code in empty_codes):
        return None
    mask = np.ones(len(next(iter(codes.values()))), dtype=bool)
    for name, code in zip(values, empty_codes, strict=True):
        mask &= codes[name] == code
    return mask if mask.any() else None


def _report_layout(
    collector: _Collector,
    kind: str,
    file: str,
    rows: _Rows,
    empty_line: np.ndarray | None,
    expected: str,
) -> None:
    """Rows of the wrong width and empty lines: the lines that are not records at all."""
    collector.add_many(
        kind,
        file,
        int(rows.bad_records.size),
        (
            (
                int(rows.lines(np.array([record]))[0]),
                f"expected {expected}, found {fields} field(s): {_quote(text)}",
            )
            for record, fields, text in rows.bad_samples
        ),
    )
    if empty_line is not None:
        _report_rows(
            collector,
            kind,
            file,
            np.flatnonzero(empty_line),
            rows.row_lines,
            lambda row: "empty line",
        )


@dataclass
class _Catalogue:
    """songs.csv's usable song ids (each once) and the line each first appears on."""

    ids: pd.Index
    lines: np.ndarray


def _check_songs(root: Path, collector: _Collector) -> _Catalogue | None:
    """songs.csv: header, row width, ids (empty, not UTF-8, repeated); its usable song ids."""
    path = root / SONGS_FILE
    if not path.is_file():
        collector.add("missing", SONGS_FILE, None, "missing: expected a song_id,title,artist CSV")
        return None
    with open(path, "rb") as handle:
        first_line = handle.readline()
    expected = ",".join(SONG_COLUMNS)
    try:
        header = next(csv.reader([first_line.decode("utf-8-sig")]), [])
    except UnicodeDecodeError:
        header = []
    if tuple(header) != SONG_COLUMNS:
        found = (
            _quote(first_line.decode("utf-8", "replace").rstrip("\r\n"))
            if first_line
            else "an empty file"
        )
        collector.add("songs-header", SONGS_FILE, 1, f"header must be {expected}, found {found}")
    if not first_line.strip():
        return _Catalogue(pd.Index([], dtype=object), np.empty(0, dtype=np.int64))
    try:
        rows = _read_rows(
            path, SONG_COLUMNS, pacsv.ParseOptions(), header=True, keep=collector.limit
        )
    except pa.ArrowInvalid as error:
        collector.add("songs-fields", SONGS_FILE, None, f"unreadable as CSV ({error})")
        return None
    values = {name: _Values.of(_values(rows.table.column(name))) for name in SONG_COLUMNS}
    codes = {name: _codes(rows.table.column(name)) for name in SONG_COLUMNS}
    empty_line = _empty_lines(values, codes)
    _report_layout(collector, "songs-fields", SONGS_FILE, rows, empty_line, "song_id,title,artist")
    for name in SONG_COLUMNS:
        text, name_codes = values[name].text, codes[name]
        _report_rows(
            collector,
            "songs-id",
            SONGS_FILE,
            _flagged_rows(values[name].not_utf8, name_codes, None),
            rows.row_lines,
            lambda row, text=text, name_codes=name_codes, name=name: (
                f"{name} is not UTF-8: {_quote(text[name_codes[row]])}"
            ),
        )
    ids, id_codes = values["song_id"], codes["song_id"]
    _report_rows(
        collector,
        "songs-id",
        SONGS_FILE,
        _flagged_rows(ids.empty, id_codes, empty_line),
        rows.row_lines,
        lambda row: "empty song_id",
    )
    _report_rows(
        collector,
        "whitespace",
        SONGS_FILE,
        _flagged_rows(ids.padded, id_codes, None),
        rows.row_lines,
        lambda row: f"song_id {_quote(ids.text[id_codes[row]])} has surrounding whitespace",
    )
    # each distinct id is one code: the lowest row holding a code is that id's first line
    first_row = np.unique(id_codes, return_index=True)[1]
    repeats = np.flatnonzero(first_row[id_codes] != np.arange(id_codes.size))
    repeats = repeats[~ids.empty[id_codes[repeats]]]
    first_line_of = rows.row_lines(first_row)
    _report_rows(
        collector,
        "songs-duplicate",
        SONGS_FILE,
        repeats,
        rows.row_lines,
        lambda row: (
            f"song_id {_quote(ids.text[id_codes[row]])} already on line "
            f"{first_line_of[id_codes[row]]}"
        ),
    )
    usable = np.flatnonzero(~ids.empty & ~ids.not_utf8)
    if usable.size == 0:
        collector.add("missing", SONGS_FILE, None, "no songs")
    return _Catalogue(pd.Index(ids.text[usable], dtype=object), first_line_of[usable])


def _check_listens(
    root: Path, collector: _Collector, catalogue: _Catalogue | None, summary: Summary
) -> None:
    """listens.tsv: layout, ids, counts, repeated pairs, unknown songs; fills the summary."""
    path = root / LISTENS_FILE
    if not path.is_file() or path.stat().st_size == 0:
        what = "missing" if not path.is_file() else "empty"
        collector.add(
            "missing", LISTENS_FILE, None, f"{what}: expected user<TAB>song<TAB>count lines"
        )
        return
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False)
    rows = _read_rows(path, LISTEN_COLUMNS, parse, header=False, keep=collector.limit)
    values = {name: _Values.of(_values(rows.table.column(name))) for name in LISTEN_COLUMNS}
    codes = {}
    for name in LISTEN_COLUMNS:  # the table's columns are dropped as their codes are copied out
        codes[name] = _codes(rows.table.column(name))
        rows.table = rows.table.drop_columns([name])
    users, songs, counts = (values[name] for name in LISTEN_COLUMNS)
    user_codes, song_codes, count_codes = (codes[name] for name in LISTEN_COLUMNS)
    empty_line = _empty_lines(values, codes)
    _report_layout(
        collector, "listens-fields", LISTENS_FILE, rows, empty_line, "user<TAB>song<TAB>count"
    )

    for name, column, column_codes in (
        ("user", users, user_codes),
        ("song", songs, song_codes),
    ):
        text = column.text
        _report_rows(
            collector,
            "listens-id",
            LISTENS_FILE,
            _flagged_rows(column.not_utf8, column_codes, None),
            rows.row_lines,
            lambda row, text=text, c=column_codes, name=name: (
                f"{name} id is not UTF-8: {_quote(text[c[row]])}"
            ),
        )
        _report_rows(
            collector,
            "listens-id",
            LISTENS_FILE,
            _flagged_rows(column.empty, column_codes, empty_line),
            rows.row_lines,
            lambda row, name=name: f"empty {name} id",
        )
        _report_rows(
            collector,
            "whitespace",
            LISTENS_FILE,
            _flagged_rows(column.padded, column_codes, None),
            rows.row_lines,
            lambda row, text=text, c=column_codes, name=name: (
                f"{name} id {_quote(text[c[row]])} has surrounding whitespace"
            ),
        )
    status, numbers = classify_counts(pa.array(counts.text, pa.string()))
    _report_rows(
        collector,
        "listens-count",
        LISTENS_FILE,
        _flagged_rows(status != COUNT_OK, count_codes, empty_line),
        rows.row_lines,
        lambda row: count_message(int(status[count_codes[row]]), counts.text[count_codes[row]]),
    )

    with_ids = None
    if users.empty.any() or songs.empty.any():
        with_ids = np.flatnonzero(~(users.empty[user_codes] | songs.empty[song_codes]))
    repeats, firsts = _duplicate_rows(user_codes, song_codes, songs.text.size, with_ids)
    first_lines = dict(
        zip(
            repeats[: collector.limit].tolist(),
            rows.row_lines(firsts[: collector.limit]).tolist(),
            strict=True,
        )
    )
    _report_rows(
        collector,
        "listens-duplicate",
        LISTENS_FILE,
        repeats,
        rows.row_lines,
        lambda row: (
            f"user {_quote(users.text[user_codes[row]])} and song "
            f"{_quote(songs.text[song_codes[row]])} already on line {first_lines[row]}"
        ),
    )

    known = np.ones(songs.text.size, dtype=bool)
    if catalogue is not None:
        known = pd.Index(songs.text, dtype=object).isin(catalogue.ids)
        unknown = ~known & ~songs.empty & ~songs.not_utf8
        _report_rows(
            collector,
            "listens-unknown-song",
            LISTENS_FILE,
            _flagged_rows(unknown, song_codes, None),
            rows.row_lines,
            lambda row: f"song {_quote(songs.text[song_codes[row]])} is not in {SONGS_FILE}",
        )
        summary.unknown_songs = int(unknown.sum())
    if user_codes.size == 0 and rows.bad_records.size == 0:
        collector.add("missing", LISTENS_FILE, None, "no listens")

    listens_per_user = np.bincount(user_codes, minlength=users.text.size)[~users.empty]
    listeners_per_song = np.bincount(song_codes, minlength=songs.text.size)[~songs.empty]
    summary.listens = int(user_codes.size - (0 if empty_line is None else empty_line.sum()))
    summary.users = int(listens_per_user.size)
    summary.plays = int(np.bincount(count_codes, minlength=numbers.size) @ numbers)
    summary.songs_listened = int((known & ~songs.empty).sum()) if catalogue is not None else 0
    summary.median_listens_per_user = (
        float(np.median(listens_per_user)) if listens_per_user.size else 0.0
    )
    summary.median_listeners_per_song = (
        float(np.median(listeners_per_song)) if listeners_per_song.size else 0.0
    )


class _AudioCheck:
    """The audio folder: listed at once, its files probed in the background, judged at the end."""

    def __init__(
        self,
        root: Path,
        collector: _Collector,
        executor: ThreadPoolExecutor,
        progress: Progress,
        clip_check: ClipCheck | None,
    ) -> None:
        self.collector = collector
        self.files: dict[str, list[str]] = defaultdict(list)  # song id -> names, sorted
        self.probes: list[tuple[list[str], Future[list[AudioProbe]]]] = []
        folder = root / AUDIO_DIR
        self.found = folder.is_dir()
        if not self.found:  # reported once, not once per song
            collector.add("missing", AUDIO_DIR, None, "missing: expected audio/<song_id>.<ext>")
            return
        with os.scandir(folder) as entries:
            listing = sorted((entry.name, entry.is_file()) for entry in entries)
        extensions = ", ".join(AUDIO_EXTENSIONS)
        for name, is_file in listing:  # the order find_audio reads: its first file of a song wins
            suffix = Path(name).suffix
            if is_file and suffix[1:].lower() in AUDIO_EXTENSIONS:
                self.files[Path(name).stem].append(name)
            else:
                collector.add(
                    "audio-ignored",
                    f"{AUDIO_DIR}/{name}",
                    None,
                    f"not <song_id>.<ext> with ext in {extensions}: the loader ignores it",
                )
        used = sorted(self.files)
        task = progress.add_task("probe audio", total=len(used))
        for start in range(0, len(used), PROBES_PER_TASK):
            song_ids = used[start : start + PROBES_PER_TASK]
            paths = [folder / self.files[song_id][0] for song_id in song_ids]
            future = executor.submit(_probe_all, paths, clip_check)
            future.add_done_callback(partial(_advance, progress, task, len(paths)))
            self.probes.append((song_ids, future))

    def finish(self, catalogue: _Catalogue | None, summary: Summary) -> None:
        """Judge the files against songs.csv and collect the probes into the summary."""
        if not self.found:
            return
        collector, in_catalogue = self.collector, None
        for song_id, names in self.files.items():
            for name in names[1:]:
                collector.add(
                    "audio-duplicate",
                    f"{AUDIO_DIR}/{name}",
                    None,
                    f"song {_quote(song_id)} already has {AUDIO_DIR}/{names[0]} (the one used)",
                )
        if catalogue is not None:
            song_ids = pd.Index(list(self.files), dtype=object)
            in_catalogue = set(song_ids[song_ids.isin(catalogue.ids)])
            for song_id in song_ids[~song_ids.isin(catalogue.ids)]:
                collector.add(
                    "audio-unknown-song",
                    f"{AUDIO_DIR}/{self.files[song_id][0]}",
                    None,
                    f"song {_quote(song_id)} is not in {SONGS_FILE}",
                )
            without = np.flatnonzero(~catalogue.ids.isin(song_ids))
            collector.add_many(
                "audio-missing",
                SONGS_FILE,
                int(without.size),
                (
                    (catalogue.lines[i], f"song {_quote(catalogue.ids[i])} has no audio file")
                    for i in without[: collector.limit]
                ),
            )
        seconds = []
        for song_ids, future in self.probes:
            for song_id, probe in zip(song_ids, future.result(), strict=True):
                if in_catalogue is not None and song_id not in in_catalogue:
                    continue  # the loader ignores it, and it was reported as such
                file = f"{AUDIO_DIR}/{self.files[song_id][0]}"
                if probe.invalid_samples:
                    collector.add("audio-invalid-samples", file, None, probe.error or "")
                    continue
                if probe.error is not None:
                    collector.add("audio-undecodable", file, None, probe.error)
                    continue
                if probe.refused is not None:
                    collector.add(
                        "audio-unusable", file, None, f"featurize skips it: {probe.refused}"
                    )
                if probe.peak is not None and probe.peak > FULL_SCALE:
                    collector.add(
                        "audio-over-full-scale",
                        file,
                        None,
                        f"peaks at {20 * np.log10(probe.peak):+.1f} dBFS: the front end"
                        " scales it down to full scale",
                    )
                if probe.seconds is None:
                    collector.add("audio-duration", file, None, "no duration in the header")
                else:
                    seconds.append(probe.seconds)
        summary.audio_files = sum(len(names) for names in self.files.values())
        summary.songs_with_audio = len(self.files if in_catalogue is None else in_catalogue)
        summary.audio_seconds = float(np.sum(seconds))
        if seconds:
            summary.shortest_clip_seconds = float(np.min(seconds))
            summary.longest_clip_seconds = float(np.max(seconds))


def validate_dataset(
    root: Path,
    check_audio: bool = True,
    workers: int | None = None,
    progress: bool = False,
    max_per_kind: int | None = 20,
    clip_check: ClipCheck | None = None,
) -> ValidationReport:
    """Check a dataset folder against the contract of `corpus.dataset`, reporting every problem.

    `check_audio=False` leaves the audio folder alone (no listing, no probes); `workers` is
    the size of the probe thread pool (default: twice the cores, as a probe mostly waits on
    the disk and FFmpeg, outside the GIL); `progress` draws bars on stderr; `max_per_kind`
    caps the problems kept per kind (None keeps all; all are counted either way);
    `clip_check` judges every file as the front end will (see `ClipCheck`).
    """
    root = Path(root)
    collector = _Collector(max_per_kind)
    summary = Summary()
    if not root.is_dir():
        collector.add("missing", str(root), None, "not a folder")
        return ValidationReport(root, collector.problems(), dict(collector.counts), summary)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    )
    executor = ThreadPoolExecutor(workers or 2 * (os.cpu_count() or 1))
    try:
        with bars:
            audio = (
                _AudioCheck(root, collector, executor, bars, clip_check) if check_audio else None
            )
            text = bars.add_task(f"check {SONGS_FILE}, {LISTENS_FILE}", total=2)
            catalogue = _check_songs(root, collector)
            bars.advance(text)
            _check_listens(root, collector, catalogue, summary)
            bars.advance(text)
            if catalogue is not None:
                summary.songs = len(catalogue.ids)
            if summary.users and summary.songs:
                summary.density = summary.listens / (summary.users * summary.songs)
            if audio is not None:
                audio.finish(catalogue, summary)
    finally:
        executor.shutdown(cancel_futures=True)
    return ValidationReport(root, collector.problems(), dict(collector.counts), summary)
