"""One nightly run at a time per registry, with a lock no crash can leave held.

An `flock` on `REG/.pipeline.lock`: the kernel releases it when the holding process dies,
however it dies (SIGKILL, OOM, power cut), so there is no stale lock file to clear by
hand and no pid to second-guess. The file's text says who holds it, for the message a
second run gives.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from artifacts.files import LockHeld, file_lock

LOCK_FILE = ".pipeline.lock"


class PipelineBusy(RuntimeError):
    """Another run holds the registry's pipeline lock."""


@contextmanager
def pipeline_lock(registry_dir: Path, run_id: str) -> Iterator[None]:
    """Hold the registry's pipeline lock for the block, or raise `PipelineBusy` at once."""
    registry_dir = Path(registry_dir)
    registry_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        try:
            handle = held.enter_context(file_lock(registry_dir / LOCK_FILE, wait=False))
        except LockHeld as busy:
            holder = busy.holder or "another process"
            raise PipelineBusy(f"another pipeline run holds {busy.path}: {holder}") from busy
        try:
            handle.seek(0)
            handle.truncate()
            me = {"run_id": run_id, "pid": os.getpid(), "since": datetime.now(UTC).isoformat()}
            handle.write(json.dumps(me))
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
