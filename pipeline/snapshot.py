"""What a nightly run trains on, frozen at its start: a dataset folder (`corpus.dataset`).

From a dataset folder the run reads that folder. From the catalogue DB it first writes one,
`WORK/dataset/` (WORK is `REG/pipeline/` by default), so that every later step reads the
same contract as on a dataset:

    songs.csv      every track the catalogue holds (warm and cold), id, title, artist
    listens.tsv    plays summed per (user, track), written as they stream out of the database
                   (`Catalogue.iter_listens`): one chunk in memory, never the whole table;
                   the listens up to a watermark (`Catalogue.last_listen_id`, read first),
                   which the version records: the service counts those above it as posted
                   since
    audio/<id>.<ext>  a symbolic link to the track's recording: its stored audio (tracks
                   added by audio, and songs imported with their recordings), else the
                   recording in the dataset folder the current version came from
                   (a track whose stored file is gone gets none: `missing_audio`)

The folder is rewritten in place each night (each file replaced atomically, links only
added, changed or removed where the catalogue changed), so the mel cache inside it
(`WORK/dataset/mel_cache/`) stays valid for every unchanged recording and featurizing is
incremental. Listens and tracks written after the snapshot wait for the next night; the
service puts tracks added meanwhile into the new version itself when it swaps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from artifacts.files import write_atomic
from catalogue.repository import Catalogue
from corpus.dataset import (
    AUDIO_DIR,
    AUDIO_EXTENSIONS,
    LISTENS_FILE,
    SONGS_FILE,
    find_audio,
    listens_tsv_block,
)

log = logging.getLogger("coldstart.pipeline")

SNAPSHOT_DIR = "dataset"


@dataclass(frozen=True)
class Snapshot:
    """The dataset folder a run reads, where it came from, and what it held."""

    root: Path
    source: str  # "dataset" | "database"
    taken_at: datetime
    counts: dict[str, int]
    # Tracks whose recorded audio file is gone from the store: they get no recording.
    missing_audio: tuple[str, ...] = ()
    # The highest catalogue listen id listens.tsv holds (None: a dataset folder's own).
    listens_through: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "source": self.source,
            "taken_at": self.taken_at.isoformat(),
            "counts": self.counts,
            "listens_through": self.listens_through,
        }


def use_dataset(root: Path) -> Snapshot:
    """A dataset folder as it is (its files are the platform's own export)."""
    root = Path(root).resolve()
    return Snapshot(root, "dataset", datetime.now(UTC), {"audio_files": len(find_audio(root))})


def snapshot_catalogue(
    catalogue: Catalogue, folder: Path, fallback_audio: Mapping[str, Path] | None = None
) -> Snapshot:
    """Write the catalogue's tracks, listens and recordings as a dataset folder at `folder`.

    `fallback_audio` (track id -> file) gives recordings of tracks that have no stored
    audio (songs imported without it; typically the current version's dataset folder).
    Tracks whose id cannot be a file name get no recording (logged)."""
    taken_at = datetime.now(UTC)
    folder = Path(folder)
    (folder / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    tracks = catalogue.list_tracks()
    songs = pd.DataFrame(
        {
            "song_id": [track.id for track in tracks],
            "title": [track.title for track in tracks],
            "artist": [track.artist for track in tracks],
        }
    )
    write_atomic(folder / SONGS_FILE, lambda handle: songs.to_csv(handle, index=False))
    listened = _ListensWritten(catalogue.last_listen_id())
    write_atomic(folder / LISTENS_FILE, lambda handle: listened.write(handle, catalogue))

    store = catalogue.audio_store
    fallback = {song_id: Path(path).resolve() for song_id, path in (fallback_audio or {}).items()}
    wanted: dict[str, Path] = {}
    unnamed = 0
    missing: list[str] = []
    for track in tracks:
        if track.audio_path is not None and store is not None:
            target = store.path(track.audio_path).resolve()
            if not target.is_file():  # removed behind the catalogue's back
                missing.append(track.id)
                continue
        elif track.id in fallback:
            target = fallback[track.id]
        else:
            continue
        extension = target.suffix[1:].lower()
        if not _usable_name(track.id) or extension not in AUDIO_EXTENSIONS:
            unnamed += 1
            continue
        wanted[f"{track.id}.{extension}"] = target
    changed = _sync_links(folder / AUDIO_DIR, wanted)
    if unnamed:
        log.warning("%d tracks have recordings but ids that cannot be file names", unnamed)
    if missing:
        log.warning("%d tracks' stored audio is missing (e.g. %s)", len(missing), missing[0])
    counts = {
        "tracks": len(tracks),
        "cold_tracks": sum(track.origin == "cold" for track in tracks),
        "listens": listened.rows,
        "users": listened.users,
        "audio_files": len(wanted),
        "audio_links_changed": changed,
        "tracks_without_audio": len(tracks) - len(wanted),
        "tracks_missing_audio": len(missing),
    }
    return Snapshot(
        folder.resolve(), "database", taken_at, counts, tuple(missing), listened.through
    )


class _ListensWritten:
    """Streams the catalogue's summed listens with ids up to `through` into `listens.tsv`,
    counting rows and users on the way (the stream is sorted by user, so a user spans
    consecutive rows)."""

    def __init__(self, through: int) -> None:
        self.through = through
        self.rows = 0
        self.users = 0

    def write(self, handle: Any, catalogue: Catalogue) -> None:
        last_user = None
        for frame in catalogue.iter_listens(through_id=self.through):
            handle.write(listens_tsv_block(frame))
            users = frame["user_id"]
            self.rows += len(frame)
            self.users += int(users.nunique()) - int(users.iloc[0] == last_user)
            last_user = users.iloc[-1]


def _usable_name(track_id: str) -> bool:
    return "/" not in track_id and track_id not in (".", "..") and "\0" not in track_id


def _sync_links(audio_dir: Path, wanted: Mapping[str, Path]) -> int:
    """Make `audio_dir` hold exactly the links in `wanted` (name -> target); returns how
    many were created, replaced or removed. Unchanged links keep their stamp for the cache."""
    changed = 0
    for entry in audio_dir.iterdir():
        if entry.name not in wanted:
            entry.unlink()
            changed += 1
    for name, target in wanted.items():
        link = audio_dir / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        temporary = audio_dir / f".{name}.link"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        os.replace(temporary, link)
        changed += 1
    return changed
