"""The version's 2-D map: a linear projection fitted once, that places a new vector exactly
as it placed the catalogue's; a deterministic, capped sample of songs; files without
pickle that the version's manifest covers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA

from artifacts.manifest import ArtifactError
from index.vector_index import VectorIndex
from pipeline.registry.catalogue_map import (
    MAP_FILE,
    MAP_MAX_POINTS,
    SpaceMap,
    load_catalogue_map,
    map_space,
    save_catalogue_map,
)


def catalogue(n_songs: int, dims: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Songs in three clusters with a popularity-like spread of norms."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, dims)) * 3
    vectors = centres[rng.integers(0, 3, n_songs)] + rng.standard_normal((n_songs, dims))
    vectors *= rng.uniform(0.2, 5.0, (n_songs, 1))
    return [f"song-{i:05d}" for i in range(n_songs)], vectors.astype(np.float32)


def fitted(ids: list[str], vectors: np.ndarray) -> tuple[SpaceMap, VectorIndex]:
    index = VectorIndex.build(ids, vectors, "cosine")
    space_map = map_space(ids, vectors, index.check_vectors)
    assert space_map is not None
    return space_map, index


def test_a_new_vector_lands_where_the_catalogue_s_songs_did() -> None:
    ids, vectors = catalogue(300, 16)
    space_map, index = fitted(ids, vectors)
    assert space_map.mean.shape == (16,) and space_map.components.shape == (2, 16)
    assert space_map.points.shape == (300, 2) and space_map.points.dtype == np.float32
    assert sorted(space_map.ids) == ids and space_map.n_songs == 300
    assert space_map.explained[0] >= space_map.explained[1] > 0
    assert space_map.explained.sum() <= 1

    # The same two axes as PCA of the stored (L2-normalised) vectors, up to each axis' sign.
    normalised = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    reference = PCA(n_components=2, svd_solver="full").fit(normalised.astype(np.float64))
    rows = [ids.index(song_id) for song_id in space_map.ids]
    signs = np.sign(np.sum(reference.components_ * space_map.components, axis=1))
    np.testing.assert_allclose(
        space_map.points, reference.transform(normalised[rows]) * signs, atol=1e-5
    )

    # A song's stored vector, as the service reads it back from the index, lands on its point;
    # so does a new vector in the same direction at another norm (a cosine space).
    for position in (0, 150, 299):
        song_id = space_map.ids[position]
        expected = space_map.points[position]
        np.testing.assert_allclose(space_map.project(index.vector(song_id)[None])[0], expected)
        louder = index.check_vectors(vectors[ids.index(song_id)][None] * 7.5)
        np.testing.assert_allclose(space_map.project(louder)[0], expected, atol=1e-5)

    # A vector the fit never saw goes through the same affine map as every song.
    unseen = index.check_vectors(np.random.default_rng(9).standard_normal((4, 16)))
    np.testing.assert_allclose(
        space_map.project(unseen), reference.transform(unseen.astype(np.float64)) * signs, atol=1e-5
    )


def test_a_big_catalogue_is_drawn_by_a_fixed_sample() -> None:
    ids, vectors = catalogue(MAP_MAX_POINTS + 700, 4)
    space_map, _ = fitted(ids, vectors)
    assert len(space_map.ids) == MAP_MAX_POINTS == space_map.points.shape[0]
    assert space_map.n_songs == MAP_MAX_POINTS + 700

    # The same songs whatever the catalogue's order, and a song kept by the next version
    # stays on its map when others come and go.
    order = np.random.default_rng(1).permutation(len(ids))
    shuffled, _ = fitted([ids[i] for i in order], vectors[order])
    assert shuffled.ids == space_map.ids
    grown_ids, grown_vectors = catalogue(MAP_MAX_POINTS + 1400, 4)
    grown, _ = fitted(grown_ids, grown_vectors)
    kept = set(space_map.ids) & set(grown.ids)
    assert len(kept) > 0.6 * MAP_MAX_POINTS
    assert [song_id for song_id in grown.ids if song_id in set(ids)] == space_map.ids[: len(kept)]


def test_too_few_songs_have_no_map() -> None:
    ids, vectors = catalogue(2, 8)
    index = VectorIndex.build(ids, vectors, "cosine")
    assert map_space(ids, vectors, index.check_vectors) is None
    with pytest.raises(ValueError, match="all zeros"):  # the index's rule refuses it, as ever
        map_space([*ids, "silent"], np.vstack([vectors, np.zeros((1, 8))]), index.check_vectors)


def test_saved_without_pickle_and_checked_when_loaded(tmp_path: Path) -> None:
    cf_ids, cf_vectors = catalogue(50, 16)
    content_ids, content_vectors = catalogue(40, 32, seed=3)
    maps = {"cf": fitted(cf_ids, cf_vectors)[0], "content": fitted(content_ids, content_vectors)[0]}
    path = tmp_path / MAP_FILE
    save_catalogue_map(path, maps)
    loaded = load_catalogue_map(path)  # np.load(..., allow_pickle=False) inside
    assert set(loaded) == {"cf", "content"}
    for space, space_map in maps.items():
        assert loaded[space].ids == space_map.ids and loaded[space].n_songs == space_map.n_songs
        for name in ("mean", "components", "explained", "points"):
            np.testing.assert_array_equal(getattr(loaded[space], name), getattr(space_map, name))

    with np.load(path, allow_pickle=False) as arrays:
        broken = {name: arrays[name] for name in arrays.files}
    broken["content_points"] = broken["content_points"][:-1]
    np.savez(path, **broken)
    with pytest.raises(ArtifactError, match="content map"):
        load_catalogue_map(path)
    del broken["cf_ids"]
    np.savez(path, **broken)
    with pytest.raises(ArtifactError, match="cf map lacks"):
        load_catalogue_map(path)


@pytest.mark.slow
def test_a_published_version_carries_its_map_and_figures(trained_run: Path, tmp_path: Path) -> None:
    from pipeline.registry import load_version, publish_run

    version = load_version(tmp_path, publish_run(trained_run, tmp_path))
    files = version.manifest["files"]
    assert MAP_FILE in files
    assert set(version.plots) == {"metrics.png", "song_map.png"}
    for name, path in version.plots.items():
        assert f"plots/{name}" in files
        assert path.read_bytes() == (trained_run / "plots" / name).read_bytes()
        assert path.read_bytes().startswith(b"\x89PNG")

    for space in ("cf", "content"):
        space_map = version.catalogue_map[space]
        index = version.index.space(space)
        assert space_map.n_songs == len(index) == len(space_map.ids) == 120
        assert space_map.components.shape == (2, index.dim)
        # Every song drawn is where its stored vector projects.
        stored = np.stack([index.vector(song_id) for song_id in space_map.ids])
        np.testing.assert_allclose(space_map.project(stored), space_map.points, atol=1e-5)

    # The manifest covers the map: a changed byte and the version is refused.
    path = version.folder / MAP_FILE
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=MAP_FILE):
        load_version(tmp_path, version.version_id)
