"""A decode worker that misbehaves on request, for the pool's fault-injection tests.

`python -m tests.service.faulty_decode_worker MEMORY_BYTES MAX_JOB_BYTES` is the real worker
(`service.decode_worker`, its limits included) except for uploads that start with a fault's
name: `SEGV` dereferences a null pointer (a real segmentation fault), `SPIN` burns CPU
until its CPU-time limit ends it, `HANG` sleeps past any deadline, `ALLOC` allocates 64 GiB
(past the address-space limit), `GARBAGE` answers a frame out of protocol. Anything else
is decoded as the service decodes it.
"""

from __future__ import annotations

import ctypes
import sys
import time
from typing import Any

import numpy as np

from service.decode_worker import answer_job, main

FAULTS = ("SEGV", "SPIN", "HANG", "ALLOC", "GARBAGE")


def faulty_answer(job: dict[str, Any], data: bytes) -> tuple[dict[str, Any], memoryview | bytes]:
    if data.startswith(b"SEGV"):
        ctypes.string_at(0)
    elif data.startswith(b"SPIN"):
        while True:
            pass
    elif data.startswith(b"HANG"):
        time.sleep(3600)
    elif data.startswith(b"ALLOC"):
        np.ones(64 << 30, np.uint8)
    elif data.startswith(b"GARBAGE"):
        return {"ok": True, "samples": 10}, b"\x00" * 7
    return answer_job(job, data)


if __name__ == "__main__":
    sys.exit(main(faulty_answer))
