"""Manifests: what an artifact folder holds, how it was made, and from what.

Every step of a run writes `manifest.json` beside its files: schema version, kind,
creation time, parameters, parent artifacts (by manifest digest), dataset fingerprint
and the sha256 of each file. Loaders verify the hashes, so a half-written or edited
artifact is refused instead of silently used.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from artifacts.files import write_json_atomic

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


class ArtifactError(RuntimeError):
    """An artifact folder is missing, incomplete, or does not match its manifest."""


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(
    folder: Path,
    kind: str,
    files: list[str],
    parameters: dict[str, Any] | None = None,
    parents: dict[str, str] | None = None,
    dataset_fingerprint: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Hash `files` (paths relative to `folder`) and write `folder/manifest.json`.

    Written last, so an artifact whose manifest exists is complete. Returns the manifest;
    its `digest` (sha256 over the file hashes, kind and parameters) is what children
    name as their parent.
    """
    folder = Path(folder)
    hashes = {name: sha256_file(folder / name) for name in sorted(files)}
    body = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "parameters": parameters or {},
        "parents": parents or {},
        "dataset_fingerprint": dataset_fingerprint,
        "files": hashes,
    }
    body["digest"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    body["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if extra:
        body.update(extra)
    write_json_atomic(folder / MANIFEST_NAME, body)
    return body


def read_manifest(folder: Path, kind: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Load `folder/manifest.json`; with `verify`, check every listed file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST_NAME} (missing or unfinished artifact)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path}: unreadable manifest ({error})") from error
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: schema version {manifest.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(f"{path}: kind {manifest.get('kind')!r}, expected {kind!r}")
    if verify:
        for name, expected in manifest.get("files", {}).items():
            file = folder / name
            if not file.is_file():
                raise ArtifactError(f"{folder}: {name} listed in the manifest is missing")
            if sha256_file(file) != expected:
                raise ArtifactError(f"{folder}: {name} does not match its manifest sha256")
    return manifest
