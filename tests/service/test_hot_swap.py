"""A newly published version replaces the served one without a restart, a failed request,
or a lost write (uvicorn on loopback, polling `REG/current` every 0.2 s)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import similar_ids

pytestmark = pytest.mark.slow

POLL = {"COLDSTART_MODEL_POLL_SECONDS": "0.2"}
SWAP_TIMEOUT_S = 90.0


def ready_version(server: Any) -> str | None:
    response = httpx.get(f"{server.url}/readyz", timeout=30.0)
    return response.json()["model_version"] if response.status_code == 200 else None


def wait_for_version(server: Any, version_id: str) -> None:
    deadline = time.monotonic() + SWAP_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready_version(server) == version_id:
            return
        time.sleep(0.1)
    pytest.fail(f"the server did not swap to {version_id}:\n{server.log_tail()}")


# Audio decoded by the decode workers (uploads, and stored audio re-embedded).
DECODES = 'coldstart_stage_duration_seconds_count{stage="decode"}'


def metric(server: Any, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30.0).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.split(" ")[0] == name]
    assert len(values) == 1, f"{name} not exported once"
    return values[0]


def warm_song_ids(registry: Any) -> list[str]:
    folder = registry.folder / "versions" / registry.version_id
    cold = set(json.loads((folder / "cold_song_ids.json").read_text()))
    ids = json.loads((folder / "index" / "cf_cosine" / "ids.json").read_text())
    return [song_id for song_id in ids if song_id is not None and song_id not in cold]


def first_user(registry: Any) -> str:
    folder = registry.folder / "versions" / registry.version_id
    return str(json.loads((folder / "user_ids.json").read_text())[0])


@dataclass
class Answer:
    started: float
    finished: float
    status: int
    version: str | None


class RequestLoop:
    """Threads that each repeat one request until stopped, recording every answer."""

    def __init__(
        self, server: Any, requests: dict[str, Callable[[httpx.Client], httpx.Response]]
    ) -> None:
        self.server = server
        self.requests = requests
        self.answers: dict[str, list[Answer]] = {name: [] for name in requests}
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(name,), daemon=True) for name in requests
        ]

    def _run(self, name: str) -> None:
        with httpx.Client(timeout=60.0) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                response = self.requests[name](client)
                body = response.json() if response.status_code == 200 else {}
                version = body.get("model_version") or body.get("version")  # /v1/model
                self.answers[name].append(
                    Answer(started, time.monotonic(), response.status_code, version)
                )

    def __enter__(self) -> RequestLoop:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def wait_until(self, done: Callable[[list[Answer]], bool], what: str) -> None:
        """Until `done(answers)` holds for every thread's answers (bounded)."""
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        while not all(done(list(answers)) for answers in self.answers.values()):
            if time.monotonic() > deadline:
                seen = {name: len(answers) for name, answers in self.answers.items()}
                pytest.fail(f"timed out waiting for {what} ({seen}):\n{self.server.log_tail()}")
            time.sleep(0.05)


def post_file(url: str, audio: Path, **params: Any) -> Callable[[httpx.Client], httpx.Response]:
    data = audio.read_bytes()
    return lambda client: client.post(url, params=params, files={"file": (audio.name, data)})


def add_track(server: Any, audio: Path, auth: dict[str, str], title: str) -> str:
    response = httpx.post(
        f"{server.url}/v1/tracks",
        files={"file": (audio.name, audio.read_bytes())},
        data={"title": title, "artist": "test"},
        headers=auth,
        timeout=60.0,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def mixed_requests(
    server: Any, registry: Any, audio_assets: Path
) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    """A track's neighbours, a user's recommendations and an upload's neighbours."""
    song, user = warm_song_ids(registry)[0], first_user(registry)
    return {
        "similar-track": lambda client: client.get(
            f"{server.url}/v1/tracks/{song}/similar", params={"k": 10}
        ),
        "recommend": lambda client: client.get(
            f"{server.url}/v1/users/{user}/recommendations", params={"k": 10}
        ),
        "similar-upload": post_file(
            f"{server.url}/v1/similar", audio_assets / "trumpet_loop.ogg", k=10
        ),
    }


def switched_once(loop: RequestLoop, before: str, after: str) -> list[Answer]:
    """Every answer a 200, each thread's versions `before` ... `before`, `after` ...
    `after` (at least 3 before); returns all answers in the order they finished."""
    everything = sorted(
        (answer for answers in loop.answers.values() for answer in answers),
        key=lambda answer: answer.finished,
    )
    assert [a.status for a in everything] == [200] * len(everything)
    for name, answers in loop.answers.items():
        versions = [answer.version for answer in answers]
        switch = versions.index(after)
        assert switch >= 3 and set(versions[:switch]) == {before}, name
        assert set(versions[switch:]) == {after}, name
    return everything


def test_swaps_to_a_newly_published_version(
    start_server: Any, own_registry: Any, trained_run: Path
) -> None:
    from pipeline.registry import publish_run

    server = start_server(registry_folder=own_registry.folder, **POLL).start()
    old = own_registry.version_id
    assert ready_version(server) == old
    song = warm_song_ids(own_registry)[0]

    new = publish_run(trained_run, own_registry.folder)
    assert new != old
    wait_for_version(server, new)

    assert httpx.get(f"{server.url}/v1/model", timeout=30.0).json()["version"] == new
    similar = httpx.get(f"{server.url}/v1/tracks/{song}/similar", timeout=30.0).json()
    assert similar["model_version"] == new and similar["results"]
    assert metric(server, "coldstart_model_swaps_total") == 2  # the start's load, this swap
    assert metric(server, "coldstart_model_swap_failures_total") == 0
    assert f'version="{new}"' in httpx.get(f"{server.url}/metrics", timeout=30.0).text


def test_no_request_fails_and_versions_switch_once_under_load(
    start_server: Any, own_registry: Any, trained_run: Path, audio_assets: Path
) -> None:
    from pipeline.registry import publish_run

    server = start_server(registry_folder=own_registry.folder, **POLL).start()
    old = own_registry.version_id
    with RequestLoop(server, mixed_requests(server, own_registry, audio_assets)) as loop:
        loop.wait_until(lambda answers: len(answers) >= 3, "answers from the old version")
        new = publish_run(trained_run, own_registry.folder)
        loop.wait_until(
            lambda answers: sum(a.version == new for a in answers) >= 3, "the new version"
        )
    everything = switched_once(loop, old, new)
    # Over all threads: once any answer named the new version, no request begun after it
    # got the old one. (An old answer may still finish later: a request pins its version
    # when it begins, and one already running at the switch finishes on the old version.)
    first_new_done = min(a.finished for a in everything if a.version == new)
    assert all(a.started < first_new_done for a in everything if a.version == old)


def test_tracks_written_before_the_publish_are_in_the_new_version(
    start_server: Any,
    own_registry: Any,
    trained_run: Path,
    audio_assets: Path,
    auth: dict[str, str],
) -> None:
    from pipeline.registry import publish_run

    server = start_server(registry_folder=own_registry.folder, **POLL).start()
    recordings = [audio_assets / "vibe_ace.mp3", audio_assets / "speech_librispeech.ogg"]
    added = [add_track(server, audio, auth, audio.stem) for audio in recordings]
    dropped = add_track(server, audio_assets / "trumpet_loop.ogg", auth, "dropped")
    warm = warm_song_ids(own_registry)
    for track_id in (dropped, warm[1]):
        deleted = httpx.delete(f"{server.url}/v1/tracks/{track_id}", headers=auth, timeout=30.0)
        assert deleted.status_code == 204

    decoded = metric(server, DECODES)
    new = publish_run(trained_run, own_registry.folder)
    wait_for_version(server, new)
    assert metric(server, DECODES) == decoded + len(added)  # re-embedded by decode workers

    for track_id, audio in zip(added, recordings, strict=True):
        track = httpx.get(f"{server.url}/v1/tracks/{track_id}", timeout=30.0).json()
        assert track["spaces"] == ["cf", "content"] and track["new"] is True
        assert similar_ids(server, audio, "cf")[0] == track_id
        assert similar_ids(server, audio, "content")[0] == track_id
    with sqlite3.connect(server.database) as db:
        stored = {
            row[0]
            for row in db.execute(
                "SELECT track_id FROM track_vectors WHERE model_version = ?", (new,)
            )
        }
        marked = dict(db.execute("SELECT id, vector_version FROM tracks WHERE origin = 'cold'"))
    assert stored == set(added)
    assert marked == {track_id: new for track_id in added}
    for gone in (dropped, warm[1]):
        assert httpx.get(f"{server.url}/v1/tracks/{gone}", timeout=30.0).status_code == 404
    neighbours = httpx.get(
        f"{server.url}/v1/tracks/{warm[0]}/similar", params={"k": 200}, timeout=30.0
    ).json()
    assert neighbours["model_version"] == new
    assert warm[1] not in {hit["id"] for hit in neighbours["results"]}
    assert set(added) <= {hit["id"] for hit in neighbours["results"]}


def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(
    start_server: Any, own_registry: Any
) -> None:
    server = start_server(registry_folder=own_registry.folder, **POLL).start()
    old = own_registry.version_id
    versions = own_registry.folder / "versions"
    tampered = f"{old}-9"
    shutil.copytree(versions / old, versions / tampered)
    factors = versions / tampered / "user_factors.npy"
    data = bytearray(factors.read_bytes())
    data[-1] ^= 0x01
    factors.write_bytes(bytes(data))
    song = warm_song_ids(own_registry)[0]
    requests = {
        "similar-track": lambda client: client.get(f"{server.url}/v1/tracks/{song}/similar"),
        "model": lambda client: client.get(f"{server.url}/v1/model"),
    }
    with RequestLoop(server, requests) as loop:
        loop.wait_until(lambda answers: len(answers) >= 3, "answers before the switch")
        (own_registry.folder / "current").write_text(tampered + "\n")
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        while metric(server, "coldstart_model_swap_failures_total") < 1:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        time.sleep(1.0)  # five more polls: the broken version is not tried again
    answers = [answer for answers in loop.answers.values() for answer in answers]
    assert {(answer.status, answer.version) for answer in answers} == {(200, old)}
    assert metric(server, "coldstart_model_swap_failures_total") == 1
    assert metric(server, "coldstart_model_swaps_total") == 1
    assert ready_version(server) == old
    assert f"model version {tampered} not loaded, still serving {old}" in server.log.read_text()


def _reseal(folder: Path, kind: str) -> None:
    """Write `folder`'s manifest again over its files as they are now, all else kept."""
    from artifacts.manifest import read_manifest, write_manifest

    manifest = read_manifest(folder, verify=False)
    sealed = {"schema_version", "kind", "parameters", "parents", "dataset_fingerprint", "files"}
    write_manifest(
        folder,
        kind=kind,
        files=list(manifest["files"]),
        parameters=manifest["parameters"],
        parents=manifest["parents"],
        dataset_fingerprint=manifest["dataset_fingerprint"],
        extra={k: v for k, v in manifest.items() if k not in {*sealed, "digest", "created_at"}},
    )


def test_a_version_of_an_unknown_architecture_is_refused_in_one_line(
    start_server: Any, own_registry: Any
) -> None:
    """A version whose files are intact but whose encoder names an architecture this code
    does not have: not served, the old one keeps serving, and the log says why in one line
    naming the architectures it has (no traceback)."""
    server = start_server(registry_folder=own_registry.folder, **POLL).start()
    old = own_registry.version_id
    versions = own_registry.folder / "versions"
    unknown = f"{old}-8"
    shutil.copytree(versions / old, versions / unknown)
    config = versions / unknown / "encoder" / "encoder.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "architecture": "wavenet"}))
    _reseal(versions / unknown / "encoder", "content_model")
    _reseal(versions / unknown, "model-version")
    (own_registry.folder / "current").write_text(unknown + "\n")
    deadline = time.monotonic() + SWAP_TIMEOUT_S
    while metric(server, "coldstart_model_swap_failures_total") < 1:
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.1)
    assert ready_version(server) == old
    log = server.log.read_text()
    assert f"model version {unknown} not loaded, still serving {old}" in log
    assert "unknown encoder architecture 'wavenet' (available: dieleman" in log
    assert "Traceback" not in log


def test_a_server_started_on_an_empty_registry_becomes_ready_when_one_is_published(
    start_server: Any, trained_run: Path, tmp_path: Path
) -> None:
    from pipeline.registry import publish_run

    registry = tmp_path / "empty-registry"
    server = start_server(registry_folder=registry, **POLL).start()
    waiting = httpx.get(f"{server.url}/readyz", timeout=30.0)
    assert waiting.status_code == 503
    assert waiting.json()["error"]["code"] == "model_not_loaded"

    version_id = publish_run(trained_run, registry)
    wait_for_version(server, version_id)
    model = httpx.get(f"{server.url}/v1/model", timeout=30.0).json()
    assert model["version"] == version_id
    song = json.loads(
        (registry / "versions" / version_id / "index" / "cf_cosine" / "ids.json").read_text()
    )[0]
    track = httpx.get(f"{server.url}/v1/tracks/{song}", timeout=30.0)
    assert track.status_code == 200, track.text  # the first version's songs were imported
    assert metric(server, "coldstart_model_swap_failures_total") == 0


# ---- in process: the runtime itself -------------------------------------------------------


@pytest.fixture
def runtime(own_registry: Any, tmp_path: Path) -> Iterator[Any]:
    """A started `Runtime` on its own registry and catalogue, not watching (polled by hand)."""
    from service.metrics import ServiceMetrics
    from service.runtime import Runtime
    from service.settings import Settings

    settings = Settings(
        registry=own_registry.folder,
        database_url=f"sqlite:///{tmp_path / 'catalogue.db'}",
        model_poll_seconds=0,
    )
    runtime = Runtime(settings, ServiceMetrics())
    yield runtime
    runtime.close()


def test_a_request_keeps_its_version_and_its_write_reaches_the_new_one(
    runtime: Any, own_registry: Any, trained_run: Path, audio_assets: Path
) -> None:
    from catalogue.vectors import track_vectors
    from pipeline.registry import publish_run

    runtime.start()
    audio = audio_assets / "vibe_ace.mp3"
    with runtime.pinned():  # one request, begun before the publish
        old = runtime.require_version()
        new_id = publish_run(trained_run, own_registry.folder)
        assert runtime.poll_registry()
        assert runtime.require_version() is old
        track, _, _ = runtime.add_track(audio.read_bytes(), audio.name, "Vibe Ace", "", "mid-swap")
    new = runtime.require_version()
    assert new.version_id == new_id and new is not old
    assert track.new and track.spaces == ["cf", "content"]
    assert "mid-swap" in new.index.space("cf") and "mid-swap" in new.index.space("content")
    assert set(track_vectors(runtime.catalogue, new_id, ["mid-swap"])) == {"mid-swap"}
    assert runtime.catalogue.get_track("mid-swap").vector_version == new_id
    assert not runtime.poll_registry()  # `current` unchanged: nothing to do


def test_a_track_the_version_holds_keeps_the_versions_vector(
    runtime: Any, own_registry: Any, audio_assets: Path
) -> None:
    import numpy as np

    from catalogue import open_catalogue
    from catalogue.vectors import put_track_vector
    from pipeline.registry import load_version

    published = load_version(own_registry.folder, own_registry.version_id)
    song = warm_song_ids(own_registry)[0]  # held at its WMF factors
    expected = published.index.space("cf").vector(song)
    audio = audio_assets / "trumpet_loop.ogg"
    settings = runtime.settings
    with open_catalogue(settings.database_url, settings.audio_store_dir()) as catalogue:
        catalogue.add_track(song, "t", audio=audio.read_bytes(), audio_ext="ogg", origin="cold")
        put_track_vector(catalogue, song, own_registry.version_id, -np.ones_like(expected))
    runtime.start()
    assert np.allclose(runtime.require_version().index.space("cf").vector(song), expected)
    assert not runtime.is_new(song)


def test_a_rollback_through_the_api_swaps_back_with_no_failed_request(
    start_server: Any,
    own_registry: Any,
    trained_run: Path,
    audio_assets: Path,
    auth: dict[str, str],
) -> None:
    """V2 published and served; an operator makes V1 current again through the API while
    requests keep coming: every one succeeds, each thread sees V2 then V1, the run history
    names the key, and V2 is withdrawn (the gate's floor leaves it out)."""
    import hashlib

    from pipeline.nightly import recorded_scores
    from pipeline.registry import publish_run, withdrawn_versions
    from tests.service.conftest import API_KEY

    server = start_server(registry_folder=own_registry.folder, **POLL).start()
    old = own_registry.version_id
    new = publish_run(trained_run, own_registry.folder)
    wait_for_version(server, new)
    with RequestLoop(server, mixed_requests(server, own_registry, audio_assets)) as loop:
        loop.wait_until(lambda answers: len(answers) >= 3, "answers from the new version")
        activated = httpx.post(
            f"{server.url}/v1/admin/versions/{old}/activate",
            json={"note": "the new one recommends silence"},
            headers=auth,
            timeout=SWAP_TIMEOUT_S,
        )
        assert activated.status_code == 200, activated.text
        body = activated.json()
        assert (body["version"], body["previous"], body["changed"]) == (old, new, True)
        assert body["serving"] == old  # this replica swapped before answering
        loop.wait_until(
            lambda answers: sum(a.version == old for a in answers) >= 3, "the rolled-back version"
        )
    switched_once(loop, new, old)

    runs = httpx.get(f"{server.url}/v1/admin/runs", headers=auth, timeout=30.0).json()["runs"]
    assert runs[0]["id"] == body["run_id"] and runs[0]["status"] == "activated"
    assert runs[0]["requested_by"] == "key:" + hashlib.sha256(API_KEY.encode()).hexdigest()[:8]
    assert runs[0]["version_id"] == old and runs[0]["message"].endswith("recommends silence")
    listed = httpx.get(f"{server.url}/v1/admin/versions", headers=auth, timeout=30.0).json()
    assert listed["current"] == old
    assert {v["id"]: (v["current"], v["withdrawn"]) for v in listed["versions"]} == {
        old: (True, False),
        new: (False, True),
    }
    assert withdrawn_versions(own_registry.folder) == {new}
    assert new not in {score.version_id for score in recorded_scores(own_registry.folder)}
    again = httpx.post(
        f"{server.url}/v1/admin/versions/{old}/activate", headers=auth, timeout=30.0
    ).json()
    assert not again["changed"] and again["run_id"] is None
