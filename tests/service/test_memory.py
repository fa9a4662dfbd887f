"""glibc hands a service's freed memory back to the OS when `service.memory` asks, and
oneDNN keeps a bounded number of compiled kernels, whatever the lengths of the uploads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.memory import give_back_free_memory, tune_allocator

# Run in a child process: the caches' capacity is read at a process's first convolution,
# which the test process has long passed. Prints the MiB that 300 lengths of clip add.
_EMBED_LENGTHS = """
import sys
from pathlib import Path
from service.memory import bound_kernel_caches, give_back_free_memory, tune_allocator
tune_allocator()
if sys.argv[1] == "bounded":
    bound_kernel_caches()
import torch
from training.encoders import build_encoder
torch.set_num_threads(1)
encoder = build_encoder("dieleman").eval()
def resident_mib():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))
def embed(lengths):
    with torch.inference_mode():
        for frames in lengths:
            encoder.embed_pooled(encoder.pooled_mel(torch.ones(1, 128, frames)))
embed(range(300, 320))
give_back_free_memory()
before = resident_mib()
embed(range(320, 620))
give_back_free_memory()
print(resident_mib() - before)
"""


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


def _growth_mib(caches: str) -> float:
    command = [sys.executable, "-c", _EMBED_LENGTHS, caches]
    root = Path(__file__).parents[2]
    return float(
        subprocess.run(command, capture_output=True, text=True, check=True, cwd=root).stdout
    )


def test_clips_of_every_length_leave_a_bounded_kernel_cache_behind() -> None:
    # oneDNN's default caches keep a compiled kernel per input length: some 9 MiB per 100.
    assert _growth_mib("default") > 10.0
    assert _growth_mib("bounded") < 3.0
