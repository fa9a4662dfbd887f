"""VectorIndex: exact = brute force, HNSW within a recall bound, mutation, persistence, abuse."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from artifacts.manifest import ArtifactError
from index.settings import IndexSettings
from index.vector_index import UnknownIdError, VectorIndex


def clustered(n: int, dim: int, seed: int, n_clusters: int = 40) -> np.ndarray:
    """Gaussian-mixture vectors `(n, dim)` float32, like song factors: each cluster (a
    genre) spreads along a few directions of its own, norms vary with popularity."""
    rng = np.random.default_rng(n_clusters)  # the mixture itself, shared by every sample
    centers = 0.4 * rng.standard_normal((n_clusters, dim))
    directions = rng.standard_normal((n_clusters, 8, dim)) / np.sqrt(8)
    rng = np.random.default_rng(seed)
    members = rng.integers(0, n_clusters, n)
    spread = np.einsum("nr,nrd->nd", rng.standard_normal((n, 8)), directions[members])
    vectors = centers[members] + spread + 0.35 * rng.standard_normal((n, dim))
    vectors *= rng.lognormal(0.0, 0.3, (n, 1))
    return vectors.astype(np.float32)


def brute_force(
    vectors: np.ndarray, queries: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of `vectors` per query by numpy: (positions (n_queries, k), scores)."""
    if metric == "cosine":
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def recall_at(found: list[list[str]], expected: list[list[str]]) -> float:
    hits = sum(len(set(f) & set(e)) for f, e in zip(found, expected, strict=True))
    return hits / sum(len(e) for e in expected)


@pytest.fixture(scope="module")
def songs() -> tuple[list[str], np.ndarray]:
    vectors = clustered(2000, 16, seed=1)
    return [f"song-{i}" for i in range(len(vectors))], vectors


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_exact_search_equals_brute_force(songs, metric):
    ids, vectors = songs
    queries = clustered(25, 16, seed=2)
    index = VectorIndex.build(ids, vectors, metric)
    assert index.kind == "exact"
    found, scores = index.search(queries, 10)
    positions, expected_scores = brute_force(vectors, queries, 10, metric)
    assert found == [[ids[p] for p in row] for row in positions]
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_hnsw_recall_against_exact(metric):
    vectors = clustered(50_000, 50, seed=3, n_clusters=200)
    ids = [f"s{i}" for i in range(len(vectors))]
    queries = clustered(200, 50, seed=4, n_clusters=200)
    approximate = VectorIndex.build(
        ids, vectors, metric, settings=IndexSettings(exact_threshold=10_000)
    )
    exact = VectorIndex.build(ids, vectors, metric)
    assert (approximate.kind, exact.kind) == ("hnsw", "exact")
    found, _ = approximate.search(queries, 10)
    expected, _ = exact.search(queries, 10)
    assert recall_at(found, expected) >= 0.95


def test_k_larger_than_the_index_returns_what_there_is():
    vectors = clustered(5, 4, seed=5)
    index = VectorIndex.build(list("abcde"), vectors, "cosine")
    found, scores = index.search(vectors[:2], 50)
    assert [sorted(row) for row in found] == [list("abcde")] * 2
    assert scores.shape == (2, 5) and np.isfinite(scores).all()
    assert -1 not in found[0]


@pytest.mark.parametrize("exact_threshold", [100_000, 100], ids=["exact", "hnsw"])
def test_add_remove_replace_without_rebuild(songs, exact_threshold):
    ids, vectors = songs
    index = VectorIndex.build(
        ids, vectors, "cosine", settings=IndexSettings(exact_threshold=exact_threshold)
    )
    new_vector = clustered(1, 16, seed=6)
    index.add(["new"], new_vector)
    assert index.search(new_vector, 1)[0] == [["new"]]
    assert len(index) == len(ids) + 1

    index.remove(["new", "song-0"])
    assert "new" not in index and len(index) == len(ids) - 1
    found, _ = index.search(np.vstack([new_vector, vectors[:1]]), len(ids))
    assert not {"new", "song-0"} & set(found[0] + found[1])
    assert len(found[0]) == len(ids) - 1 or index.kind == "hnsw"

    replacement = -vectors[5:6]
    index.add(["song-5"], replacement)
    assert len(index) == len(ids) - 1
    np.testing.assert_allclose(
        index.vector("song-5"), replacement[0] / np.linalg.norm(replacement), rtol=1e-6
    )
    assert index.search(replacement, 1)[0] == [["song-5"]]
    assert index.search(vectors[5:6], 3)[0][0][0] != "song-5"
    assert index.n_tombstones == (3 if index.kind == "hnsw" else 0)


def test_removed_ids_are_never_returned_by_hnsw():
    vectors = clustered(3000, 16, seed=7)
    ids = [f"s{i}" for i in range(len(vectors))]
    index = VectorIndex.build(ids, vectors, "ip", settings=IndexSettings(exact_threshold=100))
    removed = set(ids[::2])
    index.remove(removed)
    queries = vectors[::2][:100]  # the removed songs' own vectors: the worst case
    found, scores = index.search(queries, 50)
    assert not removed & {song_id for row in found for song_id in row}
    assert all(len(row) == 50 for row in found) and np.isfinite(scores).all()
    live = [i for i in range(len(ids)) if ids[i] not in removed]
    positions, _ = brute_force(vectors[live], queries, 50, "ip")
    assert recall_at(found, [[ids[live[p]] for p in row] for row in positions]) >= 0.95


@pytest.mark.parametrize("exact_threshold", [100_000, 100], ids=["exact", "hnsw"])
def test_allow_and_deny_filter_like_brute_force(songs, exact_threshold):
    ids, vectors = songs
    index = VectorIndex.build(
        ids, vectors, "ip", settings=IndexSettings(exact_threshold=exact_threshold)
    )
    query = clustered(1, 16, seed=8)
    allowed = list(range(0, 2000, 7))
    denied = allowed[:10]
    found, scores = index.search(
        query, 20, allow=[ids[i] for i in allowed] + ["not-a-song"], deny=[ids[i] for i in denied]
    )
    kept = [i for i in allowed if i not in denied]
    positions, expected_scores = brute_force(vectors[kept], query, 20, "ip")
    assert found == [[ids[kept[p]] for p in positions[0]]]
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)

    best_five = index.search(query, 5)[0][0]
    found, _ = index.search(query, 30, deny=best_five)
    assert not set(found[0]) & set(best_five) and len(found[0]) == 30
    assert index.search(query, 5, allow=["not-a-song"])[0] == [[]]


@pytest.mark.parametrize("exact_threshold", [100_000, 100], ids=["exact", "hnsw"])
def test_save_load_round_trip_gives_identical_results(tmp_path, songs, exact_threshold):
    ids, vectors = songs
    index = VectorIndex.build(
        ids, vectors, "cosine", settings=IndexSettings(exact_threshold=exact_threshold)
    )
    index.remove(ids[:30])
    index.add(["late-1", "song-40"], clustered(2, 16, seed=9))
    queries = clustered(20, 16, seed=10)

    index.save(tmp_path / "cf")
    loaded = VectorIndex.load(tmp_path / "cf")

    assert (loaded.kind, loaded.metric, loaded.dim, len(loaded)) == (
        index.kind,
        index.metric,
        16,
        len(index),
    )
    assert loaded.n_tombstones == index.n_tombstones
    assert loaded.ids() == index.ids()
    for (found, scores), (found_loaded, scores_loaded) in [
        (index.search(queries, 15), loaded.search(queries, 15)),
        (index.search(queries, 5, deny=ids[30:60]), loaded.search(queries, 5, deny=ids[30:60])),
    ]:
        assert found == found_loaded
        np.testing.assert_array_equal(scores, scores_loaded)
    loaded.add(["after-load"], queries[:1])
    assert loaded.search(queries[:1], 1)[0] == [["after-load"]]
    loaded.remove(["after-load", "song-40"])
    assert not {"after-load", "song-40"} & set(loaded.search(queries[:1], 50)[0][0])
    np.testing.assert_array_equal(loaded.vector("song-41"), index.vector("song-41"))


def test_load_refuses_edited_or_unfinished_folders(tmp_path, songs):
    ids, vectors = songs
    VectorIndex.build(ids, vectors, "cosine").save(tmp_path / "index")
    ids_file = tmp_path / "index" / "ids.json"
    ids_file.write_text(json.dumps(list(reversed(json.loads(ids_file.read_text())))))
    with pytest.raises(ArtifactError, match="sha256"):
        VectorIndex.load(tmp_path / "index")
    (tmp_path / "index" / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest"):
        VectorIndex.load(tmp_path / "index")


def test_empty_index_answers_and_grows():
    index = VectorIndex.build([], np.empty((0, 8), np.float32), "cosine")
    found, scores = index.search(np.ones((2, 8)), 3)
    assert found == [[], []] and scores.shape == (2, 0)
    index.add(["first"], np.ones((1, 8)))
    assert index.search(np.ones((1, 8)), 3)[0] == [["first"]]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda index, v: index.search(v[:, :8], 5), "shape"),
        (lambda index, v: index.search(v[0], 5), "shape"),
        (lambda index, v: index.add(["x"], v[:1, :8]), "shape"),
        (lambda index, v: index.add(["x", "y"], v[:1]), "2 ids for 1 vectors"),
        (lambda index, v: index.search(np.where(v[:1] > 0, np.nan, v[:1]), 5), "NaN"),
        (lambda index, v: index.add(["x"], np.full((1, 16), np.inf)), "NaN or infinite"),
        (lambda index, v: index.search(np.zeros((1, 16)), 5), "all zeros"),
        (lambda index, v: index.search(v[:1], 0), "positive integer"),
        (lambda index, v: index.search(v[:1], -3), "positive integer"),
        (lambda index, v: index.search(v[:1], 2.5), "positive integer"),
        (lambda index, v: index.search(v[:1], True), "positive integer"),
        (lambda index, v: index.add(["x", "x"], v[:2]), "more than once"),
        (lambda index, v: index.add([""], v[:1]), "non-empty strings"),
        (lambda index, v: index.add([7], v[:1]), "non-empty strings"),
        (lambda index, v: index.add("x", v[:1]), "not the string"),
        (lambda index, v: index.remove("song-1"), "not the string"),
        (lambda index, v: index.search(v[:1], 3, deny="song-1"), "deny must be a collection"),
    ],
)
def test_hostile_inputs_raise_value_errors(songs, action, message):
    ids, vectors = songs
    index = VectorIndex.build(ids, vectors, "cosine")
    with pytest.raises(ValueError, match=message):
        action(index, vectors)
    assert len(index) == len(ids) and "x" not in index


@pytest.mark.parametrize(
    ("ids", "vectors", "metric", "message"),
    [
        (["a", "b", "a"], np.ones((3, 4)), "cosine", "'a' appears more than once"),
        (["a", "b"], np.ones((3, 4)), "cosine", "2 ids for 3 vectors"),
        (["a", "b"], np.ones(2), "cosine", "2-D"),
        (["a", "b"], np.array([[1.0, np.nan], [1.0, 2.0]]), "ip", "row 0 holds NaN"),
        (["a", "b"], np.array([[1.0, 1.0], [0.0, 0.0]]), "cosine", "row 1 is all zeros"),
        (["a", "b"], np.ones((2, 4)), "l2", "metric must be one of"),
    ],
)
def test_hostile_builds_raise_value_errors(ids, vectors, metric, message):
    with pytest.raises(ValueError, match=message):
        VectorIndex.build(ids, vectors, metric)


def test_unknown_ids_are_refused_whole(songs):
    ids, vectors = songs
    index = VectorIndex.build(ids, vectors, "cosine")
    with pytest.raises(UnknownIdError, match="not in the index"):
        index.remove(["song-1", "ghost"])
    assert "song-1" in index
    assert index.remove(["song-1", "ghost"], missing_ok=True) == 1
    with pytest.raises(UnknownIdError):
        index.vector("ghost")


@pytest.mark.parametrize("exact_threshold", [100_000, 100], ids=["exact", "hnsw"])
def test_concurrent_searches_with_mutations(songs, exact_threshold):
    ids, vectors = songs
    index = VectorIndex.build(
        ids, vectors, "cosine", settings=IndexSettings(exact_threshold=exact_threshold)
    )
    extra = clustered(200, 16, seed=11)
    errors: list[BaseException] = []
    done = threading.Event()

    def search_until_done() -> None:
        try:
            while not done.is_set():
                found, scores = index.search(extra[:8], 10, deny=ids[:5])
                assert all(len(row) == 10 for row in found) and np.isfinite(scores).all()
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    readers = [threading.Thread(target=search_until_done) for _ in range(3)]
    for reader in readers:
        reader.start()
    for i in range(len(extra)):
        index.add([f"extra-{i}"], extra[i : i + 1])
        if i % 2:
            index.remove([f"extra-{i - 1}"])
    done.set()
    for reader in readers:
        reader.join()
    assert not errors, errors
    assert len(index) == len(ids) + len(extra) // 2
    found, _ = index.search(extra[1::2], 1)
    assert found == [[f"extra-{i}"] for i in range(1, len(extra), 2)]
