"""CatalogueIndex: cosine for song similarity, inner product for users, both spaces in step."""

from __future__ import annotations

import numpy as np
import pytest

from artifacts.manifest import ArtifactError
from index.spaces import CatalogueIndex
from index.vector_index import UnknownIdError


@pytest.fixture()
def catalogue() -> dict:
    """300 warm songs in both spaces (cf = WMF factors, content = predictions, 12-d), 20
    more with content vectors only. song-0 is very popular (a huge cf norm) and leans
    towards song-1, so a user at song-1 is recommended song-0 but finds song-1 most similar."""
    rng = np.random.default_rng(0)
    cf_vectors = rng.standard_normal((300, 12)).astype(np.float32)
    cf_vectors[0] = 8.0 * (cf_vectors[0] + cf_vectors[1])
    content_vectors = rng.standard_normal((320, 12)).astype(np.float32)
    cf_ids = [f"song-{i}" for i in range(300)]
    content_ids = cf_ids + [f"no-cf-{i}" for i in range(20)]
    return {
        "cf_ids": cf_ids,
        "cf_vectors": cf_vectors,
        "content_ids": content_ids,
        "content_vectors": content_vectors,
        "user": cf_vectors[1].copy(),
    }


def build(catalogue: dict, **options) -> CatalogueIndex:
    return CatalogueIndex.build(
        catalogue["cf_ids"],
        catalogue["cf_vectors"],
        catalogue["content_ids"],
        catalogue["content_vectors"],
        **options,
    )


def ranked(ids: list[str], vectors: np.ndarray, query: np.ndarray, metric: str, k: int) -> list:
    if metric == "cosine":
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        query = query / np.linalg.norm(query)
    return [ids[i] for i in np.argsort(-(vectors @ query), kind="stable")[:k]]


def test_similarity_is_cosine_and_recommendation_is_inner_product(catalogue):
    index = build(catalogue)
    user = catalogue["user"]
    recommended = index.recommend(user, 10)
    assert [song for song, _ in recommended] == ranked(
        catalogue["cf_ids"], catalogue["cf_vectors"], user, "ip", 10
    )
    assert recommended[0][0] == "song-0"
    np.testing.assert_allclose(
        recommended[0][1], float(user @ catalogue["cf_vectors"][0]), rtol=1e-5
    )

    similar = index.similar(user, 10, "cf")
    assert [song for song, _ in similar] == ranked(
        catalogue["cf_ids"], catalogue["cf_vectors"], user, "cosine", 10
    )
    assert similar[0] == ("song-1", pytest.approx(1.0, abs=1e-5))
    assert all(-1.0 <= score <= 1.0 + 1e-6 for _, score in similar)

    content = index.similar(user, 10, "content")
    assert [song for song, _ in content] == ranked(
        catalogue["content_ids"], catalogue["content_vectors"], user, "cosine", 10
    )


def test_similar_to_leaves_the_song_out(catalogue):
    index = build(catalogue)
    found = index.similar_to("song-3", 5, "content")
    assert "song-3" not in [song for song, _ in found] and len(found) == 5
    vector = catalogue["content_vectors"][3]
    assert [song for song, _ in found] == ranked(
        catalogue["content_ids"], catalogue["content_vectors"], vector, "cosine", 6
    )[1:]
    with pytest.raises(UnknownIdError):
        index.similar_to("no-cf-0", 5, "cf")


def test_recommend_only_new_tracks_and_not_already_played(catalogue):
    index = build(catalogue)
    user = catalogue["user"]
    new_tracks = [f"song-{i}" for i in range(250, 300)]
    played = new_tracks[:5]
    found = [song for song, _ in index.recommend(user, 8, only_ids=new_tracks, exclude=played)]
    candidates = [i for i in range(255, 300)]
    assert found == ranked(
        [catalogue["cf_ids"][i] for i in candidates],
        catalogue["cf_vectors"][candidates],
        user,
        "ip",
        8,
    )
    everything = index.recommend(user, 1000, exclude=played)
    assert len(everything) == 295 and not set(played) & {song for song, _ in everything}


def test_add_and_remove_a_cold_track_in_every_space(catalogue):
    index = build(catalogue)
    user = catalogue["user"]
    predicted = 20.0 * (user + 0.3 * np.random.default_rng(2).standard_normal(12))
    index.add_track("cold-1", predicted, predicted)
    assert index.recommend(user, 1) == [("cold-1", pytest.approx(float(user @ predicted), 1e-5))]
    assert index.similar(predicted, 1, "content")[0][0] == "cold-1"
    assert index.similar(predicted, 1, "cf")[0][0] == "cold-1"
    assert "cold-1" in index

    index.remove_track("cold-1")
    assert "cold-1" not in index
    for space in ("cf", "content"):
        assert "cold-1" not in [song for song, _ in index.similar(predicted, 400, space)]
    with pytest.raises(UnknownIdError, match="no space"):
        index.remove_track("cold-1")


def test_a_bad_vector_changes_no_space(catalogue):
    index = build(catalogue)
    with pytest.raises(ValueError, match="NaN"):
        index.add_track("cold-2", np.ones(12), np.full(12, np.nan))
    with pytest.raises(ValueError, match="shape"):
        index.add_track("cold-2", np.ones(12), np.ones(7))
    with pytest.raises(ValueError, match="one vector"):
        index.add_track("cold-2", np.ones((2, 12)), np.ones(12))
    assert "cold-2" not in index
    with pytest.raises(ValueError, match="space must be"):
        index.similar(np.ones(12), 3, "lyrics")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive integer"):
        index.recommend(np.ones(12), 0)


def test_save_load_round_trip(tmp_path, catalogue):
    index = build(catalogue, exact_threshold=100)  # HNSW everywhere: tombstones travel too
    index.add_track("cold-1", np.ones(12), np.ones(12))
    index.remove_track("song-7")
    index.save(tmp_path / "index", parents={"model": "abc"})
    loaded = CatalogueIndex.load(tmp_path / "index")
    user = catalogue["user"]
    assert loaded.recommend(user, 20) == index.recommend(user, 20)
    for space in ("cf", "content"):
        assert loaded.similar(user, 20, space) == index.similar(user, 20, space)
        assert loaded.space(space).ids() == index.space(space).ids()

    build(catalogue).space("content").save(tmp_path / "index" / "content_cosine")
    with pytest.raises(ArtifactError, match="not the index"):
        CatalogueIndex.load(tmp_path / "index")


def test_approximate_recommendations_keep_recall(catalogue):
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((30, 12))
    cf_vectors = centers[rng.integers(0, 30, 5000)] + 0.5 * rng.standard_normal((5000, 12))
    ids = [f"s{i}" for i in range(5000)]
    approximate = CatalogueIndex.build(ids, cf_vectors, ids, cf_vectors, exact_threshold=1000)
    exact = CatalogueIndex.build(ids, cf_vectors, ids, cf_vectors)
    users = rng.standard_normal((50, 12))
    hits = sum(
        len({s for s, _ in approximate.recommend(u, 10)} & {s for s, _ in exact.recommend(u, 10)})
        for u in users
    )
    assert hits / (10 * len(users)) >= 0.95
