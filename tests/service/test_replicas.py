"""Two replicas of the service (uvicorn on loopback) on one PostgreSQL catalogue, one
registry and one audio store: a write on one is read on the other, and a hot swap under
load on both fails no request and loses no track."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres import postgres_schema
from tests.service.test_hot_swap import (
    RequestLoop,
    add_track,
    metric,
    post_file,
    similar_ids,
    wait_for_version,
    warm_song_ids,
)

pytestmark = pytest.mark.slow

POLLS = {"COLDSTART_MODEL_POLL_SECONDS": "0.2", "COLDSTART_CATALOGUE_POLL_SECONDS": "0.2"}
SYNC_TIMEOUT_S = 60.0


@pytest.fixture
def shared_database(postgres_admin_url: str) -> Iterator[str]:
    """A URL to a fresh PostgreSQL schema that both replicas use."""
    with postgres_schema(postgres_admin_url, "coldstart_replicas") as url:
        yield url


@pytest.fixture
def replicas(
    start_server: Any, own_registry: Any, shared_database: str, tmp_path: Path
) -> Iterator[tuple[Any, Any]]:
    """Replicas A and B, started together (both migrate and import into the empty
    catalogue at once, as `docker compose up` would have them)."""
    servers = [
        start_server(
            database=shared_database,
            registry_folder=own_registry.folder,
            COLDSTART_AUDIO_STORE=str(tmp_path / "audio"),
            **POLLS,
        )
        for _ in range(2)
    ]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda server: server.start(), servers)
    yield a, b
    for server in servers:
        server.stop()  # before the schema is dropped


def eventually(check: Any, what: str, *servers: Any) -> None:
    """Poll `check()` until it holds (bounded by SYNC_TIMEOUT_S)."""
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            logs = "\n".join(server.log_tail() for server in servers)
            pytest.fail(f"timed out waiting for {what}:\n{logs}")
        time.sleep(0.1)


def track(server: Any, track_id: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/tracks/{track_id}", timeout=30.0)


def placed(server: Any, track_id: str) -> bool:
    response = track(server, track_id)
    return response.status_code == 200 and response.json()["spaces"] == ["cf", "content"]


def neighbours(server: Any, song: str) -> set[str]:
    response = httpx.get(f"{server.url}/v1/tracks/{song}/similar", params={"k": 200}, timeout=30.0)
    assert response.status_code == 200, response.text
    return {hit["id"] for hit in response.json()["results"]}


def post_listens(server: Any, auth: dict[str, str], *listens: tuple[str, str]) -> None:
    body = {"listens": [{"user_id": user, "song_id": song} for user, song in listens]}
    response = httpx.post(f"{server.url}/v1/listens", json=body, headers=auth, timeout=30.0)
    assert response.status_code == 200, response.text
    assert {item["status"] for item in response.json()["results"]} == {"stored"}


def test_a_write_on_one_replica_is_read_on_the_other(
    replicas: Any,
    own_registry: Any,
    shared_database: str,
    audio_assets: Path,
    auth: dict[str, str],
) -> None:
    from catalogue import open_catalogue

    a, b = replicas
    audio = audio_assets / "vibe_ace.mp3"
    added = add_track(a, audio, auth, "Vibe Ace")
    eventually(lambda: placed(b, added), "B to place the track added on A", a, b)

    on_b = track(b, added).json()
    assert on_b["new"] is True and on_b["title"] == "Vibe Ace" and on_b["has_audio"]
    similar = httpx.get(f"{b.url}/v1/tracks/{added}/similar", params={"k": 5}, timeout=30.0)
    assert similar.status_code == 200 and len(similar.json()["results"]) == 5
    for space in ("cf", "content"):
        assert similar_ids(b, audio, space)[0] == added
    warm = warm_song_ids(own_registry)[0]
    assert added in neighbours(b, warm)

    post_listens(a, auth, ("listener-a", added), ("listener-a", warm))
    post_listens(b, auth, ("listener-b", added))  # B knows A's track from the database
    with open_catalogue(shared_database) as catalogue:  # the database B reads
        listens = catalogue.export_listens()
    assert sorted(zip(listens["user_id"], listens["song_id"], strict=True)) == sorted(
        [("listener-a", added), ("listener-a", warm), ("listener-b", added)]
    )

    deleted = httpx.delete(f"{b.url}/v1/tracks/{added}", headers=auth, timeout=30.0)
    assert deleted.status_code == 204
    assert track(a, added).status_code == 404  # the row: at once
    # waited for by the exact lookup of the track's own vector: a neighbour list from the
    # approximate (HNSW) search may leave the track out while the index still holds it
    eventually(
        lambda: httpx.get(f"{a.url}/v1/tracks/{added}/similar", timeout=30.0).status_code == 404,
        "A to drop the track B deleted",
        a,
        b,
    )
    assert added not in neighbours(a, warm)
    assert added not in similar_ids(a, audio, "content")

    # Each replica changed its index for the other's write only; its own came back as no-ops.
    changes = 'coldstart_catalogue_followed_changes_total{change="%s"}'
    assert metric(b, changes % "placed") == 1 and metric(b, changes % "removed") == 0
    assert metric(a, changes % "placed") == 0 and metric(a, changes % "removed") == 1


def test_a_hot_swap_under_load_on_both_replicas_drops_nothing(
    replicas: Any,
    own_registry: Any,
    trained_run: Path,
    audio_assets: Path,
    auth: dict[str, str],
) -> None:
    from pipeline.registry import publish_run

    a, b = replicas
    old = own_registry.version_id
    before_audio = audio_assets / "vibe_ace.mp3"
    during_audio = audio_assets / "speech_librispeech.ogg"
    before = add_track(a, before_audio, auth, "added before the publish")
    eventually(lambda: placed(b, before), "B to place the track added on A", a, b)
    song = warm_song_ids(own_registry)[0]
    upload = audio_assets / "trumpet_loop.ogg"
    requests = {
        f"{name}-{kind}": request
        for name, server in (("a", a), ("b", b))
        for kind, request in (
            (
                "similar-track",
                lambda client, url=server.url: client.get(
                    f"{url}/v1/tracks/{before}/similar", params={"k": 10}
                ),
            ),
            ("similar-upload", post_file(f"{server.url}/v1/similar", upload, k=10)),
        )
    }
    with RequestLoop(b, requests) as loop:
        loop.wait_until(lambda answers: len(answers) >= 2, "answers from the old version")
        new = publish_run(trained_run, own_registry.folder)
        during = add_track(a, during_audio, auth, "added while the replicas swap")
        loop.wait_until(
            lambda answers: sum(answer.version == new for answer in answers) >= 2,
            "the new version on both replicas",
        )
    answers = [answer for thread in loop.answers.values() for answer in thread]
    assert {answer.status for answer in answers} == {200}
    for name, thread in loop.answers.items():  # each thread: old ... old, new ... new
        versions = [answer.version for answer in thread]
        switch = versions.index(new)
        assert switch >= 2 and set(versions[:switch]) == {old}, name
        assert set(versions[switch:]) == {new}, name

    for server in (a, b):
        wait_for_version(server, new)
        for track_id, audio in ((before, before_audio), (during, during_audio)):
            eventually(
                lambda server=server, track_id=track_id: placed(server, track_id),
                f"{track_id} on {server.url}",
                a,
                b,
            )
            assert track(server, track_id).json()["new"] is True
            assert similar_ids(server, audio, "content")[0] == track_id
        assert {before, during} <= neighbours(server, song)
        assert metric(server, "coldstart_model_swap_failures_total") == 0


# ---- in process: two runtimes on one catalogue, followed by hand ---------------------------


@pytest.fixture
def two_runtimes(own_registry: Any, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Runtimes A and B, started, on one SQLite catalogue and audio store (processes on one
    machine share a file as replicas share PostgreSQL); nothing polls by itself."""
    from service.metrics import ServiceMetrics
    from service.runtime import Runtime
    from service.settings import Settings

    settings = Settings(
        registry=own_registry.folder,
        database_url=f"sqlite:///{tmp_path / 'catalogue.db'}",
        model_poll_seconds=0,
        catalogue_poll_seconds=0,
    )
    a, b = Runtime(settings, ServiceMetrics()), Runtime(settings, ServiceMetrics())
    a.start()
    b.start()
    yield a, b
    a.close()
    b.close()


def in_both_spaces(runtime: Any, track_id: str) -> bool:
    index = runtime.require_version().index
    return track_id in index.space("cf") and track_id in index.space("content")


def test_a_track_whose_vector_never_comes_is_embedded_by_the_follower(
    two_runtimes: Any, audio_assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.follower
    from catalogue.vectors import track_vectors

    a, b = two_runtimes
    audio = audio_assets / "trumpet_loop.ogg"
    a.add_track(audio.read_bytes(), audio.name, "Trumpet", "", "via-a")
    assert b.follow_catalogue() == 1 and in_both_spaces(b, "via-a") and b.is_new("via-a")
    assert a.follow_catalogue() == 0  # its own write

    # A replica that died between the row and the vector: only the row and audio exist.
    a.catalogue.add_track("orphan", "Orphan", audio=audio.read_bytes(), audio_ext="ogg")
    version_id = b.require_version().version_id
    assert b.follow_catalogue() == 0 and not in_both_spaces(b, "orphan")  # waits for it
    monkeypatch.setattr(service.follower, "VECTOR_GRACE_S", 0.0)
    b.follow_catalogue()  # overdue: embedded from the stored audio, and stored
    assert set(track_vectors(b.catalogue, version_id, ["orphan"])) == {"orphan"}
    assert b.follow_catalogue() == 1 and in_both_spaces(b, "orphan")
    assert a.follow_catalogue() == 1 and in_both_spaces(a, "orphan")  # A uses the stored one

    b.delete_track("via-a")
    assert a.follow_catalogue() == 1 and not in_both_spaces(a, "via-a")
    assert not a.is_new("via-a")


def test_a_track_added_while_the_other_replica_prepares_a_swap_reaches_the_new_version(
    two_runtimes: Any, own_registry: Any, trained_run: Path, audio_assets: Path
) -> None:
    from pipeline.registry import publish_run

    a, b = two_runtimes
    audio = audio_assets / "vibe_ace.mp3"
    new_id = publish_run(trained_run, own_registry.folder)
    place_cold_tracks = b.cold_tracks.place

    def add_on_a_after_b_read_the_catalogue(*args: Any) -> Any:
        if "late" not in a.catalogue.get_tracks(["late"]):
            a.add_track(audio.read_bytes(), audio.name, "Late", "", "late")
            assert b.follow_catalogue() == 1  # B's follower, running during the preparation
        return place_cold_tracks(*args)

    b.cold_tracks.place = add_on_a_after_b_read_the_catalogue
    assert b.poll_registry()
    assert b.require_version().version_id == new_id
    assert in_both_spaces(b, "late") and b.is_new("late")
    assert b.follow_catalogue() == 0  # nothing left over for the new version
