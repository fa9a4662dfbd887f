"""Keeping the registry small and clean: prune old versions, clear crash debris.

Both hold the publishers' lock, so a live publish is never touched; a pruned version is
renamed into `.staging/` (one atomic step, after which no loader sees it) before it is
deleted, so a crash mid-delete leaves no half version behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from artifacts.files import fsync_dir
from pipeline.registry.layout import STAGING_DIR, VERSIONS_DIR, registry_lock
from pipeline.registry.read import current_version_or_none, list_versions


def clean_staging(registry_dir: Path) -> int:
    """Delete what crashed publishers left under `.staging/` (never a loadable version);
    returns how many entries went. Holds the publish lock, so a live publish is untouched."""
    staging = Path(registry_dir) / STAGING_DIR
    if not staging.is_dir():
        return 0
    with registry_lock(registry_dir):
        leftovers = list(staging.iterdir())
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    return len(leftovers)


def prune_versions(registry_dir: Path, keep: int) -> list[str]:
    """Delete all but the `keep` newest finished versions, never the current one (nor one
    a rollback just pointed at); returns the ids deleted, oldest first."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    registry_dir = Path(registry_dir)
    with registry_lock(registry_dir):
        current = current_version_or_none(registry_dir)
        versions = list_versions(registry_dir)
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v != current]
        (registry_dir / STAGING_DIR).mkdir(exist_ok=True)
        for version_id in doomed:
            trash = registry_dir / STAGING_DIR / f"pruned-{version_id}"
            os.rename(registry_dir / VERSIONS_DIR / version_id, trash)
            shutil.rmtree(trash, ignore_errors=True)
        if doomed:
            fsync_dir(registry_dir / VERSIONS_DIR)
    return doomed
