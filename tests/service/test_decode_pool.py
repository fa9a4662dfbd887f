"""The decode pool on its own: worker processes that answer what the front end answers in
process, keep nothing of the service's environment, and fail one upload at a time.

Faults are real: a null-pointer read (SIGSEGV), a CPU-bound loop ended by its CPU-time
limit, a sleep ended by the wall-clock deadline, an allocation past the address-space
limit, an answer out of protocol (`tests/service/faulty_decode_worker.py`), and SIGKILL
sent from outside while a decode is in flight.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from audio.config import FRONT_END, FrontEndConfig
from audio.decode import DecodeLimits
from audio.errors import AudioError
from audio.frontend import ModelInput, read_model_input
from service.decode_pool import DecodePool
from service.decode_worker import DecodeWorkerLimits
from service.metrics import ServiceMetrics
from training.encoders.samplecnn import WAVEFORM_FRONT_END

MAX_UPLOAD = 3_000_000
LIMITS = DecodeLimits(max_bytes=MAX_UPLOAD)
FAULTY_WORKER = (sys.executable, "-m", "tests.service.faulty_decode_worker")


def make_pool(
    command: tuple[str, ...] | None = None, **limits: float
) -> tuple[DecodePool, ServiceMetrics]:
    metrics = ServiceMetrics()
    worker_limits = DecodeWorkerLimits(**limits)  # type: ignore[arg-type]
    if command is None:
        pool = DecodePool(worker_limits, MAX_UPLOAD, metrics)
    else:
        pool = DecodePool(worker_limits, MAX_UPLOAD, metrics, command)
    pool.start()
    return pool, metrics


@pytest.fixture
def pool_of(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., tuple[DecodePool, ServiceMetrics]]]:
    pools: list[DecodePool] = []

    def start(
        command: tuple[str, ...] | None = None, **limits: float
    ) -> tuple[DecodePool, ServiceMetrics]:
        pool, metrics = make_pool(command, **limits)
        pools.append(pool)
        return pool, metrics

    yield start
    for pool in pools:
        for pid in pool.pids():  # a test may leave a worker stopped
            os.kill(pid, signal.SIGCONT)
        pool.close()


def failures(metrics: ServiceMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "coldstart_decode_worker_failures_total", {"reason": reason}
    )
    assert value is not None
    return value


def gauge(metrics: ServiceMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.parametrize("config", [FRONT_END, WAVEFORM_FRONT_END], ids=["log-mel", "waveform"])
def test_the_pool_answers_what_the_front_end_answers_in_process(
    pool_of: Callable[..., tuple[DecodePool, ServiceMetrics]],
    audio_assets: Path,
    config: FrontEndConfig,
) -> None:
    """Also after the buffer of an answer is reused for the next (and a waveform front end,
    whose output is the samples themselves, keeps its own): each upload's model input stays
    what it was when the later ones come in."""
    pool, _ = pool_of(workers=1)
    answers: list[tuple[ModelInput, ModelInput]] = []
    for name in ("brahms_hungarian_dance_5.flac", "vibe_ace.mp3", "trumpet_loop.ogg") * 2:
        data = (audio_assets / name).read_bytes()
        answers.append(
            (pool.read(config, data, LIMITS, name), read_model_input(data, config, LIMITS, name))
        )
    for pooled, local in answers:
        # the same samples through the same front end, in this process: the same bytes
        np.testing.assert_array_equal(pooled.values, local.values)
        for field in ("seconds", "truncated", "peak_dbfs", "normalised", "container"):
            assert getattr(pooled, field) == getattr(local, field), field


def test_a_worker_runs_without_the_service_environment_and_under_limits(
    pool_of: Callable[..., tuple[DecodePool, ServiceMetrics]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLDSTART_API_KEYS", "a-secret-key-0123456789")
    monkeypatch.setenv("COLDSTART_DATABASE_URL", "postgresql://user:password@db/catalogue")
    pool, metrics = pool_of(workers=2, memory_mb=256)
    assert gauge(metrics, "coldstart_decode_workers") == 2
    for pid in pool.pids():
        environment = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"secret" not in environment and b"password" not in environment
        assert b"COLDSTART" not in environment
        assert "libtorch" not in Path(f"/proc/{pid}/maps").read_text()  # PyAV and numpy only
        limits = {
            line[:26].strip(): line[26:].split()
            for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
        }
        assert limits["Max core file size"][0] == "0"
        address_space = int(limits["Max address space"][0])
        size_now = int(Path(f"/proc/{pid}/statm").read_text().split()[0]) * os.sysconf(
            "SC_PAGE_SIZE"
        )
        assert size_now < address_space <= size_now + 300 * 2**20
        assert os.getsid(pid) != os.getsid(0)  # a terminal's Ctrl-C does not reach it


def test_refused_audio_is_answered_by_its_worker_which_stays(
    pool_of: Callable[..., tuple[DecodePool, ServiceMetrics]],
) -> None:
    pool, metrics = pool_of(workers=1)
    before = pool.pids()
    with pytest.raises(AudioError) as refused:
        pool.read(FRONT_END, b"not audio at all" * 64, LIMITS, "text.mp3")
    assert refused.value.code == "undecodable" and "text.mp3" in str(refused.value)
    with pytest.raises(AudioError) as empty:
        pool.read(FRONT_END, b"", LIMITS, "empty.wav")
    assert empty.value.code == "empty"
    with pytest.raises(AudioError) as large:
        pool.read(FRONT_END, b"\0" * (MAX_UPLOAD + 1), LIMITS, "large.wav")
    assert large.value.code == "too_large"
    assert pool.pids() == before
    assert sum(failures(metrics, r) for r in ("crash", "timeout", "out_of_memory", "protocol")) == 0


# fault -> (the request's code, the metric's reason, what the message names)
FAULTS = {
    "SEGV": ("decoder_failed", "crash", "SIGSEGV"),
    "SPIN": ("decode_timeout", "timeout", "CPU-time limit"),
    "HANG": ("decode_timeout", "timeout", "deadline of 4 s"),
    "ALLOC": ("decode_out_of_memory", "out_of_memory", "memory"),
    "GARBAGE": ("decoder_failed", "protocol", "protocol"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulty_decode_fails_its_upload_alone_and_the_pool_recovers(
    fault: str,
    pool_of: Callable[..., tuple[DecodePool, ServiceMetrics]],
    audio_assets: Path,
) -> None:
    code, reason, named = FAULTS[fault]
    # The deadline ends a hang; a spin must meet its CPU-time limit first, on a busy machine too.
    deadline = 4 if fault == "HANG" else 120
    pool, metrics = pool_of(
        FAULTY_WORKER, workers=2, cpu_seconds=1, deadline_seconds=deadline, memory_mb=512
    )
    first = pool.pids()
    good = (audio_assets / "trumpet_loop.ogg").read_bytes()
    results: list[ModelInput] = []
    errors: list[Exception] = []

    def good_uploads() -> None:  # in flight beside the fault, on the other worker
        for _ in range(6):
            try:
                results.append(pool.read(FRONT_END, good, LIMITS, "good.ogg"))
            except Exception as error:  # noqa: BLE001 (the assertion below names it)
                errors.append(error)

    beside = threading.Thread(target=good_uploads)
    beside.start()
    with pytest.raises(AudioError) as failed:
        pool.read(FRONT_END, fault.encode() + good, LIMITS, "crafted.ogg")
    beside.join()
    assert failed.value.code == code and named in str(failed.value)
    assert errors == [] and len(results) == 6
    assert failures(metrics, reason) == 1
    wait_for(lambda: len(pool.pids()) == 2)
    assert set(pool.pids()) != set(first)  # the faulty worker was replaced
    assert gauge(metrics, "coldstart_decode_workers_started_total") == 3
    assert pool.read(FRONT_END, good, LIMITS, "again.ogg").values.shape[0] == FRONT_END.n_mels


@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGSEGV])
def test_a_worker_killed_mid_decode_fails_that_upload_alone(
    sent: signal.Signals,
    pool_of: Callable[..., tuple[DecodePool, ServiceMetrics]],
    audio_assets: Path,
) -> None:
    pool, metrics = pool_of(workers=2)
    workers = pool.pids()
    for pid in workers:  # both hold their job until the test lets one go on
        os.kill(pid, signal.SIGSTOP)
    data = (audio_assets / "vibe_ace.mp3").read_bytes()
    outcomes: list[ModelInput | AudioError] = []

    def upload() -> None:
        try:
            outcomes.append(pool.read(FRONT_END, data, LIMITS, "vibe_ace.mp3"))
        except AudioError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for(lambda: gauge(metrics, "coldstart_decode_workers_busy") == 2)
    os.kill(workers[0], sent)
    for pid in workers:
        os.kill(pid, signal.SIGCONT)  # the signalled one dies of it, the other decodes
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes if isinstance(o, AudioError)]
    assert len(refused) == 1 and len(outcomes) == 2
    assert refused[0].code == "decoder_failed" and sent.name in str(refused[0])
    assert failures(metrics, "crash") == 1
    wait_for(lambda: len(pool.pids()) == 2)
    assert workers[0] not in pool.pids() and workers[1] in pool.pids()


def test_a_worker_that_died_while_idle_is_replaced_without_failing_an_upload(
    pool_of: Callable[..., tuple[DecodePool, ServiceMetrics]], audio_assets: Path
) -> None:
    pool, metrics = pool_of(workers=1)
    (gone,) = pool.pids()
    os.kill(gone, signal.SIGKILL)
    wait_for(lambda: Path(f"/proc/{gone}/stat").read_text().split()[2] == "Z")  # dead, unreaped
    data = (audio_assets / "trumpet_loop.ogg").read_bytes()
    assert pool.read(FRONT_END, data, LIMITS, "after.ogg").values.shape[0] == FRONT_END.n_mels
    assert failures(metrics, "crash") == 1 and gone not in pool.pids()
