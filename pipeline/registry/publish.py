"""Publishing: a finished run becomes an immutable version, and `current` switches to it.

A version folder is written completely under `.staging/`, its manifest last, and only
then renamed into `versions/` (one `rename` on one file system); `current` is switched
afterwards by writing a new file and `os.replace`-ing it over the old one. A reader
therefore sees the old version or the new one, never a half-written one. The training
side (mel cache, factorization, checkpoint) is imported lazily, inside the functions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from artifacts.files import fsync_dir, fsync_file
from artifacts.manifest import MANIFEST_NAME, read_manifest, write_manifest
from artifacts.run_layout import MODELS_DIR, PLOTS_DIR
from index.settings import IndexSettings
from index.spaces import CatalogueIndex
from pipeline.registry.catalogue_map import MAP_FILE, map_space, save_catalogue_map
from pipeline.registry.current import set_current
from pipeline.registry.layout import (
    ARTIST_DIR,
    COLD_SONGS_FILE,
    CONTENT_MODEL,
    ENCODER_DIR,
    HYBRID_DIR,
    INDEX_DIR,
    REPORT_FILE,
    SONG_FACTORS_FILE,
    SONG_IDS_FILE,
    SONGS_FILE,
    SOURCES,
    STAGING_DIR,
    TEST_SONGS_FILE,
    USER_FACTORS_FILE,
    USER_IDS_FILE,
    VERSION_KIND,
    VERSIONS_DIR,
    RegistryError,
    registry_lock,
)
from pipeline.registry.listens import write_version_listens
from pipeline.registry.placement import has_factors, place_songs, usable_predictions
from pipeline.registry.read import current_version_or_none

log = logging.getLogger("coldstart.pipeline")

# Listeners a song needs before the cf space places it at its WMF factors, not its audio.
WARM_MIN_LISTENERS = 3


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
    listens_through: int | None = None,
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
    `listens_through` is the catalogue's highest listen id the run's listens hold (a
    snapshot's watermark); given `database_url` instead, it is that catalogue's highest at
    the start of the publish (its listens are taken to be the dataset's, as after
    `coldstart import`); the service counts the listens above it as posted since.
    The nightly pipeline (`pipeline.nightly`) puts its quality gate in front of this call.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    run_dir, registry_dir = Path(run_dir), Path(registry_dir)
    if listens_through is None and database_url is not None:
        listens_through = _last_listen_id(database_url)
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
                listens_through,
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


def _last_listen_id(database_url: str) -> int:
    from catalogue import open_catalogue

    with open_catalogue(database_url) as catalogue:
        return catalogue.last_listen_id()


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
    listens_through: int | None,
    provenance: dict[str, Any] | None,
    spark_master: str | None,
) -> dict[str, Any]:
    """Write every file of a version into `folder`, the manifest last; return the manifest."""
    from audio.cache import MelCache, default_cache_dir
    from corpus.dataset import LISTENS_FILE, read_listens, read_songs
    from corpus.dataset import SONGS_FILE as DATASET_SONGS_FILE
    from corpus.split import listener_counts
    from evaluation.report import REPORT_KIND
    from factorization.fold_in import FoldInRule
    from factorization.run import dataset_root_of, load_factorization
    from training.checkpoint import MANIFEST_KIND as MODEL_KIND
    from training.checkpoint import load_encoder
    from training.fusion import load_hybrid
    from training.inference import embed_cached, split_track_vector

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
    hybrid_dirs = _hybrid_dirs(run_dir / MODELS_DIR, model_manifest["digest"])
    root = dataset_root_of(factorization, dataset_root)

    encoder = load_encoder(model_dir)
    cache = MelCache.open(default_cache_dir(root, encoder.config))
    songs = read_songs(root / DATASET_SONGS_FILE)
    catalogue_ids = songs["song_id"].tolist()
    content_ids = [song_id for song_id in catalogue_ids if song_id in cache]
    if spark_master is None:
        track_vectors = embed_cached(encoder, cache, content_ids, batch_size)
    else:
        from training.spark_embed import embed_on_spark

        track_vectors = embed_on_spark(encoder, cache, content_ids, spark_master, batch_size)
    content_ids, track_vectors, unembeddable = usable_predictions(content_ids, track_vectors)
    predicted_factors, content_vectors = split_track_vector(encoder.dims, track_vectors)
    if unembeddable:
        log.warning(
            "%d songs left out: their predicted vectors are unusable (e.g. %s)",
            len(unembeddable),
            ", ".join(unembeddable[:5]),
        )

    warm_ids = factorization.song_ids + factorization.valid_song_ids + factorization.test_song_ids
    warm_factors = np.concatenate(
        [
            factorization.song_factors,
            factorization.valid_song_factors,
            factorization.test_song_factors,
        ]
    )
    # A song placed by its audio in the cf space is placed like a track added through the
    # API: with its artist's prior where the artist is known (training.fusion).
    hybrid = load_hybrid(*hybrid_dirs) if hybrid_dirs else None
    artist_of = dict(zip(songs["song_id"], songs["artist"], strict=True))
    cf_content_vectors = (
        hybrid.place(predicted_factors, [artist_of[song_id] for song_id in content_ids])[0]
        if hybrid
        else predicted_factors
    )
    listens = read_listens(root / LISTENS_FILE)
    cf = place_songs(
        np.asarray(warm_ids, dtype=object),
        warm_factors,
        listener_counts(listens, warm_ids),
        np.asarray(content_ids, dtype=object),
        cf_content_vectors,
        warm_min_listeners,
    )
    index = CatalogueIndex.build(
        cf.ids.tolist(), cf.vectors, content_ids, content_vectors, settings=index_settings
    )

    _copy_artifact(model_dir, folder / ENCODER_DIR)
    for source, target in zip(hybrid_dirs, (ARTIST_DIR, HYBRID_DIR), strict=False):
        _copy_artifact(source, folder / target)
    index_manifest = index.save(folder / INDEX_DIR)
    maps = {
        "cf": map_space(cf.ids, cf.vectors, index.space("cf").check_vectors),
        "content": map_space(content_ids, content_vectors, index.space("content").check_vectors),
    }
    save_catalogue_map(folder / MAP_FILE, {space: m for space, m in maps.items() if m})
    np.save(folder / USER_FACTORS_FILE, factorization.user_factors, allow_pickle=False)
    (folder / USER_IDS_FILE).write_text(json.dumps(factorization.user_ids))
    listened = has_factors(warm_factors)
    np.save(folder / SONG_FACTORS_FILE, warm_factors[listened], allow_pickle=False)
    listened_ids = [song_id for song_id, keep in zip(warm_ids, listened, strict=True) if keep]
    (folder / SONG_IDS_FILE).write_text(json.dumps(listened_ids))
    listen_counts = write_version_listens(folder, listens, factorization.user_ids, listened_ids)
    del listens
    (folder / TEST_SONGS_FILE).write_text(json.dumps(factorization.test_song_ids))
    (folder / COLD_SONGS_FILE).write_text(json.dumps(cf.predicted_ids))
    songs.to_csv(folder / SONGS_FILE, index=False)
    shutil.copyfile(run_dir / REPORT_FILE, folder / REPORT_FILE)
    for name in report_manifest["files"]:
        if name.startswith(f"{PLOTS_DIR}/"):  # the report's figures, for the web page
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / name, folder / name)
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
            "architecture": encoder.name,
            "placement": "hybrid" if hybrid_dirs else "audio",
            "index": asdict(index_settings),
            "warm_min_listeners": warm_min_listeners,
            "source": lineage["source"],
            "embedded_on": spark_master or "local",
            # what folding a user in needs (factorization.fold_in), and from which catalogue
            # listen on the listens are not in this version (pipeline.registry.listens)
            "wmf": {
                **FoldInRule.from_parameters(factorization.manifest["parameters"]).to_json(),
                "factors": factorization.n_factors,
                "engine": factorization.manifest["parameters"].get("engine"),
            },
            "listens_through": listens_through,
        },
        parents={
            "factorization": factorization.digest,
            f"model:{CONTENT_MODEL}": model_manifest["digest"],
            **{f"model:{path.name}": str(read_manifest(path)["digest"]) for path in hybrid_dirs},
            "report": report_manifest["digest"],
            "index": index_manifest["digest"],
            **({"version": lineage["parent_version"]} if lineage["parent_version"] else {}),
        },
        dataset_fingerprint=factorization.manifest.get("dataset_fingerprint"),
        extra={
            "pipeline": provenance,
            "left_out": dict.fromkeys(unembeddable, "unembeddable: its prediction is unusable"),
            "counts": {
                "catalogue_songs": len(catalogue_ids),
                "cf_songs": len(cf.ids),
                "cf_songs_with_listens": cf.n_at_factors,
                "cf_songs_predicted": len(cf.ids) - cf.n_at_factors,
                "content_songs": len(content_ids),
                "users": len(factorization.user_ids),
                **listen_counts,
            },
            "n_factors": factorization.n_factors,
            # how its factors were fitted (lambda and where it came from, alpha, eps, ...):
            # the next night reuses the lambda (`pipeline.nightly`)
            "factorization": factorization.manifest["parameters"],
            "content_dims": encoder.dims.embedding_dims,
        },
    )


def _hybrid_dirs(models_dir: Path, cnn_digest: str) -> tuple[Path, ...]:
    """`(models/artist, models/hybrid)` of a run whose hybrid fuses this very CNN, `()` for
    a run without a hybrid; `RegistryError` for a hybrid of another CNN."""
    from training.fusion import HYBRID_KIND

    artist, hybrid = models_dir / ARTIST_DIR, models_dir / HYBRID_DIR
    if not (hybrid / MANIFEST_NAME).is_file():
        return ()
    parents = read_manifest(hybrid, kind=HYBRID_KIND)["parents"]
    if parents.get(f"model:{CONTENT_MODEL}") != cnn_digest:
        raise RegistryError(f"{hybrid}: fuses another {CONTENT_MODEL} (train the run again)")
    if parents.get(f"model:{ARTIST_DIR}") != read_manifest(artist)["digest"]:
        raise RegistryError(f"{hybrid}: fuses other artist priors (train the run again)")
    return artist, hybrid


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
