"""A decode worker process: untrusted audio -> checked samples, one job at a time, with limits.

`service.decode_pool` starts `python -m service.decode_worker MEMORY_BYTES` with a minimal
environment (no API keys, no database URL) and talks to it over its stdin and stdout in
frames (`write_frame`, `read_frame`): a JSON header and a raw payload. Each job's header
names the front end config, the decode limits, a label and the CPU seconds it may use; its
payload is the upload's bytes. The answer's header is `{"ok": true, ...}` with what
`audio.decode.decode_usable` found (`peak`, `truncated`, `container`) and its `decode_ms`,
the mono samples (float32) as payload, or `{"ok": false, "code": <AudioError code>,
"reason": ...}`. The service runs the front end (`audio.frontend.model_input_of`) on the
samples: the worker imports PyAV and numpy only, not torch (about 50 MiB at rest instead
of 290). JSON and raw float32 on the way
back, never pickle: a decoder subverted by a crafted file must not be able to send the
service code to run.

Limits, set by the worker on itself: no core files; an address space of what it holds
once its imports are in plus `MEMORY_BYTES` (a decode past it fails its allocation and
answers "decode_out_of_memory"); per job, a CPU-time limit of the job's `cpu_seconds`
beyond what the process has used so far (past it the kernel ends the process with
SIGXCPU). The wall-clock deadline is the pool's to enforce: it kills the worker.
"""

from __future__ import annotations

import faulthandler
import io
import json
import math
import os
import resource
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

# Frame prefix: header length (uint32) and payload length (uint64), big-endian.
_PREFIX = struct.Struct(">IQ")
# Largest header either side accepts: a job's or an answer's JSON is a few hundred bytes.
MAX_HEADER_BYTES = 1 << 16


@dataclass(frozen=True)
class DecodeWorkerLimits:
    """How many decode workers run, and what each may take for one upload: `memory_mb` of
    address space beyond its size at rest (the upload itself, its samples and log-mel
    included), `cpu_seconds` of CPU and `deadline_seconds` of wall-clock time; a worker is
    replaced after `jobs_per_worker` jobs; a request waits at most `wait_seconds` for a
    free worker (then 503 `decoder_unavailable`)."""

    workers: int = 2
    memory_mb: int = 1024
    cpu_seconds: float = 20.0
    deadline_seconds: float = 30.0
    jobs_per_worker: int = 1000
    wait_seconds: float = 60.0


def write_frame(stream: IO[bytes], header: dict[str, Any], payload: bytes | memoryview) -> None:
    """Write one frame (see the module docstring) and flush it."""
    encoded = json.dumps(header).encode()
    stream.write(_PREFIX.pack(len(encoded), len(payload)))
    stream.write(encoded)
    stream.write(payload)
    stream.flush()


def read_frame(
    stream: io.BufferedIOBase, max_payload: int, spare: bytearray | None = None
) -> tuple[dict[str, Any], memoryview] | None:
    """One frame from `stream`: (header, payload); None at a clean end of stream.
    `EOFError` for a frame cut short, `ValueError` for one over the limits or whose header
    is not a JSON object. The payload is read straight into one writable buffer, `spare`
    where it is large enough (its head; `payload.obj` is the buffer): the service takes a
    worker's samples as they are, without a copy, into a buffer it reuses."""
    prefix = stream.read(_PREFIX.size)
    if not prefix:
        return None
    if len(prefix) < _PREFIX.size:
        raise EOFError("the stream ended inside a frame prefix")
    header_bytes, payload_bytes = _PREFIX.unpack(prefix)
    if header_bytes > MAX_HEADER_BYTES or payload_bytes > max_payload:
        raise ValueError(f"a frame of {header_bytes:,} + {payload_bytes:,} bytes is over the limit")
    raw_header = stream.read(header_bytes)
    buffer = (
        spare if spare is not None and len(spare) >= payload_bytes else bytearray(payload_bytes)
    )
    payload = memoryview(buffer)[:payload_bytes]
    if len(raw_header) < header_bytes or stream.readinto(payload) < payload_bytes:
        raise EOFError("the stream ended inside a frame")
    header = json.loads(raw_header)
    if not isinstance(header, dict):
        raise ValueError("a frame header is not a JSON object")
    return header, payload


def _address_space_bytes() -> int:
    """This process's virtual memory size now (Linux: /proc/self/statm, in pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _limit_cpu(seconds: float) -> None:
    """Let this job use `seconds` of CPU beyond what the process has used (RLIMIT_CPU is
    the process's total, in whole seconds)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = math.ceil(used + seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard < 0 else min(soft, hard), hard))


Answer = Callable[[dict[str, Any], bytes], tuple[dict[str, Any], "memoryview | bytes"]]


def answer_job(job: dict[str, Any], data: bytes) -> tuple[dict[str, Any], memoryview | bytes]:
    """One job's answer (header, payload): `decode_usable` of `data` as the job asks."""
    import time

    import numpy as np

    from audio.config import FrontEndConfig
    from audio.decode import DecodeLimits, decode_usable
    from audio.errors import AudioError

    config = FrontEndConfig.from_dict(job["config"])
    limits = DecodeLimits(max_seconds=float(job["max_seconds"]), max_bytes=int(job["max_bytes"]))
    started = time.perf_counter()
    try:
        decoded = decode_usable(data, config, limits, str(job["name"]))
    except AudioError as error:
        return {"ok": False, "code": error.code, "reason": error.reason}, b""
    header = {
        "ok": True,
        "samples": int(decoded.samples.size),
        "peak": decoded.peak,
        "truncated": decoded.truncated,
        "container": decoded.container,
        "decode_ms": (time.perf_counter() - started) * 1e3,
    }
    return header, np.ascontiguousarray(decoded.samples, dtype="<f4").data.cast("B")


def serve(
    memory_bytes: int,
    jobs: io.BufferedIOBase,
    answers: IO[bytes],
    max_job_bytes: int,
    answer: Answer,
) -> None:
    """Answer jobs from `jobs` on `answers` with `answer` until `jobs` ends (see the module
    docstring)."""
    import audio.decode  # noqa: F401  (imported before the address space is measured)

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = _address_space_bytes() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    write_frame(answers, {"ready": True}, b"")
    while (frame := read_frame(jobs, max_job_bytes)) is not None:
        job, data = frame
        _limit_cpu(float(job["cpu_seconds"]))
        try:
            header, payload = answer(job, bytes(data))
        except MemoryError:
            header, payload = (
                {"ok": False, "code": "decode_out_of_memory", "reason": "out of memory"},
                b"",
            )
        write_frame(answers, header, payload)


def main(answer: Answer = answer_job) -> None:
    """`python -m service.decode_worker MEMORY_BYTES MAX_JOB_BYTES`, started by the pool
    (`answer`: how a job is answered; tests run one that misbehaves on purpose).
    Answers go out on a copy of stdout; stdout itself then points at stderr, so that a
    stray print of a library cannot corrupt a frame. A crash prints its Python stack to
    stderr (the service's log)."""
    faulthandler.enable()
    memory_bytes, max_job_bytes = int(sys.argv[1]), int(sys.argv[2])
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    jobs = os.fdopen(sys.stdin.fileno(), "rb", closefd=False)
    serve(memory_bytes, jobs, answers, max_job_bytes, answer)


if __name__ == "__main__":
    main()
