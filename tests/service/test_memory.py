"""glibc hands a service's freed memory back to the OS when `service.memory` asks."""

from __future__ import annotations

from pathlib import Path

from service.memory import give_back_free_memory, tune_allocator


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_freed_memory_goes_back_to_the_os() -> None:
    assert tune_allocator()  # glibc here
    # 200 MiB of buffers below the mmap threshold (the heap's), every other one freed:
    # holes in the middle of the heap that glibc keeps unless trimmed.
    kept, freed = [], []
    for i in range(3200):
        (kept if i % 2 else freed).append(bytearray(64 * 1024))
    del freed
    before = resident_mib()
    give_back_free_memory()
    assert resident_mib() < before - 50
    assert len(kept) == 1600
