"""Freed memory given back to the OS: glibc's allocator settings and trims for a service
that runs for months.

glibc keeps what a process frees for its next allocation: in up to 8 arenas per core (one
more each time threads contend), and in a heap whose top it trims only when the free space
lies there; and after the first large buffer is freed it raises its mmap threshold, so
later large buffers come from that heap too. A service's resident memory then steps up with
each new peak (a hot swap holds two versions for a moment; a burst of concurrent requests
opens more arenas) and stays there (BENCHMARKS.md: the soak and the fuzz runs). So
`tune_allocator`, at start, before the threads: two arenas, and buffers from 128 KiB
(glibc's default threshold, fixed) mapped and unmapped on their own; `give_back_free_memory`
after a hot swap, once the old version is released: a collection, then `malloc_trim`; and
`trim_free_memory` every `TRIM_EVERY_S` in between (a thread of `service.runtime`), for the
holes that request traffic leaves in the middle of the heap (10-15 MiB a process after 6
minutes of the soak, which only a trim returns; it walks the heap off the GIL in tens of
milliseconds). None does anything where the C library is not glibc (`ctypes` finds no
`mallopt`).

And caches that no trim reaches: torch's oneDNN convolutions compile a kernel for each
input shape they meet and keep it, in oneDNN's primitive cache and in ideep's (each an LRU
of 1,024 entries by default, about 95 KiB per length of clip for `dieleman`: some 50 MiB
per process). A service embeds one upload at a time, of any length, so each new length of
recording grew them for good. `bound_kernel_caches` (at start, before the process's first
convolution: both libraries read the capacity then) keeps `KERNEL_CACHE_ENTRIES` in each:
every layer of an encoder at a few lengths, so that a run of previews of one length
reuses its kernels. Turning oneDNN off instead (torch's own kernels, which keep nothing)
cost every encoder: a 30-s clip's `dieleman` 3.6 against 2.4 ms, `student` 3.3 against
2.0, `samplecnn` 84 against 70 (BENCHMARKS.md, the uploads' CPU).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os

log = logging.getLogger("coldstart.service")

# mallopt(3) parameters (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD_BYTES = 128 * 1024
# Compiled kernels kept per oneDNN cache: `musicnn`'s eight convolutions at four lengths.
KERNEL_CACHE_ENTRIES = 32
# The capacities of oneDNN's primitive cache and of ideep's (torch's oneDNN layer).
KERNEL_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
# Seconds between two trims of the free memory that traffic leaves in glibc's heap.
TRIM_EVERY_S = 60.0


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    library = ctypes.CDLL(name)
    return library if hasattr(library, "mallopt") and hasattr(library, "malloc_trim") else None


def tune_allocator() -> bool:
    """Cap glibc's arenas and fix its mmap threshold (see the module docstring); True if
    the C library took both."""
    libc = _glibc()
    if libc is None:
        return False
    taken = libc.mallopt(_M_ARENA_MAX, ARENAS) == 1
    taken = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and taken
    if not taken:
        log.warning("the C library refused the allocator settings")
    return taken


def bound_kernel_caches(entries: int = KERNEL_CACHE_ENTRIES) -> None:
    """Cap oneDNN's compiled kernels at `entries` per cache (see the module docstring);
    effective only before the process's first convolution. An operator's own setting of
    either variable is kept."""
    for variable in KERNEL_CACHE_VARIABLES:
        os.environ.setdefault(variable, str(entries))


def trim_free_memory() -> None:
    """Return glibc's free pages, wherever they lie in its heap, to the OS."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def give_back_free_memory() -> None:
    """Collect Python's garbage, then `trim_free_memory`."""
    gc.collect()
    trim_free_memory()
