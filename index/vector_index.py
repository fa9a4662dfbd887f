"""One searchable vector space: string song ids -> FAISS, exact when small, HNSW when large,
IVF-PQ (sharded under a memory budget) when a catalogue outgrows memory.

Why two kinds. Below `exact_threshold` vectors (default 100 000) brute force is both exact
and fast enough (100k x 50 floats is a ~2 ms scan), so the index is an `IndexIDMap2` over an
`IndexFlatIP`. At and above it the index is an `IndexHNSWFlat`: on 1M-5M clustered 50-d
vectors it keeps recall@10 >= 0.97 under 1 ms single-threaded, while IVF-Flat (4096 lists)
never reached 0.95 in the sweep: 0.92 at 0.83 ms for cosine, 0.59 for inner product
(`bench/index.py`, BENCHMARKS.md). IVF builds ~8x faster with half the memory; the nightly
job can afford the HNSW build. The choice is made once, at `build` (`IndexSettings.kind`:
"auto" is the rule above; "ivfpq" is chosen by settings for 10M+ catalogues, see
`index/ivfpq.py`); `add` never switches kinds (the nightly rebuild re-chooses).

Ids. FAISS labels are int64; this class hands out labels from a counter (`_labels[label]`
is the song id, `None` once removed) and keeps `_label_of` for the other direction. A
label is never reused, so a stale label can never name a different song.

Removal without a rebuild. The exact kind removes vectors physically (`remove_ids` on the
id map, O(n) per call, fine below the threshold), the IVF-PQ kind too (through its
direct-map hashtable, O(1) per id). HNSW graphs cannot drop nodes, so the
HNSW kind keeps removed labels as tombstones and filters them *inside* the graph search
with a FAISS `IDSelector` (they still serve as stepping stones, so recall does not drop,
and no over-fetching is needed). Re-adding an existing id removes its old vector first,
so it replaces it. Tombstones cost memory until the next `build`, which compacts them;
`n_tombstones` says how many there are.

Metrics. "cosine" stores L2-normalised vectors and searches by inner product (scores are
cosine similarities in [-1, 1]); "ip" stores raw vectors (scores are dot products, the
WMF preference score of a user for a song).

Threads. Searches run concurrently; `add`/`remove` take a writer lock that waits for
running searches and holds new ones back, so no search ever sees a half-applied change.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

import faiss
import numpy as np
from numpy.typing import ArrayLike

from artifacts.manifest import MANIFEST_NAME, ArtifactError, read_manifest, write_manifest
from index import ivfpq
from index.settings import DEFAULT_EXACT_THRESHOLD, IndexSettings

Metric = Literal["cosine", "ip"]
IndexKind = Literal["exact", "hnsw", "ivfpq"]

ARTIFACT_KIND = "vector-index"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"

__all__ = ["DEFAULT_EXACT_THRESHOLD", "IndexKind", "Metric", "UnknownIdError", "VectorIndex"]
# Graph degree and build beam of the HNSW kind, and its search beam per metric, measured
# in BENCHMARKS.md ("Vector index"): at 5M clustered 50-d vectors, cosine efSearch 128 gives
# recall@10 0.987 at 0.35 ms, inner product (its graph navigates worse) needs 256 for 0.972
# at 0.83 ms (128: 0.934), single-threaded p50.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
DEFAULT_EF_SEARCH: dict[str, int] = {"cosine": 128, "ip": 256}


class UnknownIdError(KeyError):
    """Ids asked for (removed, looked up) are not in the index."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0])


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers (no starvation)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            while self._writing or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._condition.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


def _id_collection(ids: Collection[str], what: str = "ids") -> Collection[str]:
    """Refuse one bare string where a collection of ids is meant (it would iterate chars)."""
    if isinstance(ids, str):
        raise ValueError(f"{what} must be a collection of ids, not the string {ids!r}")
    return ids


def _check_ids(ids: Sequence[str]) -> list[str]:
    """Ids must be non-empty strings, each once: a duplicate would make results ambiguous."""
    ids = list(_id_collection(ids))
    for song_id in ids:
        if not isinstance(song_id, str) or not song_id:
            raise ValueError(f"ids must be non-empty strings, got {song_id!r}")
    if len(set(ids)) != len(ids):
        unique, counts = np.unique(np.asarray(ids, dtype=object), return_counts=True)
        raise ValueError(f"id {unique[counts > 1][0]!r} appears more than once")
    return ids


def _check_metric(metric: str) -> Metric:
    if metric not in get_args(Metric):
        raise ValueError(f"metric must be one of {get_args(Metric)}, got {metric!r}")
    return metric  # type: ignore[return-value]


def _stored_form(vectors: ArrayLike, dim: int, metric: Metric, what: str) -> np.ndarray:
    """`VectorIndex.check_vectors` for a given dimension and metric."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {matrix.shape}")
    if not np.isfinite(matrix).all():
        bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise ValueError(f"{what} row {bad} holds NaN or infinite values")
    if metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if (norms == 0).any():
            bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
            raise ValueError(f"{what} row {bad} is all zeros: it has no direction (cosine)")
        return np.ascontiguousarray(matrix / norms, dtype=np.float32)
    return np.array(matrix, dtype=np.float32, order="C")


def _build_ivfpq(stored: np.ndarray, settings: IndexSettings) -> ivfpq.IVFPQShards:
    """Train on a seeded sample of `stored`, then cut it into as few equal shards as the
    memory budget allows, labels 0..n-1 in row order."""
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(rng.choice(len(stored), min(len(stored), settings.train_sample), False))
    trained = ivfpq.train(stored[sample], settings)
    capacity = ivfpq.shard_capacity(trained, settings.memory_budget_bytes)
    shards = ivfpq.IVFPQShards.empty(trained, capacity, settings.nprobe)
    n_shards = max(1, math.ceil(len(stored) / capacity))
    labels = np.arange(len(stored), dtype=np.int64)
    shards.add_with_ids(stored, labels, shard_size=math.ceil(len(stored) / n_shards))
    return shards


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


class VectorIndex:
    """Nearest neighbours in one space of song vectors; build with `build` or `load`."""

    def __init__(
        self,
        faiss_index: faiss.Index | ivfpq.IVFPQShards,
        metric: Metric,
        kind: IndexKind,
        labels: list[str | None],
        ef_search: int,
        exact_threshold: int,
    ) -> None:
        self._index = faiss_index
        self.metric: Metric = metric
        self.kind: IndexKind = kind
        self.dim: int = faiss_index.d
        self.ef_search = ef_search
        self.exact_threshold = exact_threshold
        self._labels = labels
        self._label_of = {song_id: label for label, song_id in enumerate(labels) if song_id}
        self._tombstones: set[int] = set()
        self._tombstone_selector: faiss.IDSelector | None = None
        if kind == "hnsw":
            self._bury(label for label, song_id in enumerate(labels) if song_id is None)
        self._lock = _ReadWriteLock()

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        vectors: ArrayLike,
        metric: Metric = "cosine",
        *,
        settings: IndexSettings = IndexSettings(),  # noqa: B008 (frozen, so shared safely)
        ef_search: int | None = None,
        hnsw_m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
    ) -> VectorIndex:
        """Index `vectors` `(n_songs, n_dims)` (rows follow `ids`) for `metric`.

        The kind is `settings.kind_for(n_songs)`: by default exact when
        `n_songs < settings.exact_threshold`, HNSW otherwise. `ef_search` (HNSW) defaults
        per metric (`DEFAULT_EF_SEARCH`); `settings.seed` fixes the HNSW level draw and the
        IVF-PQ training sample. An empty build (`vectors` of shape `(0, n_dims)`) is allowed
        for the exact and HNSW kinds: the catalogue may start empty (IVF-PQ must train).
        """
        metric = _check_metric(metric)
        ids = _check_ids(ids)
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] < 1:
            raise ValueError(f"vectors must be 2-D (n_songs, n_dims), got shape {matrix.shape}")
        if matrix.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids for {matrix.shape[0]} vectors")
        dim = matrix.shape[1]
        stored = _stored_form(matrix, dim, metric, "vectors")
        kind: IndexKind = settings.kind_for(len(ids))
        faiss_index: faiss.Index | ivfpq.IVFPQShards
        if kind == "ivfpq":
            faiss_index = _build_ivfpq(stored, settings)
        elif kind == "hnsw":
            faiss_index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            faiss_index.hnsw.efConstruction = ef_construction
            faiss_index.hnsw.rng = faiss.RandomGenerator(settings.seed)
        else:
            faiss_index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index = cls(
            faiss_index,
            metric,
            kind,
            labels=list(ids) if kind == "ivfpq" else [],
            ef_search=ef_search or DEFAULT_EF_SEARCH[metric],
            exact_threshold=settings.exact_threshold,
        )
        if kind != "ivfpq":  # IVF-PQ shards were filled as they were cut
            index._append(ids, stored)
        return index

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of live (searchable) ids."""
        return len(self._label_of)

    def __contains__(self, song_id: object) -> bool:
        return song_id in self._label_of

    @property
    def n_tombstones(self) -> int:
        """Removed or replaced HNSW vectors still held in the graph (0 for other kinds)."""
        return len(self._tombstones)

    @property
    def shards(self) -> ivfpq.IVFPQShards | None:
        """The IVF-PQ shards (sizes, memory, `nprobe`, settable); None for other kinds."""
        return self._index if isinstance(self._index, ivfpq.IVFPQShards) else None

    def ids(self) -> list[str]:
        """The live ids, oldest first (a replaced id counts from its latest add)."""
        with self._lock.reading():
            return [song_id for song_id in self._labels if song_id is not None]

    def vector(self, song_id: str) -> np.ndarray:
        """The stored `(n_dims,)` float32 vector of `song_id` (L2-normalised for cosine;
        for IVF-PQ its decoded PQ code, an approximation)."""
        with self._lock.reading():
            label = self._label_of.get(song_id)
            if label is None:
                raise UnknownIdError(f"id {song_id!r} is not in the index")
            return self._index.reconstruct(label)

    def check_vectors(self, vectors: ArrayLike, what: str = "vectors") -> np.ndarray:
        """Check `(n, n_dims)` vectors and return them as this index stores them.

        Raises `ValueError` on a wrong shape, NaN/infinite values, or (cosine) an all-zero
        row, which has no direction. Returns a new float32 C-ordered array, L2-normalised
        for cosine; callers that update several indexes check everything first with it.
        """
        return _stored_form(vectors, self.dim, self.metric, what)

    def search(
        self,
        queries: ArrayLike,
        k: int,
        *,
        allow: Collection[str] | None = None,
        deny: Collection[str] | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """The `k` best ids per row of `queries` `(n_queries, n_dims)`, best first.

        `allow` restricts the results to those ids (e.g. only new tracks), `deny` leaves
        ids out (e.g. songs the user already played); ids in either that the index does
        not hold are ignored. Returns `ids` (one list per query) and `scores`
        `(n_queries, min(k, n_candidates))` float32, where `scores[i, :len(ids[i])]` are
        the scores of `ids[i]`. A row holds fewer than `k` ids only when fewer candidates
        exist (or, rarely, when a filtered HNSW search runs dry or the lists an IVF-PQ
        search probes hold fewer); padding scores are -inf. IVF-PQ scores are computed on
        the codes (approximate).
        """
        k = _check_k(k)
        matrix = self.check_vectors(queries, "queries")
        for name, given in (("allow", allow), ("deny", deny)):
            if given is not None:
                _id_collection(given, name)
        with self._lock.reading():
            if allow is not None:
                candidates = self._live_labels(allow)
                if deny is not None:
                    candidates = np.setdiff1d(candidates, self._live_labels(deny))
                k = min(k, len(candidates))
                if k and self.kind != "exact" and len(candidates) <= self.exact_threshold:
                    return self._search_among(matrix, candidates, k)
                selector = faiss.IDSelectorBatch(candidates)
            else:
                denied = self._live_labels(deny) if deny is not None else None
                k = min(k, len(self) - (0 if denied is None else len(denied)))
                selector = self._exclusion_selector(denied)
            if k == 0:
                return [[] for _ in range(len(matrix))], np.empty((len(matrix), 0), np.float32)
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, k))
            elif self.kind == "ivfpq":
                params = self._index.search_parameters(selector)
            else:
                params = faiss.SearchParameters(sel=selector) if selector is not None else None
            scores, labels = self._index.search(matrix, k, params=params)
            return self._to_ids(labels), np.where(labels >= 0, scores, -np.inf).astype(np.float32)

    # ---- mutation -----------------------------------------------------------------------

    def add(self, ids: Sequence[str], vectors: ArrayLike) -> None:
        """Add `vectors` `(n_new, n_dims)` under `ids`; an id already present is replaced."""
        ids = _check_ids(ids)
        matrix = self.check_vectors(vectors)
        if len(matrix) != len(ids):
            raise ValueError(f"{len(ids)} ids for {len(matrix)} vectors")
        with self._lock.writing():
            replaced = [self._label_of[song_id] for song_id in ids if song_id in self._label_of]
            self._forget(replaced)
            self._append(ids, matrix)

    def remove(self, ids: Collection[str], *, missing_ok: bool = False) -> int:
        """Remove `ids`; returns how many were present. Unknown ids raise `UnknownIdError`
        (nothing is removed) unless `missing_ok`."""
        _id_collection(ids)
        with self._lock.writing():
            missing = [song_id for song_id in ids if song_id not in self._label_of]
            if missing and not missing_ok:
                raise UnknownIdError(
                    f"{len(missing)} ids are not in the index (e.g. {missing[0]!r})"
                )
            labels = sorted({self._label_of[song_id] for song_id in ids if song_id in self})
            self._forget(labels)
            return len(labels)

    # ---- persistence --------------------------------------------------------------------

    def save(self, folder: Path, parents: dict[str, str] | None = None) -> dict[str, Any]:
        """Write `index.faiss`, `ids.json` (label -> id, null when removed) and the manifest.

        The manifest goes last (an existing one is deleted first), so a crash mid-save
        leaves a folder that `load` refuses instead of a torn index. Returns the manifest.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        with self._lock.reading():
            shards: dict[str, Any] = {}
            if isinstance(self._index, ivfpq.IVFPQShards):
                index_files = self._index.write(folder)
                shards = {
                    "shard_starts": self._index.starts,
                    "shard_capacity": self._index.capacity,
                    "nprobe": self._index.nprobe,
                }
            else:
                faiss.write_index(self._index, str(folder / INDEX_FILE))
                index_files = [INDEX_FILE]
            with open(folder / IDS_FILE, "w") as handle:
                json.dump(self._labels, handle)
            size = len(self)
        return write_manifest(
            folder,
            ARTIFACT_KIND,
            files=[*index_files, IDS_FILE],
            parameters={
                "metric": self.metric,
                "kind": self.kind,
                "dim": self.dim,
                "ef_search": self.ef_search,
                "exact_threshold": self.exact_threshold,
                "size": size,
                **shards,
            },
            parents=parents,
        )

    @classmethod
    def load(cls, folder: Path, *, nprobe: int | None = None) -> VectorIndex:
        """Load a folder written by `save`; its files must match the manifest's sha256.

        `nprobe` (IVF-PQ) overrides the saved number of lists each search scans."""
        folder = Path(folder)
        parameters = read_manifest(folder, kind=ARTIFACT_KIND)["parameters"]
        if parameters.get("kind") not in get_args(IndexKind):
            raise ArtifactError(f"{folder}: unknown index kind {parameters.get('kind')!r}")
        faiss_index: faiss.Index | ivfpq.IVFPQShards
        if parameters["kind"] == "ivfpq":
            faiss_index = ivfpq.IVFPQShards.read(
                folder,
                starts=[int(start) for start in parameters["shard_starts"]],
                capacity=int(parameters["shard_capacity"]),
                nprobe=nprobe or int(parameters["nprobe"]),
            )
        else:
            faiss_index = faiss.read_index(str(folder / INDEX_FILE))
        with open(folder / IDS_FILE) as handle:
            labels = json.load(handle)
        index = cls(
            faiss_index,
            _check_metric(parameters["metric"]),
            parameters["kind"],
            labels=labels,
            ef_search=int(parameters["ef_search"]),
            exact_threshold=int(parameters["exact_threshold"]),
        )
        stored = faiss_index.ntotal
        expected = len(labels) if index.kind == "hnsw" else len(index)
        if stored != expected or len(index) != parameters["size"]:
            raise ArtifactError(f"{folder}: {stored} vectors stored for {len(index)} live ids")
        return index

    # ---- internals ----------------------------------------------------------------------

    def _append(self, ids: list[str], matrix: np.ndarray) -> None:
        first = len(self._labels)
        labels = np.arange(first, first + len(ids), dtype=np.int64)
        if self.kind == "hnsw":
            self._index.add(matrix)  # HNSW numbers vectors 0..ntotal-1: the label counter
        else:
            self._index.add_with_ids(matrix, labels)
        self._labels.extend(ids)
        self._label_of.update(zip(ids, labels.tolist(), strict=True))

    def _forget(self, labels: list[int]) -> None:
        if not labels:
            return
        for label in labels:
            del self._label_of[self._labels[label]]  # type: ignore[arg-type]
            self._labels[label] = None
        if self.kind == "hnsw":
            self._bury(labels)
        else:
            self._index.remove_ids(np.asarray(labels, dtype=np.int64))

    def _bury(self, labels: Iterable[int]) -> None:
        self._tombstones.update(labels)
        self._tombstone_selector = (
            faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64))
            if self._tombstones
            else None
        )

    def _live_labels(self, ids: Collection[str]) -> np.ndarray:
        labels = {self._label_of[song_id] for song_id in ids if song_id in self._label_of}
        return np.fromiter(labels, dtype=np.int64, count=len(labels))

    def _exclusion_selector(self, denied: np.ndarray | None) -> faiss.IDSelector | None:
        """Selector accepting every live label not in `denied` (None: accept everything)."""
        excluded = [self._tombstone_selector] if self._tombstone_selector is not None else []
        if denied is not None and len(denied):
            excluded.append(faiss.IDSelectorBatch(denied))
        if not excluded:
            return None
        if len(excluded) == 1:
            return faiss.IDSelectorNot(excluded[0])
        return faiss.IDSelectorNot(faiss.IDSelectorOr(*excluded))

    def _search_among(
        self, matrix: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-k over a small candidate set by its stored vectors (a filtered graph or IVF
        search would miss candidates outside its beam or probed lists)."""
        candidate_vectors = self._index.reconstruct_batch(candidates)
        scores = matrix @ candidate_vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        labels = candidates[np.take_along_axis(top, order, axis=1)]
        return self._to_ids(labels), np.take_along_axis(top_scores, order, axis=1)

    def _to_ids(self, labels: np.ndarray) -> list[list[str]]:
        return [[self._labels[label] for label in row if label >= 0] for row in labels.tolist()]
