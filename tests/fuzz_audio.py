"""A seeded fuzzed corpus: the real recordings of tests/assets/audio, mutated byte-wise.

`fuzz_corpus(n, seed)` yields `n` `FuzzCase`s, the same ones for the same seed (case `i`
depends on `(seed, i)` alone, so the first 300 of a 2,000-file corpus are the 300-file
corpus). Each case takes one recording as it is (MANIFEST.md) and applies one mutation,
in turn, then a second one, drawn, to about a third of the cases:

- `flip`: 1 to ~3,000 bytes XORed with a non-zero mask, half of the time all of them in
  the first 4 KiB (where the container and codec headers are);
- `truncate`: cut at a random point, half of the time within the first 4 KiB;
- `splice`: the first N bytes of another recording (another container or codec) glued
  onto this one's body from some offset on;
- `duplicate`: a byte range (1 B to 64 KiB) repeated 1 to 8 times and inserted elsewhere;
- `delete`: a byte range (1 B to 64 KiB) cut out;
- `zero`: a byte range set to 0x00 or 0xFF.

Used by the upload routes' fuzz test (tests/service/test_fuzzed_uploads.py) and the
benchmark `bench/fuzz_uploads.py`; `write_corpus` puts a corpus on disk for a run by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets" / "audio"
HEADER_BYTES = 4096
MAX_RANGE_BYTES = 65536
MAX_FLIPS_LOG10 = 3.5
SECOND_MUTATION_P = 0.35


@dataclass(frozen=True)
class FuzzCase:
    """One fuzzed upload: `name` unique in its corpus ("0042-splice-vibe_ace.mp3"),
    `mutation` what was done (offsets and sizes, for a person reproducing it), `filename`
    the recording's own, `data` the mutated bytes."""

    name: str
    mutation: str
    filename: str
    data: bytes


def recordings(folder: Path = ASSETS) -> dict[str, bytes]:
    """Every recording of `folder` (MANIFEST.md aside) by file name, sorted by name."""
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix != ".md"
    }


Mutated = tuple[np.ndarray, str]  # the bytes (uint8), what was done
Mutation = Callable[[np.random.Generator, np.ndarray, Mapping[str, np.ndarray]], Mutated]


def _span(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """A range (start, length) inside `size` bytes, its length log-uniform in 1..64 KiB."""
    length = min(size, int(np.exp(rng.uniform(0.0, np.log(MAX_RANGE_BYTES)))))
    start = int(rng.integers(0, size - length + 1))
    return start, max(length, 1)


def _point(rng: np.random.Generator, size: int) -> int:
    """An offset in `size` bytes, half of the time within the header bytes."""
    high = min(size, HEADER_BYTES) if rng.random() < 0.5 else size
    return int(rng.integers(0, high + 1))


def flip(rng: np.random.Generator, data: np.ndarray, _: Mapping[str, np.ndarray]) -> Mutated:
    if data.size == 0:
        return data, "flip none (empty)"
    count = int(10 ** rng.uniform(0.0, MAX_FLIPS_LOG10))
    in_header = rng.random() < 0.5
    high = min(data.size, HEADER_BYTES) if in_header else data.size
    offsets = rng.integers(0, high, count)
    masks = rng.integers(1, 256, count, dtype=np.uint8)
    out = data.copy()
    np.bitwise_xor.at(out, offsets, masks)  # repeated offsets flip again, as a fuzzer would
    where = "in the header" if in_header else "anywhere"
    return out, f"flip {count} bytes {where}"


def truncate(rng: np.random.Generator, data: np.ndarray, _: Mapping[str, np.ndarray]) -> Mutated:
    cut = _point(rng, data.size)
    return data[:cut], f"truncate at {cut} of {data.size}"


def splice(rng: np.random.Generator, data: np.ndarray, others: Mapping[str, np.ndarray]) -> Mutated:
    donor_name = str(rng.choice(sorted(others)))
    donor = others[donor_name]
    head = int(rng.integers(4, min(donor.size, HEADER_BYTES) + 1))
    body = _point(rng, data.size)
    spliced = np.concatenate([donor[:head], data[body:]])
    return spliced, f"splice the first {head} bytes of {donor_name} onto this from {body}"


def duplicate(rng: np.random.Generator, data: np.ndarray, _: Mapping[str, np.ndarray]) -> Mutated:
    if data.size == 0:
        return data, "duplicate none (empty)"
    start, length = _span(rng, data.size)
    times = int(rng.integers(1, 9))
    at = int(rng.integers(0, data.size + 1))
    copies = np.tile(data[start : start + length], times)
    out = np.concatenate([data[:at], copies, data[at:]])
    return out, f"duplicate {length} bytes from {start} {times}x at {at}"


def delete(rng: np.random.Generator, data: np.ndarray, _: Mapping[str, np.ndarray]) -> Mutated:
    if data.size == 0:
        return data, "delete none (empty)"
    start, length = _span(rng, data.size)
    return np.delete(data, np.s_[start : start + length]), f"delete {length} bytes at {start}"


def zero(rng: np.random.Generator, data: np.ndarray, _: Mapping[str, np.ndarray]) -> Mutated:
    if data.size == 0:
        return data, "zero none (empty)"
    start, length = _span(rng, data.size)
    fill = 0xFF if rng.random() < 0.25 else 0x00
    out = data.copy()
    out[start : start + length] = fill
    return out, f"set {length} bytes at {start} to {fill:#04x}"


MUTATIONS: dict[str, Mutation] = {
    "flip": flip,
    "truncate": truncate,
    "splice": splice,
    "duplicate": duplicate,
    "delete": delete,
    "zero": zero,
}


def fuzz_corpus(
    n: int, seed: int = 0, sources: Mapping[str, bytes] | None = None
) -> Iterator[FuzzCase]:
    """`n` fuzzed uploads of `sources` (default: `recordings()`), deterministic in `seed`
    (see the module docstring)."""
    originals = {
        name: np.frombuffer(data, dtype=np.uint8)
        for name, data in (recordings() if sources is None else sources).items()
    }
    names = sorted(originals)
    kinds = list(MUTATIONS)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        source = names[int(rng.integers(len(names)))]
        others = {name: array for name, array in originals.items() if name != source} or originals
        steps = [kinds[i % len(kinds)]]
        if rng.random() < SECOND_MUTATION_P:
            steps.append(kinds[int(rng.integers(len(kinds)))])
        data = originals[source]
        done = []
        for kind in steps:
            data, what = MUTATIONS[kind](rng, data, others)
            done.append(what)
        yield FuzzCase(
            f"{i:04d}-{'+'.join(steps)}-{source}", "; ".join(done), source, data.tobytes()
        )


def write_corpus(cases: Iterator[FuzzCase], folder: Path) -> list[Path]:
    """Each case as `folder/<name>` (the source's extension kept), and `folder/MUTATIONS.tsv`
    (name, mutation); returns the audio files' paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, lines = [], []
    for case in cases:
        path = folder / case.name
        path.write_bytes(case.data)
        paths.append(path)
        lines.append(f"{case.name}\t{case.mutation}\n")
    (folder / "MUTATIONS.tsv").write_text("".join(lines))
    return paths
