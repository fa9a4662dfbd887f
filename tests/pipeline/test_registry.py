"""The model registry: what a version holds, atomic publication, refusal of broken versions."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from artifacts.manifest import MANIFEST_NAME, ArtifactError
from pipeline.registry import (
    CURRENT_FILE,
    STAGING_DIR,
    VERSIONS_DIR,
    RegistryError,
    current_version_id,
    list_versions,
    load_current,
    load_version,
    publish_run,
    set_current,
)

pytestmark = pytest.mark.slow


@dataclass
class Published:
    registry: Path
    version_id: str
    database_url: str


@pytest.fixture(scope="module")
def published(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Published:
    registry = tmp_path_factory.mktemp("registry")
    database_url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'catalogue.db'}"
    return Published(registry, publish_run(trained_run, registry, database_url), database_url)


def test_version_holds_what_serving_needs(published: Published, trained_run: Path) -> None:
    from factorization.run import load_factorization

    registry, version_id = published.registry, published.version_id
    assert current_version_id(registry) == version_id == list_versions(registry)[-1]
    version = load_current(registry)
    factorization = load_factorization(trained_run)
    assert version.user_ids == factorization.user_ids
    np.testing.assert_array_equal(version.user_factors, factorization.user_factors)

    # cf space: warm songs at their WMF factors (training songs fitted, held-out folded in).
    cf_ip = version.index._indexes["cf-ip"]  # the raw (not normalised) cf vectors
    for ids, factors in (
        (factorization.song_ids, factorization.song_factors),
        (factorization.test_song_ids, factorization.test_song_factors),
    ):
        for row in (0, len(ids) - 1):
            np.testing.assert_allclose(cf_ip.vector(ids[row]), factors[row], rtol=1e-6)
    # content space: the CNN's prediction for every song, close to the serving path's.
    assert len(version.index.space("content")) == 120
    assert version.manifest["counts"]["cf_songs"] == 120
    assert set(version.manifest["parents"]) == {
        "factorization",
        "model:cnn",
        "model:artist",
        "model:hybrid",
        "report",
        "index",
    }
    # The artist priors and fusion the version places cold songs with: the run's own files.
    for folder, name in (("artist", "artist_priors.npy"), ("hybrid", "fusion.json")):
        copied = version.folder / folder / name
        assert copied.read_bytes() == (trained_run / "models" / folder / name).read_bytes()
    assert version.hybrid is not None
    assert version.report["models"]["cnn"]["map"] > 0
    assert not (registry / STAGING_DIR).exists() or not any((registry / STAGING_DIR).iterdir())


def test_content_vectors_match_the_serving_path(published: Published, tiny_world: Path) -> None:
    from audio.decode import DEFAULT_LIMITS
    from training.inference import embed_audio

    version = load_current(published.registry)
    dims = version.encoder.dims
    content = version.index.space("content")
    assert dims.content_dims is not None
    assert content.dim == dims.embedding_dims == version.manifest["content_dims"] != dims.n_factors
    assert version.index.space("cf").dim == dims.n_factors
    song = sorted((tiny_world / "audio").iterdir())[0]
    served = embed_audio(version.encoder, song, DEFAULT_LIMITS, song.name)
    stored = content.vector(song.stem)  # L2-normalised at build
    cosine = float(served.content @ stored / np.linalg.norm(served.content))
    assert cosine > 0.999  # float16 mel cache at publish vs float32 mel when serving


def test_publish_imports_song_metadata_once(published: Published) -> None:
    from catalogue import open_catalogue
    from pipeline.registry import import_catalogue_songs

    with open_catalogue(published.database_url) as catalogue:
        assert catalogue.count_tracks("warm") == 120
        song = catalogue.list_tracks(limit=1)[0]
        assert song.title and song.artist and song.vector_version == published.version_id
    again = import_catalogue_songs(published.registry, published.version_id, published.database_url)
    assert again == 0  # idempotent


def test_publish_switches_current_atomically_and_rollback(
    trained_run: Path, tmp_path: Path
) -> None:
    first = publish_run(trained_run, tmp_path)
    second = publish_run(trained_run, tmp_path)
    assert first != second and list_versions(tmp_path) == [first, second]
    assert current_version_id(tmp_path) == second
    assert not any(p.name.startswith(f".{CURRENT_FILE}") for p in tmp_path.iterdir())
    set_current(tmp_path, first)
    assert load_current(tmp_path).version_id == first
    with pytest.raises(RegistryError, match="no version"):
        set_current(tmp_path, "20990101T000000Z-0000000000")


def test_failed_publish_leaves_current_and_versions_alone(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from index.spaces import CatalogueIndex

    first = publish_run(trained_run, tmp_path)

    def broken_save(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(CatalogueIndex, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        publish_run(trained_run, tmp_path)
    assert list_versions(tmp_path) == [first] and current_version_id(tmp_path) == first
    assert not any((tmp_path / STAGING_DIR).iterdir())


def test_broken_versions_are_refused(trained_run: Path, tmp_path: Path) -> None:
    version_id = publish_run(trained_run, tmp_path)
    folder = tmp_path / VERSIONS_DIR / version_id

    copy = tmp_path / VERSIONS_DIR / "20990101T000000Z-aaaaaaaaaa"
    shutil.copytree(folder, copy)
    (copy / MANIFEST_NAME).unlink()  # a version without manifest: unfinished
    assert copy.name not in list_versions(tmp_path)
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_version(tmp_path, copy.name)
    with pytest.raises(ArtifactError, match="no manifest.json"):
        set_current(tmp_path, copy.name)
    assert current_version_id(tmp_path) == version_id

    factors = folder / "user_factors.npy"
    np.save(factors, np.zeros((2, 2), np.float32))  # edited after publication
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        load_current(tmp_path)

    (tmp_path / CURRENT_FILE).write_text("../../etc\n")
    with pytest.raises(RegistryError, match="not a version id"):
        load_current(tmp_path)
    (tmp_path / CURRENT_FILE).unlink()
    with pytest.raises(RegistryError, match="coldstart publish"):
        load_current(tmp_path)


def test_a_run_without_a_matching_report_is_refused(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    report = json.loads((run / MANIFEST_NAME).read_text())
    report["parents"]["model:cnn"] = "0" * 64  # the report scored some other model
    (run / MANIFEST_NAME).write_text(json.dumps(report))
    with pytest.raises(RegistryError, match="coldstart evaluate"):
        publish_run(run, tmp_path / "registry")
    assert list_versions(tmp_path / "registry") == []


def test_retention_keeps_the_newest_and_current_and_clears_staging(
    trained_run: Path, tmp_path: Path
) -> None:
    from pipeline.registry import clean_staging, prune_versions

    ids = [publish_run(trained_run, tmp_path) for _ in range(4)]
    set_current(tmp_path, ids[0])  # a rollback to the oldest: it must survive pruning
    assert prune_versions(tmp_path, keep=2) == [ids[1]]
    assert list_versions(tmp_path) == [ids[0], ids[2], ids[3]]
    assert load_current(tmp_path).version_id == ids[0]
    with pytest.raises(ValueError):
        prune_versions(tmp_path, keep=0)

    debris = tmp_path / STAGING_DIR / "version-crashed"
    (debris / "index").mkdir(parents=True)
    (debris / "user_factors.npy").write_bytes(b"half")
    assert clean_staging(tmp_path) == 1 and not any((tmp_path / STAGING_DIR).iterdir())


def test_publish_refuses_to_replace_a_current_it_did_not_start_from(
    trained_run: Path, tmp_path: Path
) -> None:
    first = publish_run(trained_run, tmp_path)
    second = publish_run(trained_run, tmp_path, parent_version=first, source="database")
    manifest = load_current(tmp_path).manifest
    assert manifest["parents"]["version"] == first
    assert manifest["parameters"]["source"] == "database"
    with pytest.raises(RegistryError, match="no longer"):
        publish_run(trained_run, tmp_path, parent_version=first)  # current is `second` now
    assert list_versions(tmp_path) == [first, second]
    assert current_version_id(tmp_path) == second


def test_version_keeps_factors_for_the_next_warm_start(published: Published, trained_run: Path):
    from factorization.run import load_factorization
    from pipeline.registry import load_for_retraining

    factors = load_for_retraining(published.registry, published.version_id)
    factorization = load_factorization(trained_run)
    assert factors.test_song_ids == factorization.test_song_ids
    assert factors.song_ids is not None and factors.song_factors is not None
    assert len(factors.song_ids) == len(factors.song_factors)
    assert set(factors.song_ids) <= set(
        factorization.song_ids + factorization.valid_song_ids + factorization.test_song_ids
    )
    row = factors.song_ids.index(factorization.song_ids[0])
    np.testing.assert_array_equal(factors.song_factors[row], factorization.song_factors[0])
