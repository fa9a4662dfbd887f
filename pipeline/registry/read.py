"""The read side of the registry: which version is current, and loading one verified.

This is all the service needs of the registry to serve (its admin routes add
`pipeline.registry.current`): `load_version` imports numpy, torch, faiss and the plain
encoder, never Lightning or implicit, and gives a version's listens and song factors for
folding users in. The nightly run loads the current version for retraining
(`load_for_retraining`: no index).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artifacts.manifest import MANIFEST_NAME, ArtifactError, read_manifest
from artifacts.run_layout import PLOTS_DIR
from factorization.fold_in import FixedFactors, FoldInRule
from index.spaces import CatalogueIndex
from pipeline.registry.catalogue_map import MAP_FILE, SpaceMap, load_catalogue_map
from pipeline.registry.layout import (
    ARTIST_DIR,
    COLD_SONGS_FILE,
    CURRENT_FILE,
    ENCODER_DIR,
    HYBRID_DIR,
    INDEX_DIR,
    REPORT_FILE,
    SONG_FACTORS_FILE,
    SONG_IDS_FILE,
    SONGS_FILE,
    TEST_SONGS_FILE,
    USER_FACTORS_FILE,
    USER_IDS_FILE,
    VERSION_KIND,
    VERSIONS_DIR,
    RegistryError,
    is_version_id,
    version_folder,
)
from pipeline.registry.listens import VersionListens, load_version_listens
from training.fusion import HybridPlacement, load_hybrid

if TYPE_CHECKING:
    from training.encoders.base import ContentEncoder


@dataclass
class LoadedVersion:
    """A verified version in memory: what the service answers requests with.

    `user_factors` (n_users, F) float32, rows follow `user_ids`; `index` holds the cf and
    content spaces; `cold_song_ids` are the published songs whose cf vector is predicted;
    `hybrid` the artist priors and fusion new tracks are placed with (None: by audio alone);
    `catalogue_map` each space's 2-D map (`pipeline.registry.catalogue_map`; empty for a
    version published before maps). Users are folded in against `song_factors`
    (song_ids.json's, with their YᵀY) by `fold_in_rule`, from their `listens` in the
    version and the catalogue's listens with ids above `listens_through` (None: all of
    them). Versions published before these were kept have None for them.
    """

    version_id: str
    folder: Path
    manifest: dict[str, Any]
    encoder: ContentEncoder
    index: CatalogueIndex
    user_ids: list[str]
    user_factors: np.ndarray
    cold_song_ids: frozenset[str]
    report: dict[str, Any]
    hybrid: HybridPlacement | None = None
    catalogue_map: dict[str, SpaceMap] = field(default_factory=dict)
    song_factors: FixedFactors | None = None
    fold_in_rule: FoldInRule | None = None
    listens: VersionListens | None = None
    listens_through: int | None = None
    user_rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        listeners = self.user_ids + (self.listens.other_user_ids if self.listens else [])
        self.user_rows = {user_id: row for row, user_id in enumerate(listeners)}

    @property
    def created_at(self) -> str:
        return str(self.manifest["created_at"])

    @property
    def songs_file(self) -> Path:
        """`songs.csv` (header song_id,title,artist) of this version's catalogue."""
        return self.folder / SONGS_FILE

    @property
    def plots(self) -> dict[str, Path]:
        """The run report's figures this version carries, by file name (`metrics.png`, ...);
        only names its manifest lists, so nothing else of the folder can be named."""
        prefix = f"{PLOTS_DIR}/"
        return {
            name.removeprefix(prefix): self.folder / name
            for name in self.manifest["files"]
            if name.startswith(prefix)
        }

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The user's (F,) WMF factors, or None for a user the factorization never saw."""
        row = self.user_rows.get(user_id)
        return None if row is None or row >= len(self.user_ids) else self.user_factors[row]

    def listener_row(self, user_id: str) -> int | None:
        """The user's row in `listens` (their listens in the version), or None."""
        return self.user_rows.get(user_id) if self.listens is not None else None


def current_version_id(registry_dir: Path) -> str:
    """The id `REG/current` names; `RegistryError` if nothing was published yet."""
    path = Path(registry_dir) / CURRENT_FILE
    try:
        version_id = path.read_text().strip()
    except FileNotFoundError as error:
        raise RegistryError(
            f"{registry_dir}: no current version (run `coldstart publish` first)"
        ) from error
    if not is_version_id(version_id):
        raise RegistryError(f"{path}: {version_id!r} is not a version id")
    return version_id


def current_version_or_none(registry_dir: Path) -> str | None:
    """The id `REG/current` names, or None before the first publish."""
    try:
        return current_version_id(registry_dir)
    except RegistryError:
        return None


def list_versions(registry_dir: Path) -> list[str]:
    """Ids of the finished versions (those with a manifest), oldest first: by the time in
    the id, then by when the manifest was written (two versions published within one
    second share the id's stamp)."""
    folder = Path(registry_dir) / VERSIONS_DIR
    if not folder.is_dir():
        return []
    finished = {
        path.name: (path.name[:16], (path / MANIFEST_NAME).stat().st_mtime_ns, path.name)
        for path in folder.iterdir()
        if is_version_id(path.name) and (path / MANIFEST_NAME).is_file()
    }
    return sorted(finished, key=finished.__getitem__)


def load_version(
    registry_dir: Path, version_id: str, *, nprobe: int | None = None
) -> LoadedVersion:
    """Verify `versions/<version_id>` against its manifest and load it.

    Raises `RegistryError` for an unknown version and `ArtifactError` for one without a
    manifest or whose files differ from it; `FrontEndMismatchError` if its encoder was
    trained behind another audio front end. `nprobe` overrides an IVF-PQ index's
    (the lists searched per query: recall against latency).
    """
    from training.checkpoint import load_encoder

    folder = version_folder(registry_dir, version_id)
    manifest = read_manifest(folder, kind=VERSION_KIND)
    user_ids = json.loads((folder / USER_IDS_FILE).read_text())
    user_factors = np.load(folder / USER_FACTORS_FILE, allow_pickle=False)
    if user_factors.dtype != np.float32 or user_factors.shape[:1] != (len(user_ids),):
        raise ArtifactError(
            f"{folder}: {USER_FACTORS_FILE} is {user_factors.dtype} {user_factors.shape},"
            f" expected float32 with one row per id in {USER_IDS_FILE} ({len(user_ids)})"
        )
    parameters = manifest["parameters"]
    song_factors, listens = None, None
    if SONG_FACTORS_FILE in manifest["files"]:
        song_ids = json.loads((folder / SONG_IDS_FILE).read_text())
        factors = np.load(folder / SONG_FACTORS_FILE, mmap_mode="r", allow_pickle=False)
        if factors.shape[:1] != (len(song_ids),) or factors.shape[1:] != user_factors.shape[1:]:
            raise ArtifactError(
                f"{folder}: {SONG_FACTORS_FILE} is {factors.shape}, expected one row per id"
                f" in {SONG_IDS_FILE} ({len(song_ids)}) of {user_factors.shape[1]} factors"
            )
        song_factors = FixedFactors(factors)
        listens = load_version_listens(folder, len(user_ids), song_ids)
    return LoadedVersion(
        version_id=version_id,
        folder=folder,
        manifest=manifest,
        encoder=load_encoder(folder / ENCODER_DIR),
        index=CatalogueIndex.load(folder / INDEX_DIR, nprobe=nprobe),
        user_ids=user_ids,
        user_factors=user_factors,
        cold_song_ids=frozenset(json.loads((folder / COLD_SONGS_FILE).read_text())),
        report=json.loads((folder / REPORT_FILE).read_text()),
        hybrid=load_hybrid(folder / ARTIST_DIR, folder / HYBRID_DIR),
        catalogue_map=(
            load_catalogue_map(folder / MAP_FILE) if MAP_FILE in manifest["files"] else {}
        ),
        song_factors=song_factors,
        fold_in_rule=FoldInRule.from_parameters(parameters["wmf"]) if "wmf" in parameters else None,
        listens=listens,
        listens_through=parameters.get("listens_through"),
    )


def load_current(registry_dir: Path) -> LoadedVersion:
    """Load the version `REG/current` names, verified file by file (see `load_version`)."""
    return load_version(registry_dir, current_version_id(registry_dir))


@dataclass(frozen=True)
class RetrainingBase:
    """What the nightly run takes from the current version: its factors (the warm start),
    its test songs, its encoder (fine-tuned, and with its hybrid placement scored by the
    quality gate) and manifest. `None` fields: a version published before they were kept.
    No index: the run never searches, and at 10M songs the index is most of a version's
    bytes."""

    version_id: str
    manifest: dict[str, Any]
    encoder_dir: Path
    encoder: ContentEncoder
    user_ids: list[str]
    user_factors: np.ndarray
    song_ids: list[str] | None
    song_factors: np.ndarray | None
    test_song_ids: list[str] | None
    hybrid: HybridPlacement | None = None


def load_for_retraining(registry_dir: Path, version_id: str) -> RetrainingBase:
    """A finished version's `RetrainingBase`, verified against its manifest once."""
    from training.checkpoint import load_encoder

    folder = version_folder(registry_dir, version_id)
    manifest = read_manifest(folder, kind=VERSION_KIND)
    listed = manifest["files"]

    def optional(name: str) -> Any:
        if name not in listed:
            return None
        if name.endswith(".npy"):
            return np.load(folder / name, allow_pickle=False)
        return json.loads((folder / name).read_text())

    return RetrainingBase(
        version_id=version_id,
        manifest=manifest,
        encoder_dir=folder / ENCODER_DIR,
        encoder=load_encoder(folder / ENCODER_DIR),
        user_ids=optional(USER_IDS_FILE),
        user_factors=optional(USER_FACTORS_FILE),
        song_ids=optional(SONG_IDS_FILE),
        song_factors=optional(SONG_FACTORS_FILE),
        test_song_ids=optional(TEST_SONGS_FILE),
        hybrid=load_hybrid(folder / ARTIST_DIR, folder / HYBRID_DIR),
    )
