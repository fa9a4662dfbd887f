"""The listens a version was built from, per user: the songs the service leaves out of a
user's recommendations, and the play counts it folds a user in from, held by the version
so that a recommendation needs no database read for them (only for the listens posted
since: `LoadedVersion.listens_through`).

    listens/
      indptr.npy           (n_listeners + 1,) int64, CSR rows: the version's user_ids.json
                           (the users with factors), then other_user_ids.json
      song_columns.npy     (n_pairs,) int32, CSR columns: the version's song_ids.json (the
                           songs with WMF factors: a column below their count is the row
                           of song_factors.npy), then other_song_ids.json
      play_counts.npy      (n_pairs,) int32, plays summed per (user, song)
      other_user_ids.json  listeners without factors (e.g. who heard only held-out songs)
      other_song_ids.json  listened songs without WMF factors

The arrays are memory-mapped when loaded: processes serving one version share their pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artifacts.manifest import ArtifactError
from factorization.matrices import play_count_matrix

LISTENS_DIR = "listens"
_OTHER_USERS = "other_user_ids.json"
_OTHER_SONGS = "other_song_ids.json"


def _others(column: pd.Series, known: list[str]) -> list[str]:
    """The ids present in the categorical `column` that `known` lacks, in category order."""
    categories = column.cat.categories
    present = np.bincount(column.cat.codes.to_numpy(), minlength=len(categories)) > 0
    return categories[present & ~categories.isin(known)].tolist()


def write_version_listens(
    folder: Path, listens: pd.DataFrame, user_ids: list[str], song_ids: list[str]
) -> dict[str, int]:
    """Write `folder/listens/` from a dataset's `listens` (user_id, song_id, play_count),
    rows following `user_ids` then the other listeners, columns `song_ids` then the other
    songs; returns its counts."""
    other_users = _others(listens["user_id"], user_ids)
    other_songs = _others(listens["song_id"], song_ids)
    matrix = play_count_matrix(listens, user_ids + other_users, song_ids + other_songs)
    out = Path(folder) / LISTENS_DIR
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "indptr.npy", matrix.indptr.astype(np.int64), allow_pickle=False)
    np.save(out / "song_columns.npy", matrix.indices.astype(np.int32), allow_pickle=False)
    counts = np.minimum(np.rint(matrix.data), np.iinfo(np.int32).max).astype(np.int32)
    np.save(out / "play_counts.npy", counts, allow_pickle=False)
    (out / _OTHER_USERS).write_text(json.dumps(other_users))
    (out / _OTHER_SONGS).write_text(json.dumps(other_songs))
    return {
        "listeners": len(user_ids) + len(other_users),
        "listeners_without_factors": len(other_users),
        "listened_songs_without_factors": len(other_songs),
        "user_song_pairs": int(matrix.nnz),
    }


@dataclass
class VersionListens:
    """A loaded `listens/`: per listener row, the songs played and how often.

    `song_ids` `(n_columns,)` object: the id of each column; columns below
    `n_factor_songs` are rows of the version's song factors. `other_user_ids` follow the
    version's users as rows."""

    other_user_ids: list[str]
    song_ids: np.ndarray
    n_factor_songs: int
    indptr: np.ndarray
    song_columns: np.ndarray
    play_counts: np.ndarray
    columns_of: pd.Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.columns_of = pd.Index(self.song_ids)

    def of_row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """`(columns (n,) int32, play counts (n,) int32)` of listener `row`."""
        start, stop = int(self.indptr[row]), int(self.indptr[row + 1])
        return self.song_columns[start:stop], self.play_counts[start:stop]

    def columns(self, song_ids: list[str]) -> np.ndarray:
        """The column of each id `(n,)` int64, -1 for a song the version has no column for
        (a track added since, or one nobody had played)."""
        return np.asarray(self.columns_of.get_indexer(song_ids), dtype=np.int64)


def load_version_listens(folder: Path, n_users: int, song_ids: list[str]) -> VersionListens | None:
    """`folder/listens/` (verified with the version's manifest by the caller), or None
    for a version published before versions kept their listens."""
    source = Path(folder) / LISTENS_DIR
    if not source.is_dir():
        return None
    other_users = json.loads((source / _OTHER_USERS).read_text())
    other_songs = json.loads((source / _OTHER_SONGS).read_text())
    indptr = np.load(source / "indptr.npy", mmap_mode="r", allow_pickle=False)
    columns = np.load(source / "song_columns.npy", mmap_mode="r", allow_pickle=False)
    counts = np.load(source / "play_counts.npy", mmap_mode="r", allow_pickle=False)
    n_columns = len(song_ids) + len(other_songs)
    if (
        indptr.shape != (n_users + len(other_users) + 1,)
        or columns.shape != counts.shape
        or indptr[-1] != columns.size
        or (columns.size and not 0 <= columns.min() <= columns.max() < n_columns)
    ):
        raise ArtifactError(f"{source}: the listens do not fit the version's users and songs")
    return VersionListens(
        other_user_ids=other_users,
        song_ids=np.array(song_ids + other_songs, dtype=object),
        n_factor_songs=len(song_ids),
        indptr=indptr,
        song_columns=columns,
        play_counts=counts,
    )
