"""Durable writes and advisory locks: the one definition every writer uses.

- `write_atomic` (and its JSON and text forms): readers see the old file or the new one,
  never a torn one; with `sync` the new file and its folder entry also survive a power cut.
- `fsync_file` / `fsync_dir`: make a file's bytes, or a rename or new entry in a folder,
  durable.
- `file_lock`: an exclusive `flock` held for a block. The kernel drops it when its holder
  dies, however it dies, so no crash leaves a stale lock to clear by hand.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"  # every temporary file of `write_atomic` ends so (leftovers are findable)


class LockHeld(RuntimeError):
    """`file_lock(..., wait=False)` found the lock held; `holder` is the text its holder
    left in the lock file ("" when it left none)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by {holder or 'another process'}")
        self.path = path
        self.holder = holder


def fsync_file(path: Path) -> None:
    """Flush `path`'s bytes to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in the folder `path` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomic(path: Path, write: Callable[[IO[bytes]], object], sync: bool = True) -> None:
    """Write `path` so that readers see the old file or the new one, never a torn one:
    `write` fills a temporary file in the same folder (a unique name ending `TMP_SUFFIX`,
    safe among a cluster's writers on one shared folder), which is renamed over `path`.

    `sync` fsyncs the file before the rename and the folder after it, so the new file
    survives a crash; caches that can be recomputed pass False and skip both fsyncs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str, sync: bool = True) -> None:
    """`write_atomic` of UTF-8 text."""
    write_atomic(path, lambda handle: handle.write(text.encode()), sync)


def write_json_atomic(path: Path, payload: Any, sync: bool = True) -> None:
    """`write_atomic` of indented, key-sorted JSON."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n", sync)


@contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[IO[str]]:
    """Hold an exclusive flock on `path` (created when missing) for the block.

    `wait=False` raises `LockHeld` at once when another process holds it. The block gets
    the open lock file (read/write text), where a holder may say who it is.
    """
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as error:
            handle.seek(0)
            raise LockHeld(path, handle.read().strip()) from error
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
