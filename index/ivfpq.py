"""IVF-PQ for catalogues of 10M+ tracks: trained once on a sample, split into shards that
each fit a memory budget, searched together through `faiss.IndexShards`.

Why IVF-PQ. HNSW keeps every float (200 bytes a 50-d vector) plus a graph (~260 bytes at
M=32): 10M songs need ~5 GB per space, and the cf space holds two. IVF-PQ keeps 25-byte
codes; recall is lower (BENCHMARKS.md), the price of fitting one machine's memory.

Removal. Physical, not tombstones: every shard's IVF keeps a hashtable direct map (label ->
list and offset), so `remove_ids` moves one code per removed label instead of scanning the
lists, memory is given back at once, no search pays for a removed-label filter, and
`reconstruct` (the query of "similar to this song") works. The map costs ~48 bytes a
vector, counted in the budget.

Shards. Every shard is a copy of one trained empty index (same coarse centroids, same PQ),
filled with a disjoint, contiguous range of labels, so a shard is found from a label by
bisection, and the merged top-k of the shards equals the top-k one index over all vectors
would give. Labels are appended to the last shard until it holds `capacity` labels (the
most vectors under `memory_budget_bytes`); the next label opens a new shard. Removed
labels free room in their shard that is not reused (labels never are), so no shard ever
exceeds the budget. In one process the shards are searched in parallel threads
(`IndexShards(threaded=True)`); across processes or hosts each shard (or group) would be
served by its own replica and a front merges the per-shard top-k by score, which is what
`IndexShards` does in-process (docs/ARCHITECTURE.md, "Index at 10M+ tracks").
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path

import faiss
import numpy as np

from index.settings import IndexSettings

TRAINED_FILE = "trained.faiss"
# Heap bytes per vector besides its PQ code: its int64 id in the inverted list, and its
# entry in the direct-map hashtable (an unordered_map node and bucket slot, measured ~40-48).
ID_BYTES = 8
DIRECT_MAP_BYTES = 48
# Per inverted list: two std::vectors (codes, ids) and the map's share.
LIST_BYTES = 64


def shard_file(number: int) -> str:
    return f"shard-{number:03d}.faiss"


def train(sample: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """A trained, empty IVF-PQ index for `sample` `(n_train, n_dims)` float32 (already in
    the stored form: L2-normalised for cosine), searched by inner product.

    Raises `ValueError` when the factory string does not fit the dimension or is not an
    IVF index with PQ codes, or when the sample is smaller than the number of lists."""
    dim = sample.shape[1]
    try:
        index = faiss.index_factory(dim, settings.ivfpq_factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1]
        raise ValueError(
            f"ivfpq_factory {settings.ivfpq_factory!r} does not fit {dim}-d vectors: {reason}"
        ) from error
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if not isinstance(ivf, faiss.IndexIVFPQ):
        raise ValueError(f"ivfpq_factory {settings.ivfpq_factory!r} is not an IVF-PQ index")
    if len(sample) < ivf.nlist:
        raise ValueError(
            f"IVF-PQ with {ivf.nlist} lists needs at least {ivf.nlist} training vectors,"
            f" got {len(sample)}"
        )
    ivf.cp.seed = settings.seed
    ivf.pq.cp.seed = settings.seed
    index.train(sample)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    ivf.nprobe = settings.nprobe
    return index


def footprint(trained: faiss.Index) -> tuple[int, int]:
    """(fixed bytes, bytes per vector) of one shard copied from the trained index: the
    fixed part is the trained state itself (coarse centroids, PQ codebooks, pre-transform)
    plus the empty lists; each vector adds its code, its id and its direct-map entry."""
    ivf = faiss.extract_index_ivf(trained)
    fixed = len(faiss.serialize_index(trained)) + ivf.nlist * LIST_BYTES
    return fixed, ivf.code_size + ID_BYTES + DIRECT_MAP_BYTES


def estimate_bytes(trained: faiss.Index, n_vectors: int) -> int:
    """Memory one shard holding `n_vectors` vectors takes."""
    fixed, per_vector = footprint(trained)
    return fixed + n_vectors * per_vector


def shard_capacity(trained: faiss.Index, memory_budget_bytes: int) -> int:
    """The most vectors one shard may hold under `memory_budget_bytes`."""
    fixed, per_vector = footprint(trained)
    capacity = (memory_budget_bytes - fixed) // per_vector
    if capacity < 1:
        raise ValueError(
            f"memory_budget_bytes {memory_budget_bytes:,} is too small: the trained quantizer"
            f" alone takes {fixed:,} bytes and each vector {per_vector}"
        )
    return int(capacity)


class IVFPQShards:
    """Shards of one trained IVF-PQ index over disjoint label ranges, searched together.

    Quacks like the FAISS index `VectorIndex` holds (`d`, `ntotal`, `search`,
    `add_with_ids`, `remove_ids`, `reconstruct`, `reconstruct_batch`), so that class keeps
    one code path for ids, filters and locking."""

    def __init__(
        self,
        trained: bytes | np.ndarray,
        shards: list[faiss.Index],
        starts: list[int],
        capacity: int,
        nprobe: int,
    ) -> None:
        self._trained = np.frombuffer(bytes(trained), dtype=np.uint8)
        self._shards = shards
        self.starts = starts
        self.capacity = capacity
        self.nprobe = nprobe
        probe = faiss.deserialize_index(self._trained)
        self.d: int = probe.d
        self._merged = faiss.IndexShards(self.d, True, False)
        for shard in shards:
            self._merged.add_shard(shard)
            faiss.extract_index_ivf(shard).nprobe = nprobe

    @classmethod
    def empty(cls, trained: faiss.Index, capacity: int, nprobe: int) -> IVFPQShards:
        return cls(faiss.serialize_index(trained), [], [], capacity, nprobe)

    @property
    def n_shards(self) -> int:
        return len(self._shards)

    @property
    def ntotal(self) -> int:
        return sum(shard.ntotal for shard in self._shards)

    def shard_sizes(self) -> list[int]:
        return [shard.ntotal for shard in self._shards]

    def footprint(self) -> tuple[int, int]:
        """(fixed bytes, bytes per vector) of each shard (`footprint` of the trained index)."""
        return footprint(faiss.deserialize_index(self._trained))

    def shard_bytes(self) -> list[int]:
        """The estimated memory of each shard (each is at most the budget)."""
        fixed, per_vector = self.footprint()
        return [fixed + shard.ntotal * per_vector for shard in self._shards]

    def search_parameters(self, selector: faiss.IDSelector | None) -> faiss.SearchParametersIVF:
        return faiss.SearchParametersIVF(nprobe=self.nprobe, sel=selector)

    def search(self, x: np.ndarray, k: int, params: faiss.SearchParameters | None = None):
        """Top-k over every shard, merged by score (inner product: larger is better)."""
        if params is None:
            params = self.search_parameters(None)
        if len(self._shards) == 1:
            return self._shards[0].search(x, k, params=params)
        return self._merged.search(x, k, params=params)

    def add_with_ids(self, x: np.ndarray, labels: np.ndarray, shard_size: int = 0) -> None:
        """Add `x` under increasing `labels` above every label held, filling the last shard
        up to `shard_size` labels (default: `capacity`) before opening the next."""
        shard_size = min(shard_size or self.capacity, self.capacity)
        done = 0
        while done < len(labels):
            if not self._shards or labels[done] - self.starts[-1] >= shard_size:
                self._open_shard(int(labels[done]))
            room = self.starts[-1] + shard_size - int(labels[done])
            stop = done + int(np.searchsorted(labels[done:], labels[done] + room))
            self._shards[-1].add_with_ids(x[done:stop], labels[done:stop])
            done = stop

    def remove_ids(self, labels: np.ndarray) -> int:
        removed = 0
        for number, members in self._by_shard(labels):
            selector = faiss.IDSelectorArray(len(members), faiss.swig_ptr(members))
            removed += self._shards[number].remove_ids(selector)
        return removed

    def reconstruct(self, label: int) -> np.ndarray:
        """The PQ reconstruction of `label` (the stored code decoded: approximate)."""
        return self._shards[self._shard_of(label)].reconstruct(int(label))

    def reconstruct_batch(self, labels: np.ndarray) -> np.ndarray:
        out = np.empty((len(labels), self.d), np.float32)
        order = np.argsort(labels, kind="stable")
        position = 0
        for number, members in self._by_shard(labels[order]):
            rows = order[position : position + len(members)]
            out[rows] = self._shards[number].reconstruct_batch(members)
            position += len(members)
        return out

    def write(self, folder: Path) -> list[str]:
        """Write the trained empty index and every shard; returns the file names."""
        (folder / TRAINED_FILE).write_bytes(self._trained.tobytes())
        files = [TRAINED_FILE]
        for number, shard in enumerate(self._shards):
            faiss.write_index(shard, str(folder / shard_file(number)))
            files.append(shard_file(number))
        return files

    @classmethod
    def read(cls, folder: Path, starts: list[int], capacity: int, nprobe: int) -> IVFPQShards:
        shards = [faiss.read_index(str(folder / shard_file(i))) for i in range(len(starts))]
        return cls((folder / TRAINED_FILE).read_bytes(), shards, starts, capacity, nprobe)

    # ---- internals ----------------------------------------------------------------------

    def _open_shard(self, start: int) -> None:
        shard = faiss.deserialize_index(self._trained)
        faiss.extract_index_ivf(shard).nprobe = self.nprobe
        self._shards.append(shard)
        self.starts.append(start)
        self._merged.add_shard(shard)

    def _shard_of(self, label: int) -> int:
        return bisect.bisect_right(self.starts, int(label)) - 1

    def _by_shard(self, labels: np.ndarray):
        """(shard number, its labels as int64) for sorted `labels`, shard by shard."""
        labels = np.sort(np.asarray(labels, dtype=np.int64))
        bounds = np.searchsorted(labels, self.starts[1:] + [math.inf])
        begin = 0
        for number, end in enumerate(bounds.tolist()):
            if end > begin:
                yield number, np.ascontiguousarray(labels[begin:end])
            begin = end
