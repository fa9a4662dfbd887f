"""`coldstart serve --workers 2` (uvicorn on loopback, real processes): every worker answers
as one process would, a hot swap leaves no worker on the old version, and what is written
through one worker is read through the others (the replicas' design, within one port).

A connection stays with the worker that accepted it, and `/readyz` names that worker's
pid: a test asks every worker by opening connections until each has answered."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.service.test_hot_swap import first_user, warm_song_ids

pytestmark = pytest.mark.slow

WORKERS = 2
POLLS = {"COLDSTART_MODEL_POLL_SECONDS": "0.2", "COLDSTART_CATALOGUE_POLL_SECONDS": "0.2"}
TIMEOUT_S = 60.0
T = TypeVar("T")


def worker_of(client: httpx.Client) -> tuple[int, str]:
    """(pid, model version) of the worker behind `client`'s connection."""
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    return ready.json()["worker"], ready.json()["model_version"]


def on_every_worker(server: Any, ask: Callable[[httpx.Client], T]) -> dict[int, T]:
    """`ask(client)` once per worker, by pid: new connections until every worker took one
    (a connection idle past uvicorn's keep-alive may come back on another worker, so each
    is asked at once, right after `/readyz` named its worker)."""
    answers: dict[int, T] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(answers) < WORKERS:
        assert time.monotonic() < deadline, f"saw workers {sorted(answers)} only"
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            pid, _ = worker_of(client)
            if pid not in answers:
                answers[pid] = ask(client)
    return answers


def eventually(check: Any, what: str, server: Any) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{server.log_tail()}")
        time.sleep(0.1)


@pytest.fixture
def workers(start_server: Any, own_registry: Any, tmp_path: Path) -> Iterator[Any]:
    server = start_server(
        registry_folder=own_registry.folder,
        workers=WORKERS,
        COLDSTART_AUDIO_STORE=str(tmp_path / "audio"),
        **POLLS,
    ).start()
    yield server
    server.stop()


def test_every_worker_answers_as_one_process(
    workers: Any, own_registry: Any, start_server: Any
) -> None:
    single = start_server(registry_folder=own_registry.folder).start()
    user, song = first_user(own_registry), warm_song_ids(own_registry)[0]
    reads = ["/readyz", f"/v1/users/{user}/recommendations?k=20", f"/v1/tracks/{song}/similar?k=20"]

    def answers(client: httpx.Client) -> list[dict[str, Any]]:
        ready, *rest = (client.get(path).json() for path in reads)
        del ready["worker"]
        return [ready, *rest]

    with httpx.Client(base_url=single.url, timeout=30.0) as reference:
        expected = answers(reference)
    assert expected[0]["model_version"] == own_registry.version_id
    for pid, answered in on_every_worker(workers, answers).items():
        assert answered == expected, pid


def test_a_hot_swap_leaves_no_worker_on_the_old_version(
    workers: Any, own_registry: Any, trained_run: Path
) -> None:
    from pipeline.registry import publish_run

    new = publish_run(trained_run, own_registry.folder)
    assert new != own_registry.version_id
    eventually(
        lambda: set(on_every_worker(workers, lambda c: worker_of(c)[1]).values()) == {new},
        "every worker to swap",
        workers,
    )
    song = warm_song_ids(own_registry)[0]
    similar = on_every_worker(workers, lambda c: c.get(f"/v1/tracks/{song}/similar").json())
    assert {answer["model_version"] for answer in similar.values()} == {new}
    # Fresh connections land on any worker: none answers with the old version any more.
    for _ in range(20):
        with httpx.Client(base_url=workers.url, timeout=30.0) as fresh:
            assert worker_of(fresh)[1] == new


def test_writes_through_one_worker_are_read_through_the_others(
    workers: Any, own_registry: Any, audio_assets: Path, auth: dict[str, str]
) -> None:
    audio = audio_assets / "vibe_ace.mp3"
    added = httpx.post(
        f"{workers.url}/v1/tracks",
        files={"file": (audio.name, audio.read_bytes())},
        data={"title": "through one worker", "artist": "test"},
        headers=auth,
        timeout=60.0,
    )
    assert added.status_code == 201, added.text
    track_id = added.json()["id"]
    similar = f"/v1/tracks/{track_id}/similar"

    def statuses() -> set[int]:
        return set(on_every_worker(workers, lambda c: c.get(similar).status_code).values())

    eventually(lambda: statuses() == {200}, "the track in every worker's index", workers)

    # Listens posted through one worker count at once in every worker's recommendations.
    user = first_user(own_registry)
    recommendations = f"/v1/users/{user}/recommendations"
    before = on_every_worker(workers, lambda c: c.get(recommendations).json()["played_songs"])
    body = {"listens": [{"user_id": user, "song_id": track_id, "count": 2}]}
    posted = httpx.post(f"{workers.url}/v1/listens", json=body, headers=auth, timeout=30.0)
    assert posted.status_code == 200, posted.text
    after = on_every_worker(workers, lambda c: c.get(recommendations).json()["played_songs"])
    assert set(before.values()) == {after[pid] - 1 for pid in after}

    deleted = httpx.delete(f"{workers.url}/v1/tracks/{track_id}", headers=auth, timeout=30.0)
    assert deleted.status_code == 204
    eventually(lambda: statuses() == {404}, "the track gone from every worker's index", workers)


def test_every_worker_scrape_counts_every_worker(workers: Any) -> None:
    def sample(text: str, name: str, labels: str = "") -> float:
        prefix = f"{name}{{{labels}}} " if labels else f"{name} "
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    on_every_worker(workers, worker_of)  # both up (the server is ready when one is)
    asked = 12
    for _ in range(asked):  # fresh connections: the answers spread over the workers
        with httpx.Client(base_url=workers.url, timeout=30.0) as fresh:
            assert fresh.get("/v1/tracks/no-such-track").status_code == 404
    scrapes = on_every_worker(workers, lambda c: c.get("/metrics").text)
    missing = 'method="GET",route="/v1/tracks/{track_id}",status="404"'
    for text in scrapes.values():  # whichever worker answers, it counts both workers' answers
        assert sample(text, "coldstart_http_requests_total", missing) == asked
        assert sample(text, "coldstart_decode_workers") == WORKERS  # one each, summed
        assert sample(text, "coldstart_model_loaded") == 1
        assert "coldstart_model_info{" in text  # the answering worker's version
