"""How a `VectorIndex` is built: which FAISS kind, and the IVF-PQ knobs for 10M+ catalogues.

One frozen value, filled by the caller (CLI / service settings) and validated here, so a
typo in a factory string fails when the settings are read, not hours into a nightly build.
The factory string's fit to the vectors' dimension (PQ's sub-quantizers must divide it) is
checked again at build, when the dimension is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

IndexChoice = Literal["auto", "exact", "hnsw", "ivfpq"]

DEFAULT_EXACT_THRESHOLD = 100_000
# 16,384 coarse lists (~600 vectors each at 10M) and 25 one-byte sub-quantizers (two of the
# 50 factor dimensions each): 25 bytes a vector, ~0.8 GB a space at 10M with ids and direct
# map. PQ50 gained little recall for twice the bytes and OPQ none on clustered 50-d vectors;
# the figures and what was (and was not) measured at scale are in BENCHMARKS.md.
DEFAULT_IVFPQ_FACTORY = "IVF16384,PQ25"
DEFAULT_NPROBE = 64
DEFAULT_TRAIN_SAMPLE = 300_000
DEFAULT_MEMORY_BUDGET_BYTES = 4 * 2**30

# An optional pre-transform (OPQ / PCA), one IVF coarse quantizer, PQ codes.
_IVFPQ_SHAPE = re.compile(r"^((OPQ|PCAR?)\d+(_\d+)?,)?IVF\d+(_HNSW\d+)?,PQ\d+(x\d+)?$")


@dataclass(frozen=True)
class IndexSettings:
    """Which index to build and how.

    `kind`: "auto" (exact below `exact_threshold` vectors, HNSW at and above it), or one
    kind for any size. `ivfpq_factory`: a FAISS factory string for an IVF index with PQ
    codes (e.g. "IVF16384,PQ25", "OPQ25,IVF16384,PQ25"); `nprobe`: lists scanned per query;
    `train_sample`: vectors drawn (with `seed`) to train the coarse quantizer and the PQ;
    `memory_budget_bytes`: the most one IVF-PQ shard may take (a larger index is split
    into shards searched together). `seed` also fixes the HNSW level draw.
    """

    kind: IndexChoice = "auto"
    exact_threshold: int = DEFAULT_EXACT_THRESHOLD
    ivfpq_factory: str = DEFAULT_IVFPQ_FACTORY
    nprobe: int = DEFAULT_NPROBE
    train_sample: int = DEFAULT_TRAIN_SAMPLE
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in get_args(IndexChoice):
            raise ValueError(f"kind must be one of {get_args(IndexChoice)}, got {self.kind!r}")
        for name in ("exact_threshold", "nprobe", "train_sample", "memory_budget_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.ivfpq_factory, str) or not _IVFPQ_SHAPE.match(self.ivfpq_factory):
            raise ValueError(
                f"ivfpq_factory must be a FAISS factory string for an IVF index with PQ codes,"
                f" like 'IVF16384,PQ25' or 'OPQ25,IVF16384,PQ25'; got {self.ivfpq_factory!r}"
            )

    def kind_for(self, n_vectors: int) -> Literal["exact", "hnsw", "ivfpq"]:
        """The kind to build for `n_vectors` vectors."""
        if self.kind != "auto":
            return self.kind
        return "hnsw" if n_vectors >= self.exact_threshold else "exact"
