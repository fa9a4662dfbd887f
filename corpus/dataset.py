"""The dataset contract (the Million Song Dataset Taste Profile layout), and its loader.

A dataset is a folder holding
- `listens.tsv`: no header, `user_id<TAB>song_id<TAB>play_count`, non-empty ids, decimal
  integer counts >= 1 that fit in int32, each (user, song) pair once, no empty lines;
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


class DatasetError(ValueError):
    """A dataset folder does not follow the contract."""


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


def _listens_csv_options() -> dict:
    """The parser of `listens.tsv`, one for the whole-file and the streaming read."""
    return {
        # an empty line is kept as a row of empty fields, and refused below
        "parse_options": pacsv.ParseOptions(
            delimiter="\t", quote_char=False, ignore_empty_lines=False
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types={
                "user_id": _id_type(),
                "song_id": _id_type(),
                "play_count": pa.int32(),  # a count beyond int32 fails the read
            }
        ),
    }


def _check_listens_frame(listens: pd.DataFrame, where: str) -> None:
    """The loader's checks on one frame of listens (categorical ids, int32 counts)."""
    if listens["play_count"].isna().any():
        raise DatasetError(f"{where}: empty play counts (or empty lines)")
    for column in ("user_id", "song_id"):
        if (listens[column].cat.categories == "").any():
            raise DatasetError(f"{where}: empty {column}")
    if len(listens) and listens["play_count"].min() < 1:
        raise DatasetError(f"{where}: play counts must be integers >= 1")


def read_listens(path: Path) -> pd.DataFrame:
    """Read `listens.tsv` into columns user_id, song_id (categorical) and play_count (int32).

    Raises `DatasetError` on malformed rows, empty lines or ids, and counts below 1.
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
    # Every category is used: a CSV dictionary holds only the values its rows hold. The
    # table's buffers are released as the frame is built (peak memory, not a second copy).
    listens = table.to_pandas(self_destruct=True)
    del table
    _check_listens_frame(listens, str(path))
    return listens


def iter_listens(path: Path, block_bytes: int = 64 << 20) -> Iterator[pd.DataFrame]:
    """`listens.tsv` as consecutive frames of about `block_bytes` of text each, with the
    columns and checks of `read_listens` (each frame's categories are its own): what a
    bulk import streams, holding one block at a time however long the file is.

    Raises `DatasetError` (naming the file) when the block it is reading is bad, so a
    consumer inside a transaction rolls back everything read before it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    rows = 0
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=list(LISTEN_COLUMNS), block_size=block_bytes, use_threads=True
            ),
            **_listens_csv_options(),
        )
        for batch in reader:
            frame = batch.to_pandas()
            _check_listens_frame(frame, f"{path} (lines {rows + 1}-{rows + len(frame)})")
            rows += len(frame)
            yield frame
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise DatasetError(
            f"{path}: {error} (run `coldstart validate` for every problem)"
        ) from error
    if rows == 0:
        raise DatasetError(f"{path}: no listens")


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
