"""Which version is current: the pointer switch, making an older version current again by
hand (a rollback, `activate_version`), its log, and the versions described for choosing.

    REG/activations.jsonl   one JSON line per version made current by hand: {"at",
                            "version", "previous", "requested_by", "note"}, appended under
                            the publishers' lock and fsynced

A version that an activation moved `current` away from is *withdrawn* until it is made
current again (`withdrawn_versions`): the nightly gate's floor leaves its numbers out, so a
bad version rolled back from does not raise the bar for the ones after it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from artifacts.files import fsync_dir, write_text_atomic
from artifacts.manifest import read_manifest
from pipeline.registry.layout import (
    CURRENT_FILE,
    REPORT_FILE,
    VERSION_KIND,
    registry_lock,
    version_folder,
)
from pipeline.registry.read import current_version_or_none, list_versions

ACTIVATIONS_FILE = "activations.jsonl"
REPORTED_MODELS = ("cnn", "hybrid")  # the placements a version serves, as its gate scores them


def set_current(registry_dir: Path, version_id: str) -> None:
    """Point `REG/current` at a finished version (publish, or a rollback), atomically.

    The version's manifest is verified first: the pointer never names a broken version.
    Callers hold the publishers' lock (`registry_lock`)."""
    read_manifest(version_folder(registry_dir, version_id), kind=VERSION_KIND)
    write_text_atomic(Path(registry_dir) / CURRENT_FILE, version_id + "\n")


@dataclass(frozen=True)
class Activation:
    """`version` made current by hand in place of `previous` (None: there was none), at
    `at` (UTC, ISO 8601), by `requested_by` (a key's label, a login), for `note`."""

    at: str
    version: str
    previous: str | None
    requested_by: str | None = None
    note: str | None = None

    @property
    def changed(self) -> bool:
        return self.version != self.previous


def activate_version(
    registry_dir: Path,
    version_id: str,
    requested_by: str | None = None,
    note: str | None = None,
) -> Activation:
    """Make the finished version `version_id` current (verified first: `RegistryError`
    for an unknown one, `ArtifactError` for one whose files differ from its manifest) and
    log it; the services swap to it at their next poll. Activating the current version
    changes and logs nothing (`Activation.changed` is False)."""
    registry_dir = Path(registry_dir)
    version_folder(registry_dir, version_id)  # an unknown one is refused before any lock
    with registry_lock(registry_dir):
        previous = current_version_or_none(registry_dir)
        activation = Activation(
            datetime.now(UTC).isoformat(), version_id, previous, requested_by, note
        )
        set_current(registry_dir, version_id)  # verifies it, even when already current
        if activation.changed:
            log = registry_dir / ACTIVATIONS_FILE
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(activation)) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            fsync_dir(registry_dir)
    return activation


def read_activations(registry_dir: Path) -> list[Activation]:
    """The activation log, oldest first (a line cut short by a crash is skipped)."""
    log = Path(registry_dir) / ACTIVATIONS_FILE
    if not log.is_file():
        return []
    activations = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            activations.append(Activation(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return activations


def withdrawn_versions(registry_dir: Path) -> set[str]:
    """Versions that an activation moved `current` away from and that none made current
    again since."""
    withdrawn: set[str] = set()
    for activation in read_activations(registry_dir):
        if activation.previous is not None:
            withdrawn.add(activation.previous)
        withdrawn.discard(activation.version)
    return withdrawn


@dataclass(frozen=True)
class VersionSummary:
    """A finished version as an operator chooses one: when, from what, how it scored (the
    run's evaluation and, for a nightly one, its gate), and whether it is current or
    withdrawn."""

    id: str
    created_at: str
    current: bool
    withdrawn: bool
    source: str | None
    replaced: str | None
    evaluation: dict[str, dict[str, float]]
    gate: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe_versions(registry_dir: Path) -> list[VersionSummary]:
    """Every finished version, newest first (manifests read, not their files verified)."""
    current = current_version_or_none(registry_dir)
    withdrawn = withdrawn_versions(registry_dir)
    summaries = []
    for version_id in reversed(list_versions(registry_dir)):
        folder = version_folder(registry_dir, version_id)
        manifest = read_manifest(folder, kind=VERSION_KIND, verify=False)
        report = json.loads((folder / REPORT_FILE).read_text())
        gate = (manifest.get("pipeline") or {}).get("gate")
        summaries.append(
            VersionSummary(
                id=version_id,
                created_at=str(manifest["created_at"]),
                current=version_id == current,
                withdrawn=version_id in withdrawn,
                source=manifest["parameters"].get("source"),
                replaced=manifest["parents"].get("version"),
                evaluation={
                    model: {"map": numbers["map"], "auc": numbers["auc"]}
                    for model, numbers in report["models"].items()
                    if model in REPORTED_MODELS
                },
                gate=(
                    {
                        "passed": gate.get("passed"),
                        "decided_by": gate.get("decided_by"),
                        "candidate": gate.get("candidate"),
                    }
                    if gate
                    else None
                ),
            )
        )
    return summaries
