"""The registry folder: its names, version ids, and the lock its writers take.

    REG/
      current                 one line, the id of the version the service loads
      versions/<id>/          one finished version (see `pipeline.registry`)
      .staging/               versions being written; a crash leaves its debris only here
      .lock                   the publishers' flock

A version id is `<UTC time>-<manifest digest[:10]>` (`-<n>` for a second one within a
second): it sorts by publication time and names its content.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from artifacts.files import file_lock
from artifacts.manifest import ArtifactError
from artifacts.run_layout import CNN_NAME
from artifacts.run_layout import REPORT_FILE as REPORT_FILE  # the version keeps the run's report

VERSION_KIND = "model-version"
CURRENT_FILE = "current"
VERSIONS_DIR = "versions"
STAGING_DIR = ".staging"
LOCK_FILE = ".lock"
ENCODER_DIR = "encoder"
INDEX_DIR = "index"
ARTIST_DIR = "artist"  # RUN/models/artist/: the artist priors new tracks are placed with
HYBRID_DIR = "hybrid"  # RUN/models/hybrid/: the fusion weights of CNN and artist prior
USER_FACTORS_FILE = "user_factors.npy"
USER_IDS_FILE = "user_ids.json"
SONG_FACTORS_FILE = "song_factors.npy"
SONG_IDS_FILE = "song_ids.json"
TEST_SONGS_FILE = "test_song_ids.json"
SONGS_FILE = "songs.csv"
COLD_SONGS_FILE = "cold_song_ids.json"
CONTENT_MODEL = CNN_NAME
SOURCES = ("dataset", "database")

_VERSION_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{10}(-[0-9]+)?$")


class RegistryError(ArtifactError):
    """The registry has no usable current version, or a run cannot be published."""


def is_version_id(text: str) -> bool:
    """Whether `text` has the shape of a version id (see the module docstring)."""
    return _VERSION_ID.match(text) is not None


def version_folder(registry_dir: Path, version_id: str) -> Path:
    """`REG/versions/<version_id>`; `RegistryError` unless it is a version id with a folder."""
    folder = Path(registry_dir) / VERSIONS_DIR / version_id
    if not is_version_id(version_id) or not folder.is_dir():
        raise RegistryError(f"{registry_dir}: no version {version_id!r}")
    return folder


@contextmanager
def registry_lock(registry_dir: Path) -> Iterator[None]:
    """One writer of `versions/`, `.staging/` and `current` at a time per registry (the
    pointer switch is last-writer-wins). An flock: the kernel drops it when its holder
    dies, so a killed publisher never leaves it held."""
    with file_lock(Path(registry_dir) / LOCK_FILE):
        yield
