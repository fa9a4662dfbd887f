"""The live service when a decode worker dies, hangs or runs out of memory mid-upload:
the upload answers a 422 with its own code, the other upload in flight succeeds, the
server stays up, the pool is whole again and `/metrics` counts it.

The workers are the real ones (`service.decode_worker`, children of `coldstart serve`):
the test stops both (SIGSTOP) so that two uploads are held in them, then signals one.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.serving import descendants
from tests.hostile_audio import tone, wav_bytes

pytestmark = pytest.mark.slow

DEADLINE_S = 10  # long enough for the held uploads on a busy machine, short for a test


def decode_worker_pids(root: int) -> list[int]:
    """The decode workers among the descendants of process `root` (read from /proc)."""
    found = []
    for pid in descendants(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if b"service.decode_worker" in command:
            found.append(pid)
    return sorted(found)


def metric(http: httpx.Client, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix!r} not in /metrics")


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def faults_server(start_server: Any) -> Iterator[Any]:
    server = start_server(
        COLDSTART_DECODE_WORKERS="2", COLDSTART_DECODE_DEADLINE_SECONDS=str(DEADLINE_S)
    ).start()
    yield server
    for pid in decode_worker_pids(server.process.pid):
        os.kill(pid, signal.SIGCONT)
    server.stop()


@pytest.fixture(scope="module")
def http(faults_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faults_server.url, timeout=120.0) as client:
        yield client


def two_uploads_held(
    server: Any, http: httpx.Client, audio: bytes
) -> tuple[list[int], Callable[[], list[httpx.Response]]]:
    """Stop both workers, send two uploads, wait until each is in a worker; returns the
    workers' pids and a function that waits for the two answers."""
    workers = decode_worker_pids(server.process.pid)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    answers: list[httpx.Response] = []

    def upload() -> None:
        answers.append(
            httpx.post(
                f"{server.url}/v1/similar",
                files={"file": ("clip.mp3", audio)},
                params={"k": 3},
                timeout=120.0,
            )
        )

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for(lambda: metric(http, "coldstart_decode_workers_busy") == 2)

    def answered() -> list[httpx.Response]:
        for thread in threads:
            thread.join()
        return answers

    return workers, answered


def assert_whole_again(server: Any, http: httpx.Client, gone: int, audio: bytes) -> None:
    wait_for(lambda: metric(http, "coldstart_decode_workers") == 2)  # started and ready
    workers = decode_worker_pids(server.process.pid)
    assert len(workers) == 2 and gone not in workers
    assert http.get("/healthz").status_code == 200
    again = http.post("/v1/similar", files={"file": ("clip.mp3", audio)}, params={"k": 3})
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGSEGV])
def test_a_worker_killed_mid_upload_fails_that_upload_alone(
    sent: signal.Signals, faults_server: Any, http: httpx.Client, audio_assets: Path
) -> None:
    audio = (audio_assets / "vibe_ace.mp3").read_bytes()
    crashes = metric(http, "coldstart_decode_worker_failures_total", 'reason="crash"')
    workers, answered = two_uploads_held(faults_server, http, audio)
    os.kill(workers[0], sent)
    for pid in workers:
        os.kill(pid, signal.SIGCONT)
    statuses = sorted(response.status_code for response in answered())
    assert statuses == [200, 422]
    failed = next(r for r in answered() if r.status_code == 422).json()["error"]
    assert failed["code"] == "audio_decoder_failed" and sent.name in failed["message"]
    assert faults_server.alive()
    assert metric(http, "coldstart_decode_worker_failures_total", 'reason="crash"') == crashes + 1
    assert_whole_again(faults_server, http, workers[0], audio)


def test_a_decode_that_never_returns_times_out_alone(
    faults_server: Any, http: httpx.Client, audio_assets: Path
) -> None:
    audio = (audio_assets / "vibe_ace.mp3").read_bytes()
    timeouts = metric(http, "coldstart_decode_worker_failures_total", 'reason="timeout"')
    workers, answered = two_uploads_held(faults_server, http, audio)
    os.kill(workers[1], signal.SIGCONT)  # the other stays stopped: its decode never returns
    answers = answered()
    assert sorted(response.status_code for response in answers) == [200, 422]
    failed = next(r for r in answers if r.status_code == 422).json()["error"]
    assert failed["code"] == "audio_decode_timeout"
    assert f"deadline of {DEADLINE_S} s" in failed["message"]
    assert (
        metric(http, "coldstart_decode_worker_failures_total", 'reason="timeout"') == timeouts + 1
    )
    assert_whole_again(faults_server, http, workers[0], audio)


def test_an_upload_past_the_memory_limit_is_refused_and_the_service_goes_on(
    start_server: Any, audio_assets: Path
) -> None:
    # 90 s of 16 kHz PCM (2.9 MB) decodes to 8 MB of samples and a log-mel from a 16 MB
    # spectrum: past a worker allowed 24 MB beyond its imports.
    long_upload = wav_bytes(tone(90.0, 16000), 16000)
    server = start_server(COLDSTART_DECODE_WORKERS="1", COLDSTART_DECODE_MEMORY_MB="24").start()
    try:
        with httpx.Client(base_url=server.url, timeout=120.0) as client:
            response = client.post("/v1/similar", files={"file": ("long.wav", long_upload)})
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "audio_decode_out_of_memory"
            assert server.alive()
            assert (
                metric(client, "coldstart_decode_worker_failures_total", 'reason="out_of_memory"')
                == 1
            )
            short = (audio_assets / "vibe_ace.mp3").read_bytes()
            wait_for(lambda: metric(client, "coldstart_decode_workers") == 1)
            assert client.post("/v1/similar", files={"file": ("s.mp3", short)}).status_code == 200
    finally:
        server.stop()
