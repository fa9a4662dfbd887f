"""glibc hands a service's freed memory back to the OS when `service.memory` asks, and
torch keeps no kernel per input length once the service turned oneDNN off."""

from __future__ import annotations

from pathlib import Path

import torch

from service.memory import give_back_free_memory, no_kernel_cache, tune_allocator
from training.encoders import build_encoder


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


def test_clips_of_every_length_leave_nothing_behind() -> None:
    # oneDNN kept a compiled kernel per input length: about 9 MiB per 100 lengths.
    encoder = build_encoder("dieleman").eval()
    was = torch.backends.mkldnn.enabled
    no_kernel_cache()
    try:

        def embed_lengths(lengths: range) -> None:
            with torch.inference_mode():
                for frames in lengths:
                    encoder.embed_pooled(encoder.pooled_mel(torch.ones(1, 128, frames)))

        embed_lengths(range(300, 320))
        give_back_free_memory()
        before = resident_mib()
        embed_lengths(range(320, 620))
        give_back_free_memory()
        assert resident_mib() - before < 3.0
    finally:
        torch.backends.mkldnn.enabled = was
