"""Durable, content-addressed storage for the audio of tracks added through the service.

The nightly job recomputes every track's vectors with the newest model, so it needs the
audio of every track ever added, long after the upload request has returned. Files live at
`<root>/<sha256[:2]>/<sha256>.<ext>`: the name is the content, so storing the same upload
twice is a no-op, two tracks with the same bytes share one file, and a file can be checked
against the `audio_sha256` recorded in the catalogue.

Writes go to a temporary file in `<root>/.incoming/`, are fsynced, moved into place with
`os.replace` (atomic on one filesystem) and the folder is fsynced: a reader sees the whole
file or none, and a stored file survives a crash or power loss once `put` returns. The
one deletion is `remove`: the catalogue takes back a file whose track failed to commit.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from artifacts.files import fsync_dir
from catalogue.errors import InvalidAudio
from corpus.dataset import AUDIO_EXTENSIONS

INCOMING = ".incoming"
_CHUNK_BYTES = 1 << 20
_RELATIVE_PATH = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}\.[a-z0-9]+")


@dataclass(frozen=True)
class StoredAudio:
    """Where `put` stored a file: `relative_path` is what the catalogue records; `created`
    when this `put` wrote it (it was not in the store before)."""

    sha256: str
    relative_path: str
    size: int
    created: bool = field(default=False, compare=False)


def normalise_extension(ext: str) -> str:
    """ "WAV" or ".wav" -> "wav"; `InvalidAudio` unless the front end can decode it."""
    normalised = ext.lower().lstrip(".")
    if normalised not in AUDIO_EXTENSIONS:
        raise InvalidAudio(f"audio extension {ext!r} is not one of {', '.join(AUDIO_EXTENSIONS)}")
    return normalised


class AudioStore:
    """Audio files under `root`, named by their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / INCOMING).mkdir(parents=True, exist_ok=True)

    def put(self, audio: bytes | BinaryIO | Path, ext: str) -> StoredAudio:
        """Store `audio` (bytes, a binary file object read to its end, or a file path).

        Idempotent: the same bytes always give the same `StoredAudio`. Raises
        `InvalidAudio` for empty audio or an extension the front end cannot read.
        """
        ext = normalise_extension(ext)
        if isinstance(audio, Path):
            with open(audio, "rb") as source:
                return self._write(source, ext)
        if isinstance(audio, bytes | bytearray | memoryview):
            return self._write(io.BytesIO(audio), ext)
        return self._write(audio, ext)

    def remove(self, stored: StoredAudio) -> None:
        """Take back a file `put` just created, for a write that failed after it (the
        catalogue checks first that no track refers to it); a missing file is fine."""
        self.path(stored.relative_path).unlink(missing_ok=True)

    def path(self, relative_path: str) -> Path:
        """The file of a recorded `audio_path`; refuses anything but a store-made name, so
        a path read from the database can never point outside the store."""
        if not _RELATIVE_PATH.fullmatch(relative_path):
            raise InvalidAudio(f"{relative_path!r} is not an audio store path")
        return self.root / relative_path

    def _write(self, source: BinaryIO, ext: str) -> StoredAudio:
        digest = hashlib.sha256()
        size = 0
        descriptor, temporary = tempfile.mkstemp(dir=self.root / INCOMING, suffix=".part")
        try:
            with os.fdopen(descriptor, "wb") as target:
                while block := source.read(_CHUNK_BYTES):
                    digest.update(block)
                    target.write(block)
                    size += len(block)
                target.flush()
                os.fsync(target.fileno())
            if size == 0:
                raise InvalidAudio("empty audio: no bytes to store")
            sha256 = digest.hexdigest()
            relative_path = f"{sha256[:2]}/{sha256}.{ext}"
            final = self.root / relative_path
            if final.is_file() and final.stat().st_size == size:
                return StoredAudio(sha256, relative_path, size)  # stored before: nothing to do
            final.parent.mkdir(exist_ok=True)
            os.replace(temporary, final)
            fsync_dir(final.parent)
            fsync_dir(self.root)
            return StoredAudio(sha256, relative_path, size, created=True)
        finally:
            Path(temporary).unlink(missing_ok=True)
