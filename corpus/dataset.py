"""The dataset contract (the Million Song Dataset Taste Profile layout), and its loader.

A dataset is a folder holding
- `listens.tsv`: no header, `user_id<TAB>song_id<TAB>play_count`, non-empty ids, decimal
  integer counts >= 1 that fit in int32 (`classify_counts`: the one rule of the loader and
  of validation), each (user, song) pair once, no empty lines;
- `songs.csv`: header `song_id,title,artist`, non-empty unique song ids;
- `audio/<song_id>.<ext>`, ext in `AUDIO_EXTENSIONS`, any sample rate and channel count,
  one file per song.

Loading is built for Taste Profile scale (48M listens): pyarrow's multithreaded CSV
reader with dictionary-encoded ids, handed to pandas as categoricals, so that ids are
stored once and every listen costs 4 + 4 + 4 bytes. This loader trusts a validated folder
and fails loudly on the first bad row it meets (it does not look for repeated pairs, which
costs a sort); `corpus.validate` reads the same files with the same parser and reports
every problem with its line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

LISTENS_FILE = "listens.tsv"
SONGS_FILE = "songs.csv"
AUDIO_DIR = "audio"
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "opus", "mp3", "m4a")
LISTEN_COLUMNS = ("user_id", "song_id", "play_count")
SONG_COLUMNS = ("song_id", "title", "artist")


INT32_MAX = int(np.iinfo(np.int32).max)

# play-count classes, per distinct count text (`classify_counts`)
COUNT_OK, COUNT_EMPTY, COUNT_NOT_INTEGER, COUNT_BELOW_ONE, COUNT_TOO_LARGE = range(5)


class DatasetError(ValueError):
    """A dataset folder does not follow the contract."""


def classify_counts(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The contract's play-count rule, for both the loader and `corpus.validate`: decimal
    digits only, 1 <= count <= int32 max (pyarrow's int parser would also take ' 4', '+4'
    and '0x4'). Given the (n,) distinct count strings, returns (n,) uint8 statuses
    (`COUNT_*`) and (n,) int64 values (0 where the status is not `COUNT_OK`)."""
    n = len(text)
    digits = pc.match_substring_regex(text, r"^[0-9]{1,18}$").to_numpy(False)
    numbers = np.zeros(n, dtype=np.int64)
    numbers[digits] = pc.cast(text.filter(pa.array(digits)), pa.int64()).to_numpy()
    status = np.full(n, COUNT_NOT_INTEGER, dtype=np.uint8)
    status[pc.equal(pc.utf8_length(text), 0).to_numpy(False)] = COUNT_EMPTY
    status[pc.match_substring_regex(text, r"^-[0-9]+$").to_numpy(False)] = COUNT_BELOW_ONE
    status[pc.match_substring_regex(text, r"^[0-9]{19,}$").to_numpy(False)] = COUNT_TOO_LARGE
    status[digits] = np.select(
        [numbers[digits] < 1, numbers[digits] > INT32_MAX],
        [COUNT_BELOW_ONE, COUNT_TOO_LARGE],
        COUNT_OK,
    )
    return status, np.where(status == COUNT_OK, numbers, 0)


def count_message(status: int, text: str) -> str:
    """Why a play count of `classify_counts` status `status` breaks the contract."""
    quoted = repr(text if len(text) <= 60 else text[:60] + "...")
    if status == COUNT_EMPTY:
        return "empty play count"
    if status == COUNT_BELOW_ONE:
        return f"play count {quoted} is below 1"
    if status == COUNT_TOO_LARGE:
        return f"play count {quoted} does not fit in int32"
    hint = " (listens.tsv has no header line)" if text == LISTEN_COLUMNS[2] else ""
    return f"play count {quoted} is not an integer{hint}"


@dataclass
class Dataset:
    """A loaded dataset: listens with categorical ids, song metadata, audio paths."""

    root: Path
    listens: pd.DataFrame
    songs: pd.DataFrame
    audio_paths: dict[str, Path]

    @property
    def n_users(self) -> int:
        return int(self.listens["user_id"].cat.categories.size)

    @property
    def song_ids(self) -> list[str]:
        return self.songs["song_id"].tolist()


def _id_type() -> pa.DataType:
    return pa.dictionary(pa.int32(), pa.string())


def _listens_csv_options() -> dict[str, Any]:
    """The parser of `listens.tsv`, one for the whole-file and the streaming read: every
    column as dictionary-encoded text, so the count rule runs once per distinct count."""
    return {
        # an empty line is kept as a row of empty fields, and refused below
        "parse_options": pacsv.ParseOptions(
            delimiter="\t", quote_char=False, ignore_empty_lines=False
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types=dict.fromkeys(LISTEN_COLUMNS, _id_type())
        ),
    }


def _listens_frame(table: pa.Table, where: str) -> pd.DataFrame:
    """A parsed table of listens -> the frame `read_listens` gives (categorical ids, int32
    counts), or `DatasetError` naming `where` for a count that breaks `classify_counts` or
    an empty id. The table's buffers are released as the frame is built (peak memory, not a
    second copy): the caller must not use `table` afterwards."""
    counts = table.column("play_count").unify_dictionaries()
    table = table.set_column(2, "play_count", _count_values(where, counts))
    # Every category is used: a CSV dictionary holds only the values its rows hold.
    listens = table.to_pandas(self_destruct=True)
    for column in ("user_id", "song_id"):
        if (listens[column].cat.categories == "").any():
            raise DatasetError(f"{where}: empty {column}")
    return listens


def read_listens(path: Path) -> pd.DataFrame:
    """Read `listens.tsv` into columns user_id, song_id (categorical) and play_count (int32).

    Raises `DatasetError` on malformed rows, empty lines or ids, and counts that break
    `classify_counts`. Counts are read as dictionary-encoded text, so the rule runs once per
    distinct count (a few thousand at Taste Profile scale), not once per listen.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=list(LISTEN_COLUMNS)),
            **_listens_csv_options(),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise DatasetError(
            f"{path}: {error} (run `coldstart validate` for every problem)"
        ) from error
    if table.num_rows == 0:
        raise DatasetError(f"{path}: no listens")
    return _listens_frame(table, str(path))


def iter_listens(path: Path, block_bytes: int = 64 << 20) -> Iterator[pd.DataFrame]:
    """`listens.tsv` as consecutive frames of about `block_bytes` of text each, with the
    columns and checks of `read_listens` (each frame's categories are its own): what a
    bulk import streams, holding one block at a time however long the file is.

    Raises `DatasetError` (naming the file and the block's lines) when the block it is
    reading is bad, so a consumer inside a transaction rolls back everything read before
    it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    read_options = pacsv.ReadOptions(column_names=list(LISTEN_COLUMNS), use_threads=True)
    parsing = _listens_csv_options()
    rows = 0
    for block in _line_blocks(path, block_bytes):
        try:
            table = pacsv.read_csv(pa.py_buffer(block), read_options=read_options, **parsing)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise DatasetError(
                f"{path} (after line {rows}): {error} (run `coldstart validate` for every problem)"
            ) from error
        where = f"{path} (lines {rows + 1}-{rows + table.num_rows})"
        rows += table.num_rows
        yield _listens_frame(table, where)
    if rows == 0:
        raise DatasetError(f"{path}: no listens")


def _line_blocks(path: Path, block_bytes: int) -> Iterator[memoryview]:
    """The file's bytes in blocks of about `block_bytes`, each ending at a line's end (the
    last block as the file ends), as views: a block is copied once, when it is read. By
    hand because pyarrow's streaming `open_csv` reads the whole file ahead of its consumer:
    measured here, 526 MiB held on opening an 860 MB file, so a 48M-listen import peaked at
    2.8 GB."""
    with path.open("rb") as file:
        carry, offset = b"", 0
        while chunk := file.read(block_bytes):
            block = carry + chunk
            end = block.rfind(b"\n") + 1
            if end == 0 and len(block) > block_bytes:
                raise DatasetError(
                    f"{path}: no line end in {len(block):,} bytes from byte {offset:,}"
                )
            carry, offset = block[end:], offset + end
            if end:
                yield memoryview(block)[:end]
        if carry:
            yield memoryview(carry)


def tsv_block(*columns: pa.Array | pa.Scalar) -> pa.Buffer:
    """Tab-separated lines of string `columns` (scalars repeat), each ending in a newline,
    as one buffer, by Arrow kernels without a Python string per row. The values must hold
    no tab or newline."""
    *head, last = columns
    lines = pc.binary_join_element_wise(*head, pc.binary_join_element_wise(last, "", "\n"), "\t")
    if len(lines) == 0:
        return pa.py_buffer(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    first, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return lines.buffers()[2][first:end]


def listens_tsv_block(listens: pd.DataFrame) -> pa.Buffer:
    """`user<TAB>song<TAB>count` lines of a frame of listens (columns as `read_listens`
    gives them), unquoted as the loader reads them. Ids must hold no tab or newline (the
    catalogue's never do)."""
    return tsv_block(
        pa.array(listens["user_id"]).cast(pa.string()),
        pa.array(listens["song_id"]).cast(pa.string()),
        pa.array(listens["play_count"].to_numpy()).cast(pa.string()),
    )


def _count_values(where: str, counts: pa.ChunkedArray) -> pa.ChunkedArray:
    """The int32 play counts of a dictionary-encoded count column (chunks sharing one
    dictionary), or `DatasetError` naming the first distinct count that breaks the rule."""
    text = counts.chunk(0).dictionary if counts.num_chunks else pa.array([], pa.string())
    status, numbers = classify_counts(text)
    bad = np.flatnonzero(status != COUNT_OK)
    if (status == COUNT_EMPTY).any():
        raise DatasetError(f"{where}: empty play counts (or empty lines)")
    if bad.size:
        first = int(bad[0])
        raise DatasetError(f"{where}: {count_message(int(status[first]), text[first].as_py())}")
    values = pa.array(numbers.astype(np.int32))
    return pa.chunked_array(
        [values.take(chunk.indices) for chunk in counts.chunks], type=pa.int32()
    )


def read_songs(path: Path) -> pd.DataFrame:
    """Read `songs.csv` (header song_id,title,artist) as strings, ids unique."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(SONG_COLUMNS, pa.string())
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise DatasetError(f"{path}: unreadable CSV ({error})") from error
    if tuple(table.column_names) != SONG_COLUMNS:
        raise DatasetError(f"{path}: header must be {','.join(SONG_COLUMNS)}")
    songs = table.to_pandas()
    if (songs["song_id"] == "").any():
        raise DatasetError(f"{path}: empty song_id (or an empty line)")
    if songs["song_id"].duplicated().any():
        first = songs.loc[songs["song_id"].duplicated(), "song_id"].iloc[0]
        raise DatasetError(f"{path}: song_id {first!r} appears more than once")
    return songs


def find_audio(root: Path) -> dict[str, Path]:
    """Map song id to its audio file under `root/audio` (files with other extensions ignored)."""
    audio_dir = Path(root) / AUDIO_DIR
    if not audio_dir.is_dir():
        return {}
    paths: dict[str, Path] = {}
    for file in sorted(audio_dir.iterdir()):
        if file.is_file() and file.suffix[1:].lower() in AUDIO_EXTENSIONS:
            paths.setdefault(file.stem, file)
    return paths


def load_dataset(root: Path) -> Dataset:
    """Load a dataset folder; every listened song must be in songs.csv."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    listens = read_listens(root / LISTENS_FILE)
    songs = read_songs(root / SONGS_FILE)
    unknown = set(listens["song_id"].cat.categories) - set(songs["song_id"])
    if unknown:
        example = sorted(unknown)[0]
        raise DatasetError(
            f"{root / LISTENS_FILE}: {len(unknown)} song ids not in {SONGS_FILE} (e.g. {example!r})"
        )
    return Dataset(root=root, listens=listens, songs=songs, audio_paths=find_audio(root))


def dataset_fingerprint(root: Path) -> str:
    """sha256 over listens.tsv, songs.csv and the audio files' names and sizes.

    Cheap enough for Taste Profile scale (one pass over the two text files), and it
    changes whenever the listens, the catalogue or the set of recordings changes.
    """
    root = Path(root)
    digest = hashlib.sha256()
    for name in (LISTENS_FILE, SONGS_FILE):
        with open(root / name, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    for song_id, path in sorted(find_audio(root).items()):
        digest.update(f"{song_id}\0{path.name}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()
