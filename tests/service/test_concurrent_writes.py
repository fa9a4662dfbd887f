"""Write routes keep their promises under concurrency: 20 parallel POST /v1/tracks (some
racing for one id, some refused as NaN audio) and 20 parallel POST /v1/listens (some on
the tracks being added) on loopback, against SQLite and PostgreSQL; then a restart. Every
2xx is still there, nothing else is: no track, vector or audio file of a refused upload."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hostile_audio import RATE, hostile_corpus, tone, wav_bytes
from tests.postgres import postgres_schema

pytestmark = pytest.mark.slow

N_PARALLEL = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalogue.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_admin_url"), "coldstart_race") as url:
        yield url


def upload(n: int) -> tuple[str, bytes, str]:
    """(track id, audio, title) of upload `n`: every fifth is NaN audio (refused), and
    uploads 1-4 all claim the id "contested" (one wins, three get 409)."""
    if n % 5 == 0:
        return f"race-nan-{n}", hostile_corpus()["float-wav-nan"].data, f"NaN {n}"
    track_id = "contested" if n in (1, 2, 3, 4) else f"race-{n}"
    return track_id, wav_bytes(tone(3.2, hz=150 + 37 * n), RATE), f"Take {n}"


def test_parallel_writes_then_a_restart(
    start_server: Any, database: str, tmp_path: Path, auth: dict[str, str], registry: Any
) -> None:
    from catalogue import open_catalogue
    from catalogue.vectors import track_vectors
    from tests.service.test_hot_swap import warm_song_ids

    store = tmp_path / "audio-store"
    server = start_server(database=database, COLDSTART_AUDIO_STORE=str(store)).start()
    warm = warm_song_ids(registry)[:5]

    def add(n: int) -> tuple[int, str, str, int]:
        track_id, audio, title = upload(n)
        response = httpx.post(
            f"{server.url}/v1/tracks",
            files={"file": (f"take{n}.wav", audio)},
            data={"title": title, "track_id": track_id},
            headers=auth,
            timeout=300.0,
        )
        return n, track_id, title, response.status_code

    def listen(n: int) -> tuple[int, httpx.Response]:
        targets = [warm[n % len(warm)], f"race-{n + 5}", f"race-nan-{5 * (n % 4)}"]
        body = {
            "listens": [{"user_id": f"racer-{n}", "song_id": s, "count": n + 1} for s in targets]
        }
        return n, httpx.post(f"{server.url}/v1/listens", json=body, headers=auth, timeout=300.0)

    with ThreadPoolExecutor(2 * N_PARALLEL) as pool:
        added = pool.map(add, range(N_PARALLEL))
        listened = pool.map(listen, range(N_PARALLEL))
        added, listened = list(added), list(listened)

    statuses = Counter(status for *_, status in added)
    assert set(statuses) <= {201, 409, 422}, statuses
    assert statuses[422] == N_PARALLEL // 5
    created = {track_id: title for _, track_id, title, status in added if status == 201}
    assert sum(1 for _, track_id, _, s in added if track_id == "contested" and s == 201) == 1
    assert statuses[409] == 3
    stored_listens: Counter[tuple[str, str]] = Counter()
    for n, response in listened:
        assert response.status_code == 200, response.text
        for item in response.json()["results"]:
            song_id = [warm[n % len(warm)], f"race-{n + 5}", f"race-nan-{5 * (n % 4)}"][
                item["index"]
            ]
            if item["status"] == "stored":
                stored_listens[(f"racer-{n}", song_id)] += n + 1
            else:
                assert item["error"]["code"] == "unknown_song", item
    assert not any(song.startswith("race-nan") for _, song in stored_listens)

    server.stop()
    server.start()
    for track_id, title in created.items():
        track = httpx.get(f"{server.url}/v1/tracks/{track_id}", timeout=60.0).json()
        assert track["title"] == title and track["spaces"] == ["cf", "content"], track
    for _, track_id, _, status in added:
        if status == 422:
            assert httpx.get(f"{server.url}/v1/tracks/{track_id}", timeout=60.0).status_code == 404
    server.stop()
    with open_catalogue(database, store) as catalogue:
        cold = {record.id: record for record in catalogue.list_tracks("cold")}
        assert set(cold) == set(created)
        racing = [f"race-{n}" for n in range(N_PARALLEL)] + ["contested"]
        racing += [f"race-nan-{n}" for n in range(0, N_PARALLEL, 5)]
        assert set(track_vectors(catalogue, registry.version_id, racing)) == set(created)
        assert catalogue.audio_store is not None
        files = {p for p in store.rglob("*") if p.is_file() and ".incoming" not in p.parts}
        assert files == {catalogue.audio_store.path(r.audio_path) for r in cold.values()}
        listens = catalogue.export_listens()
    racers = listens[listens["user_id"].astype(str).str.startswith("racer-")]
    in_db = Counter(
        {
            (str(user), str(song)): int(count)
            for user, song, count in zip(
                racers["user_id"], racers["song_id"], racers["play_count"], strict=True
            )
        }
    )
    assert in_db == stored_listens
