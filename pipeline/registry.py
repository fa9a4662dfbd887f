"""The model registry: immutable versions of everything the service serves, and one pointer.

A version is built from a finished run (factorization + `models/cnn` + `report.json`) by
`publish_run`, and loaded by the service with `load_current`:

    REG/
      current                 one line, the id of the version the service loads
      versions/<id>/
        encoder/              the CNN checkpoint, copied from RUN/models/cnn/ with its manifest
        index/                `index.CatalogueIndex.save`: the cf space (cosine and inner
                              product) and the content space
        user_factors.npy      (n_users, F) float32, rows follow user_ids.json
        user_ids.json
        song_factors.npy      (n_songs, F) float32: the WMF factors of the songs with listens
        song_ids.json         (rows follow it); the next night's WMF starts from them
        test_song_ids.json    the run's cold test songs: the next night evaluates on the same
        songs.csv             song_id,title,artist of every catalogue song (the dataset's
                              songs.csv), for the catalogue DB
        cold_song_ids.json    catalogue songs without listening data: their cf vector is the
                              content model's prediction, as for a track added by audio
        report.json           the run's evaluation (the model table of GET /v1/model)
        manifest.json         kind "model-version", sha256 of every file above, parents
                              (the artifacts, and the version it replaced), the dataset
                              fingerprint, `parameters.source` ("dataset" | "database")
      .staging/               versions being written; a crash leaves its debris only here

Why this shape. A version folder is written completely under `.staging/`, its manifest
last, and only then renamed into `versions/` (one `rename` on one file system); `current`
is switched afterwards by writing a new file and `os.replace`-ing it over the old one. A
reader therefore sees the old version or the new one, never a half-written one, and a
version folder without a manifest (a copy gone wrong, a hand edit) is refused on load.

Song vectors. In the cf space every song with enough listeners (`warm_min_listeners`;
training songs at their WMF factors, validation and test songs folded in) sits at its
factors; a song with fewer (a track added by audio that has only begun to be played, an
unlistened song, or one folded in to a zero vector because all its listeners were left out
of WMF) sits where the content model puts it, exactly like a cold track added later through
the API. A few listeners' factors say more about those listeners than about the song. The
content space holds the CNN's prediction for every song in the mel cache.

`load_current` imports torch, faiss and the plain encoder only: the service never loads
Lightning or implicit (an import contract of `make lint`; pandas it does load, through the
catalogue). `publish_run` imports the training side lazily for that reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artifacts.files import file_lock, fsync_dir, fsync_file, write_text_atomic
from artifacts.manifest import MANIFEST_NAME, ArtifactError, read_manifest, write_manifest
from artifacts.run_layout import CNN_NAME, MODELS_DIR, REPORT_FILE
from index.settings import IndexSettings
from index.spaces import CatalogueIndex

if TYPE_CHECKING:
    from training.encoder import ContentEncoder

VERSION_KIND = "model-version"
CURRENT_FILE = "current"
VERSIONS_DIR = "versions"
STAGING_DIR = ".staging"
LOCK_FILE = ".lock"
ENCODER_DIR = "encoder"
INDEX_DIR = "index"
USER_FACTORS_FILE = "user_factors.npy"
USER_IDS_FILE = "user_ids.json"
SONG_FACTORS_FILE = "song_factors.npy"
SONG_IDS_FILE = "song_ids.json"
TEST_SONGS_FILE = "test_song_ids.json"
SONGS_FILE = "songs.csv"
COLD_SONGS_FILE = "cold_song_ids.json"
CONTENT_MODEL = CNN_NAME
SOURCES = ("dataset", "database")
# Listeners a song needs before the cf space places it at its WMF factors, not its audio.
WARM_MIN_LISTENERS = 3

# `<UTC time>-<manifest digest[:10]>`: sorts by publication time, names its content.
_VERSION_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{10}(-[0-9]+)?$")


class RegistryError(ArtifactError):
    """The registry has no usable current version, or a run cannot be published."""


@dataclass
class LoadedVersion:
    """A verified version in memory: what the service answers requests with.

    `user_factors` (n_users, F) float32, rows follow `user_ids`; `index` holds the cf and
    content spaces; `cold_song_ids` are the published songs whose cf vector is predicted.
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
    user_rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_rows = {user_id: row for row, user_id in enumerate(self.user_ids)}

    @property
    def created_at(self) -> str:
        return str(self.manifest["created_at"])

    @property
    def songs_file(self) -> Path:
        """`songs.csv` (header song_id,title,artist) of this version's catalogue."""
        return self.folder / SONGS_FILE

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The user's (F,) WMF factors, or None for a user the factorization never saw."""
        row = self.user_rows.get(user_id)
        return None if row is None else self.user_factors[row]


# ---- reading -----------------------------------------------------------------------------


def current_version_id(registry_dir: Path) -> str:
    """The id `REG/current` names; `RegistryError` if nothing was published yet."""
    path = Path(registry_dir) / CURRENT_FILE
    try:
        version_id = path.read_text().strip()
    except FileNotFoundError as error:
        raise RegistryError(
            f"{registry_dir}: no current version (run `coldstart publish` first)"
        ) from error
    if not _VERSION_ID.match(version_id):
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
        if _VERSION_ID.match(path.name) and (path / MANIFEST_NAME).is_file()
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

    folder = Path(registry_dir) / VERSIONS_DIR / version_id
    if not folder.is_dir():
        raise RegistryError(f"{registry_dir}: no version {version_id!r}")
    manifest = read_manifest(folder, kind=VERSION_KIND)
    user_ids = json.loads((folder / USER_IDS_FILE).read_text())
    user_factors = np.load(folder / USER_FACTORS_FILE, allow_pickle=False)
    if user_factors.dtype != np.float32 or user_factors.shape[:1] != (len(user_ids),):
        raise ArtifactError(
            f"{folder}: {USER_FACTORS_FILE} is {user_factors.dtype} {user_factors.shape},"
            f" expected float32 with one row per id in {USER_IDS_FILE} ({len(user_ids)})"
        )
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
    )


def load_current(registry_dir: Path) -> LoadedVersion:
    """Load the version `REG/current` names, verified file by file (see `load_version`)."""
    return load_version(registry_dir, current_version_id(registry_dir))


@dataclass(frozen=True)
class RetrainingBase:
    """What the nightly run takes from the current version: its factors (the warm start),
    its test songs, its encoder (fine-tuned, and scored by the quality gate) and manifest.
    `None` fields: a version published before they were kept. No index: the run never
    searches, and at 10M songs the index is most of a version's bytes."""

    version_id: str
    manifest: dict[str, Any]
    encoder_dir: Path
    encoder: ContentEncoder
    user_ids: list[str]
    user_factors: np.ndarray
    song_ids: list[str] | None
    song_factors: np.ndarray | None
    test_song_ids: list[str] | None


def load_for_retraining(registry_dir: Path, version_id: str) -> RetrainingBase:
    """A finished version's `RetrainingBase`, verified against its manifest once."""
    from training.checkpoint import load_encoder

    folder = Path(registry_dir) / VERSIONS_DIR / version_id
    if not _VERSION_ID.match(version_id) or not folder.is_dir():
        raise RegistryError(f"{registry_dir}: no version {version_id!r}")
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
    )


def set_current(registry_dir: Path, version_id: str) -> None:
    """Point `REG/current` at a finished version (publish, or a rollback), atomically.

    The version's manifest is verified first: the pointer never names a broken version.
    """
    registry_dir = Path(registry_dir)
    folder = registry_dir / VERSIONS_DIR / version_id
    if not _VERSION_ID.match(version_id) or not folder.is_dir():
        raise RegistryError(f"{registry_dir}: no version {version_id!r}")
    read_manifest(folder, kind=VERSION_KIND)
    write_text_atomic(registry_dir / CURRENT_FILE, version_id + "\n")


# ---- publishing --------------------------------------------------------------------------


def publish_run(
    run_dir: Path,
    registry_dir: Path,
    database_url: str | None = None,
    *,
    dataset_root: Path | None = None,
    batch_size: int = 32,
    index_settings: IndexSettings | None = None,
    warm_min_listeners: int = WARM_MIN_LISTENERS,
    source: str = "dataset",
    parent_version: str | None = None,
    provenance: dict[str, Any] | None = None,
    spark_master: str | None = None,
) -> str:
    """Build a version from the finished run `run_dir`, add it to `registry_dir`, make it
    current, and return its id.

    The run must hold a factorization, `models/cnn` trained on it and a `report.json`
    that scored that very model (their manifests' parents are checked), so that what GET
    /v1/model shows is the evaluation of what is served. The CNN predicts every song in
    the dataset's mel cache (`dataset_root` is needed only when neither the run's
    manifests nor its report record the dataset folder). With `database_url`, the catalogue
    songs' titles and artists are imported into that catalogue DB (idempotently) before
    `current` switches. `source` says where the run's listens came from ("database": the
    catalogue DB itself, which the service then does not import into), `parent_version`
    the version this one replaces (refused if `current` no longer names it), `provenance`
    what the nightly run knows (its id, the
    quality gate's decision, how far the factors moved); all three go into the manifest.
    With `spark_master`, the CNN embeds the catalogue as a Spark job on that cluster.
    The nightly pipeline (`pipeline.nightly`) puts its quality gate in front of this call.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    run_dir, registry_dir = Path(run_dir), Path(registry_dir)
    for sub in (VERSIONS_DIR, STAGING_DIR):
        (registry_dir / sub).mkdir(parents=True, exist_ok=True)
    with registry_lock(registry_dir):
        if parent_version is not None and current_version_or_none(registry_dir) != parent_version:
            raise RegistryError(
                f"{registry_dir}: current is no longer {parent_version} (another publish came"
                " first); not replacing it"
            )
        staging = Path(tempfile.mkdtemp(dir=registry_dir / STAGING_DIR, prefix="version-"))
        try:
            manifest = _build_version(
                run_dir,
                staging,
                dataset_root,
                batch_size,
                index_settings or IndexSettings(),
                warm_min_listeners,
                {"source": source, "parent_version": parent_version},
                provenance,
                spark_master,
            )
            version_id = _new_version_id(registry_dir, manifest)
            os.rename(staging, registry_dir / VERSIONS_DIR / version_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(registry_dir / VERSIONS_DIR)
        if database_url is not None:
            import_catalogue_songs(registry_dir, version_id, database_url)
        set_current(registry_dir, version_id)
    return version_id


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
    a rollback just pointed at); returns the ids deleted, oldest first.

    A pruned version is first renamed into `.staging/` (one atomic step, after which no
    loader sees it) and then deleted, so a crash mid-delete leaves no half version behind.
    """
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


def import_catalogue_songs(registry_dir: Path, version_id: str, database_url: str) -> int:
    """Add the version's songs (titles, artists) to the catalogue DB at `database_url` as
    warm tracks; songs it already holds are left as they are. Returns how many were added."""
    from catalogue import open_catalogue

    with open_catalogue(database_url) as catalogue:
        return catalogue.import_songs(
            Path(registry_dir) / VERSIONS_DIR / version_id / SONGS_FILE, vector_version=version_id
        )


def _build_version(
    run_dir: Path,
    folder: Path,
    dataset_root: Path | None,
    batch_size: int,
    index_settings: IndexSettings,
    warm_min_listeners: int,
    lineage: dict[str, str | None],
    provenance: dict[str, Any] | None,
    spark_master: str | None,
) -> dict[str, Any]:
    """Write every file of a version into `folder`, the manifest last; return the manifest."""
    from audio.cache import MelCache, default_cache_dir
    from corpus.dataset import LISTENS_FILE, read_listens, read_songs
    from corpus.dataset import SONGS_FILE as DATASET_SONGS_FILE
    from corpus.split import listener_counts
    from evaluation.report import REPORT_KIND
    from factorization.run import dataset_root_of, load_factorization
    from training.checkpoint import MANIFEST_KIND as MODEL_KIND
    from training.checkpoint import load_encoder
    from training.run import predict_cached

    factorization = load_factorization(run_dir)
    model_dir = run_dir / MODELS_DIR / CONTENT_MODEL
    model_manifest = read_manifest(model_dir, kind=MODEL_KIND)
    report_manifest = read_manifest(run_dir, kind=REPORT_KIND)
    if model_manifest["parents"].get("factorization") != factorization.digest:
        raise RegistryError(f"{model_dir}: not trained on {run_dir}'s factorization")
    if report_manifest["parents"].get(f"model:{CONTENT_MODEL}") != model_manifest["digest"]:
        raise RegistryError(
            f"{run_dir / REPORT_FILE}: does not score the current models/{CONTENT_MODEL}"
            " (run `coldstart evaluate` again)"
        )
    root = dataset_root_of(factorization, dataset_root)

    encoder = load_encoder(model_dir)
    cache = MelCache.open(default_cache_dir(root, encoder.config))
    songs = read_songs(root / DATASET_SONGS_FILE)
    catalogue_ids = songs["song_id"].tolist()
    content_ids = [song_id for song_id in catalogue_ids if song_id in cache]
    if spark_master is None:
        content_vectors = predict_cached(encoder, cache, content_ids, batch_size)
    else:
        from training.spark_embed import embed_on_spark

        content_vectors = embed_on_spark(encoder, cache, content_ids, spark_master, batch_size)

    warm_ids = factorization.song_ids + factorization.valid_song_ids + factorization.test_song_ids
    warm_factors = np.concatenate(
        [
            factorization.song_factors,
            factorization.valid_song_factors,
            factorization.test_song_factors,
        ]
    )
    has_listens = np.linalg.norm(warm_factors, axis=1) > 0
    listeners = listener_counts(read_listens(root / LISTENS_FILE), warm_ids)
    in_cache = np.isin(np.asarray(warm_ids, dtype=object), np.asarray(content_ids, dtype=object))
    # At its factors: enough listeners, or no audio to place it by (factors beat nothing).
    at_factors = has_listens & ((listeners >= warm_min_listeners) | ~in_cache)
    placed = {song_id for song_id, keep in zip(warm_ids, at_factors, strict=True) if keep}
    cold_rows = [row for row, song_id in enumerate(content_ids) if song_id not in placed]
    cold_ids = [content_ids[row] for row in cold_rows]
    cf_ids = [song_id for song_id, keep in zip(warm_ids, at_factors, strict=True) if keep]
    cf_vectors = np.concatenate([warm_factors[at_factors], content_vectors[cold_rows]])
    index = CatalogueIndex.build(
        cf_ids + cold_ids,
        cf_vectors,
        content_ids,
        content_vectors,
        settings=index_settings,
    )

    _copy_artifact(model_dir, folder / ENCODER_DIR)
    index_manifest = index.save(folder / INDEX_DIR)
    np.save(folder / USER_FACTORS_FILE, factorization.user_factors, allow_pickle=False)
    (folder / USER_IDS_FILE).write_text(json.dumps(factorization.user_ids))
    np.save(folder / SONG_FACTORS_FILE, warm_factors[has_listens], allow_pickle=False)
    listened_ids = [song_id for song_id, keep in zip(warm_ids, has_listens, strict=True) if keep]
    (folder / SONG_IDS_FILE).write_text(json.dumps(listened_ids))
    (folder / TEST_SONGS_FILE).write_text(json.dumps(factorization.test_song_ids))
    (folder / COLD_SONGS_FILE).write_text(json.dumps(cold_ids))
    songs.to_csv(folder / SONGS_FILE, index=False)
    shutil.copyfile(run_dir / REPORT_FILE, folder / REPORT_FILE)
    files = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path != folder / MANIFEST_NAME
    )
    for name in files:
        fsync_file(folder / name)
    return write_manifest(
        folder,
        kind=VERSION_KIND,
        files=files,
        parameters={
            "run_dir": str(run_dir.resolve()),
            "dataset_root": str(root),
            "content_model": CONTENT_MODEL,
            "index": asdict(index_settings),
            "warm_min_listeners": warm_min_listeners,
            "source": lineage["source"],
            "embedded_on": spark_master or "local",
        },
        parents={
            "factorization": factorization.digest,
            f"model:{CONTENT_MODEL}": model_manifest["digest"],
            "report": report_manifest["digest"],
            "index": index_manifest["digest"],
            **({"version": lineage["parent_version"]} if lineage["parent_version"] else {}),
        },
        dataset_fingerprint=factorization.manifest.get("dataset_fingerprint"),
        extra={
            "pipeline": provenance,
            "counts": {
                "catalogue_songs": len(catalogue_ids),
                "cf_songs": len(cf_ids) + len(cold_ids),
                "cf_songs_with_listens": len(cf_ids),
                "cf_songs_predicted": len(cold_ids),
                "content_songs": len(content_ids),
                "users": len(factorization.user_ids),
            },
            "n_factors": factorization.n_factors,
        },
    )


def _copy_artifact(source: Path, target: Path) -> None:
    """Copy an artifact folder's manifest and the files it lists (not its logs)."""
    manifest = read_manifest(source)
    for name in [*manifest["files"], MANIFEST_NAME]:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target / name)


def _new_version_id(registry_dir: Path, manifest: dict[str, Any]) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{manifest['digest'][:10]}"
    version_id, n = base, 1
    while (registry_dir / VERSIONS_DIR / version_id).exists():
        n += 1
        version_id = f"{base}-{n}"
    return version_id


@contextmanager
def registry_lock(registry_dir: Path) -> Iterator[None]:
    """One writer of `versions/`, `.staging/` and `current` at a time per registry (the
    pointer switch is last-writer-wins). An flock: the kernel drops it when its holder
    dies, so a killed publisher never leaves it held."""
    with file_lock(registry_dir / LOCK_FILE):
        yield
