"""Uploads decoded out of the service's process: a pool of decode worker processes.

FFmpeg's decoders have a long history of crashes, hangs and runaway allocations on crafted
input; decoded on a thread of the service, one such file would take down the process with
every request in flight. Here each upload is decoded (`audio.decode.decode_usable`) in a
worker process (`service.decode_worker`), one job per worker at a time, under limits; the
service checks the samples it gets back and runs the front end on them
(`audio.frontend.model_input_of`, the same as `read_model_input` in process):

- its environment holds nothing of the service's (no API keys, no database URL): a
  minimal one is given (`_worker_environment`), and it starts in its own session, so a
  terminal's Ctrl-C reaches the service alone, which then closes the pool;
- its address space is capped at its size at rest plus `DecodeWorkerLimits.memory_mb`,
  its CPU time per job at `cpu_seconds` (both set by the worker on itself), and the pool
  kills it when a job runs past `deadline_seconds` of wall-clock time;
- a worker that dies (a crash, a signal, a limit) or answers out of protocol is replaced
  in the background; its request alone gets an `AudioError` ("decoder_failed",
  "decode_timeout" or "decode_out_of_memory", 422 in the service), and every other
  request goes on with the other workers. A worker is also replaced after
  `jobs_per_worker` jobs, so that what a decoder leaks does not pile up.

Why by hand rather than `concurrent.futures.ProcessPoolExecutor` or `pebble`: the first
fails every pending job when one worker dies, neither starts its workers with an
environment of their own (both copy the service's), and both send results back as
pickles, which a subverted worker could use to run code in the service.

The trusted batch paths (`coldstart featurize`, publish, the quality gate) keep decoding in
process: they read the platform's own catalogue, in worker pools of their own, and the
round trip through a pipe would only cost.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from audio.config import FrontEndConfig
from audio.decode import (
    ALLOWED_FORMATS,
    DecodedAudio,
    DecodeLimits,
    check_size,
    check_usable,
    sample_peak,
)
from audio.errors import AUDIO_ERROR_CODES, AudioError, AudioErrorCode
from audio.frontend import ModelInput, model_input_of
from service.decode_worker import DecodeWorkerLimits, read_frame, write_frame
from service.errors import DecoderUnavailable
from service.metrics import DecodeFailureReason, ServiceMetrics

log = logging.getLogger("coldstart.service")

# The checkout holding the packages: what the worker imports, whatever the service's path.
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKER_COMMAND = (sys.executable, "-m", "service.decode_worker")
# A worker that has not said it is ready by then is killed and started again.
_START_SECONDS = 120.0
# Largest answer buffer kept for the next upload (`DecodePool._spare_buffer`): a 30-s
# preview's samples are 2.6 MB; a longer recording's than 95 s (at 22.05 kHz) is not kept,
# so that a burst of whole songs leaves at most 8 MiB resident per upload in flight.
SPARE_BUFFER_BYTES = 8 << 20
# Buffer of each pipe to and from a worker (`_widen`): Linux's default pipe-max-size.
PIPE_BYTES = 1 << 20
# Longest reason text taken from a worker's answer.
_MAX_REASON_CHARS = 300


def _worker_environment() -> dict[str, str]:
    """A worker's whole environment: where Python finds the packages, one thread per
    library, and nothing else of the service's (its keys and database URL stay out)."""
    return {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(_PROJECT_ROOT),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MB of address space per arena
    }


class _WorkerLost(Exception):
    """The worker ended, or was ended, before it answered."""

    def __init__(self, reason: DecodeFailureReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _widen(pipe: Any) -> None:
    """Give `pipe` a buffer of `PIPE_BYTES` where the OS allows it (Linux, up to
    /proc/sys/fs/pipe-max-size): a 30-s upload's samples (2.6 MB) then cross in three
    writes instead of forty of the default 64 KiB, each a wake-up of both processes."""
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:  # a pipe-max-size below it: the default stays
        pass


class _Worker:
    """One decode worker process and its pipes; `run` one job at a time."""

    def __init__(self, command: tuple[str, ...], limits: DecodeWorkerLimits, max_job: int) -> None:
        self.jobs = 0
        self.deadline = limits.deadline_seconds
        self._timed_out = False
        self.process = subprocess.Popen(
            [*command, str(limits.memory_mb * 1024 * 1024), str(max_job)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_environment(),
            cwd="/",
            start_new_session=True,
        )
        for pipe in (self.process.stdin, self._stdout):
            _widen(pipe)
        self._await_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _await_ready(self) -> None:
        timer = threading.Timer(_START_SECONDS, self.kill)
        timer.start()
        try:
            frame = read_frame(self._stdout, 0)
        except (EOFError, ValueError, OSError) as error:
            frame = None
            log.warning("decode worker %d did not start: %s", self.pid, error)
        finally:
            timer.cancel()
        if frame is None or frame[0].get("ready") is not True:
            self.kill()
            raise RuntimeError(f"decode worker exited at start ({self.process.wait()})")

    @property
    def _stdout(self) -> Any:
        assert self.process.stdout is not None
        return self.process.stdout

    def run(
        self, job: dict[str, Any], data: bytes, max_answer: int, spare: bytearray
    ) -> tuple[dict[str, Any], memoryview]:
        """Send one job, wait for its answer (a payload of at most `max_answer` bytes, read
        into `spare` where it fits); `_WorkerLost` if the worker dies, or is killed at its
        deadline, first."""
        assert self.process.stdin is not None
        self.jobs += 1
        timer = threading.Timer(self.deadline, self._kill_for_time)
        timer.start()
        try:
            write_frame(self.process.stdin, job, data)
            frame = read_frame(self._stdout, max_answer, spare)
        except (EOFError, OSError, ValueError) as error:
            raise self._lost(error) from error
        finally:
            timer.cancel()
        if frame is None:
            raise self._lost(EOFError("no answer"))
        return frame

    def _kill_for_time(self) -> None:
        self._timed_out = True
        self.kill()

    def _lost(self, error: Exception) -> _WorkerLost:
        if isinstance(error, ValueError):  # a frame out of protocol: the worker is not trusted
            self.kill()
            return _WorkerLost("protocol", f"the decode worker answered out of protocol ({error})")
        code = self.process.wait()
        if self._timed_out:
            return _WorkerLost("timeout", f"decoding ran past its deadline of {self.deadline:g} s")
        if code == -signal.SIGXCPU:
            return _WorkerLost("timeout", "decoding ran past its CPU-time limit")
        what = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        return _WorkerLost("crash", f"the decoder crashed ({what})")

    @property
    def timed_out(self) -> bool:
        return self._timed_out

    def kill(self) -> None:
        """End the process now (SIGKILL) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Let the worker end by closing its input; kill it if it does not within 5 s."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class DecodePool:
    """`read(config, data, limits, name)`: an upload's `ModelInput`, decoded in a worker
    process (see the module docstring). Thread-safe; `start` before use, `close` at the
    end. `command` runs a worker (tests put a fault-injecting one in its place)."""

    def __init__(
        self,
        limits: DecodeWorkerLimits,
        max_upload_bytes: int,
        metrics: ServiceMetrics,
        command: tuple[str, ...] = WORKER_COMMAND,
    ) -> None:
        self.limits = limits
        self.max_upload_bytes = max_upload_bytes
        self.metrics = metrics
        self.command = command
        self._idle: queue.Queue[_Worker] = queue.Queue()
        # Buffers for the workers' answers, reused (`_spare_buffer`): as many as uploads
        # were ever in the front end at once, each at most `SPARE_BUFFER_BYTES`.
        self._spare: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def start(self) -> None:
        """Start the workers, in parallel, and wait until each is ready."""
        threads = [
            threading.Thread(target=self._add_worker, name="coldstart-decode-start")
            for _ in range(self.limits.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def pids(self) -> list[int]:
        """The process ids of the live workers (for operators and tests)."""
        with self._lock:
            return sorted(worker.pid for worker in self._workers)

    def close(self) -> None:
        """Stop every worker; requests after this get `DecoderUnavailable`."""
        self._closed.set()
        with self._lock:
            workers, self._workers = list(self._workers), set()
        for worker in workers:
            worker.close()
        self.metrics.decode_workers.set(0)

    def read(
        self, config: FrontEndConfig, data: bytes, limits: DecodeLimits, name: str
    ) -> ModelInput:
        """The model input of upload `data` behind `config`, within `limits`; `AudioError`
        for audio the front end refuses or a worker could not decode (see the module
        docstring), `DecoderUnavailable` when no worker comes free in `wait_seconds`."""
        if limits.max_bytes > self.max_upload_bytes:
            raise ValueError(f"{limits.max_bytes:,} bytes is over the pool's jobs' limit")
        check_size(len(data), limits, name)  # refused here without a round trip
        max_samples = round(limits.max_seconds * config.sample_rate)
        job = {
            "config": config.to_dict(),
            "max_seconds": limits.max_seconds,
            "max_bytes": limits.max_bytes,
            "name": name,
            "cpu_seconds": self.limits.cpu_seconds,
        }
        spare = self._spare_buffer()
        worker = self._take()
        self.metrics.decode_workers_busy.inc()
        try:
            header, payload = worker.run(job, data, max_samples * 4, spare)
            decoded, decode_ms = _decoded(header, payload, config, max_samples, name)
        except _WorkerLost as lost:
            self._fail(worker, lost.reason, lost.detail)
            raise AudioError(_FAILURE_CODES[lost.reason], name, lost.detail) from lost
        except AudioError as error:
            if error.code == "decode_out_of_memory":  # its heap may be in pieces: a new one
                self._fail(worker, "out_of_memory", error.reason)
            else:
                self._give_back(worker)
            raise
        finally:
            self.metrics.decode_workers_busy.dec()
        self._give_back(worker)
        audio = model_input_of(decoded, config, name, decode_ms)
        buffer = cast(bytearray, payload.obj)  # `spare`, or the larger one read_frame made
        # A front end whose output is the samples themselves (a waveform's) keeps the buffer.
        if len(buffer) <= SPARE_BUFFER_BYTES and not np.may_share_memory(audio.values, buffer):
            self._spare.put(buffer)
        return audio

    def _spare_buffer(self) -> bytearray:
        """A buffer that an earlier answer's samples were read into, free again (its pages
        already there: a fresh one is 2.6 MB of new pages for a 30-s upload), or an empty
        one that the answer replaces."""
        try:
            return self._spare.get_nowait()
        except queue.Empty:
            return bytearray()

    # ---- workers coming and going -------------------------------------------------------

    def _take(self) -> _Worker:
        """An idle worker that is still alive: one that died while idle (killed from
        outside, the OOM killer) is replaced, not handed an upload to be blamed on."""
        deadline = time.monotonic() + self.limits.wait_seconds
        while not self._closed.is_set():
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise DecoderUnavailable(
                    f"no decode worker came free within {self.limits.wait_seconds:g} s"
                ) from None
            code = worker.process.poll()
            if code is None:
                return worker
            self._fail(worker, "crash", f"the decode worker died while idle ({code})")
        raise DecoderUnavailable("the service is shutting down")

    def _give_back(self, worker: _Worker) -> None:
        if worker.timed_out or worker.jobs >= self.limits.jobs_per_worker:
            self._replace(worker)
        else:
            self._idle.put(worker)

    def _fail(self, worker: _Worker, reason: DecodeFailureReason, detail: str) -> None:
        log.warning("decode worker %d: %s (%s); starting another", worker.pid, detail, reason)
        self.metrics.decode_worker_failures.labels(reason).inc()
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        """Retire `worker` and start its successor in the background."""
        with self._lock:
            self._workers.discard(worker)
            self.metrics.decode_workers.set(len(self._workers))
        worker.kill()
        threading.Thread(
            target=self._add_worker, name="coldstart-decode-start", daemon=True
        ).start()

    def _add_worker(self) -> None:
        """Start one worker and make it available; retry (1 s apart) until one starts or
        the pool closes."""
        while not self._closed.is_set():
            try:
                worker = _Worker(self.command, self.limits, self.max_upload_bytes)
            except (OSError, RuntimeError) as error:
                log.error("could not start a decode worker: %s", error)
                self._closed.wait(1.0)
                continue
            with self._lock:
                if self._closed.is_set():
                    worker.close()
                    return
                self._workers.add(worker)
                self.metrics.decode_workers.set(len(self._workers))
            self.metrics.decode_workers_started.inc()
            self._idle.put(worker)
            return


_FAILURE_CODES: dict[DecodeFailureReason, AudioErrorCode] = {
    "crash": "decoder_failed",
    "protocol": "decoder_failed",
    "timeout": "decode_timeout",
    "out_of_memory": "decode_out_of_memory",
}


def _decoded(
    header: dict[str, Any],
    payload: memoryview,
    config: FrontEndConfig,
    max_samples: int,
    name: str,
) -> tuple[DecodedAudio, float]:
    """A worker's answer -> the `DecodedAudio` (at most `max_samples` samples at the config's
    rate) and its decode milliseconds, or the `AudioError` it reports. Everything in it is
    checked as untrusted (a worker holds attacker-chosen bytes), by the rules the worker
    applied: an answer out of shape is a `_WorkerLost` "protocol", samples that are not
    finite, too short or silent the `AudioError` of that rule."""
    if header.get("ok") is False:
        code = header.get("code")
        if code not in AUDIO_ERROR_CODES:
            raise _WorkerLost("protocol", f"the decode worker answered an unknown code {code!r}")
        raise AudioError(code, name, str(header.get("reason"))[:_MAX_REASON_CHARS])
    try:
        n_samples = int(header["samples"])
        if not 0 < n_samples <= max_samples or len(payload) != n_samples * 4:
            raise ValueError(f"{len(payload):,} bytes as {n_samples:,} samples")
        if header["container"] not in ALLOWED_FORMATS:
            raise ValueError(f"container {header['container']!r}")
        decoded = DecodedAudio(
            samples=np.frombuffer(payload, "<f4"),  # the buffer itself, writable
            sample_rate=config.sample_rate,
            truncated=bool(header["truncated"]),
            peak=float(header["peak"]),
            container=str(header["container"]),
        )
        decode_ms = float(header["decode_ms"])
        if not (np.isfinite(decoded.peak) and decoded.peak >= 0 and np.isfinite(decode_ms)):
            raise ValueError(f"peak {decoded.peak}, {decode_ms} ms")
    except (KeyError, TypeError, ValueError) as error:
        raise _WorkerLost(
            "protocol", f"the decode worker answered out of protocol ({error})"
        ) from error
    sample_peak(decoded.samples, name)  # finite, or AudioError "invalid_samples"
    check_usable(decoded.samples, config, name)
    return decoded, decode_ms
