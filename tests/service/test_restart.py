"""What the API writes survives a restart of the process (a real SQLite file on disk)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import similar_ids

pytestmark = pytest.mark.slow


def test_tracks_listens_and_deletions_survive_a_restart(
    start_server: Any, audio_assets: Path, auth: dict[str, str], trained_run: Path
) -> None:
    from catalogue import open_catalogue
    from factorization.run import load_factorization

    warm_ids = load_factorization(trained_run).song_ids
    audio = audio_assets / "vibe_ace.mp3"
    server = start_server().start()
    added = httpx.post(
        f"{server.url}/v1/tracks",
        files={"file": (audio.name, audio.read_bytes())},
        data={"title": "Vibe Ace", "artist": "Kevin MacLeod"},
        headers=auth,
        timeout=60.0,
    )
    assert added.status_code == 201, added.text
    track_id = added.json()["id"]
    listens = {
        "listens": [
            {"user_id": "restart-user", "song_id": track_id, "count": 2},
            {"user_id": "restart-user", "song_id": warm_ids[0], "count": 5},
        ]
    }
    stored = httpx.post(f"{server.url}/v1/listens", json=listens, headers=auth, timeout=60.0)
    assert stored.json()["stored"] == 2
    deleted = httpx.delete(f"{server.url}/v1/tracks/{warm_ids[1]}", headers=auth, timeout=60.0)
    assert deleted.status_code == 204

    server.stop()
    with sqlite3.connect(server.database) as db:  # durable on disk while nothing runs
        plays = dict(
            db.execute("SELECT track_id, count FROM listens WHERE user_id = 'restart-user'")
        )
    assert plays == {track_id: 2, warm_ids[0]: 5}

    server.start()
    track = httpx.get(f"{server.url}/v1/tracks/{track_id}", timeout=60.0).json()
    assert track["title"] == "Vibe Ace" and track["origin"] == "cold"
    assert track["spaces"] == ["cf", "content"]
    assert similar_ids(server, audio)[0] == track_id
    assert similar_ids(server, audio, "content")[0] == track_id
    assert httpx.get(f"{server.url}/v1/tracks/{warm_ids[1]}", timeout=60.0).status_code == 404
    neighbours = httpx.get(
        f"{server.url}/v1/tracks/{warm_ids[0]}/similar", params={"k": 200}, timeout=60.0
    ).json()["results"]
    assert warm_ids[1] not in [hit["id"] for hit in neighbours]

    # A restart that finds no stored vector (e.g. a new model version) re-embeds the audio.
    server.stop()
    with sqlite3.connect(server.database) as db:
        db.execute("DELETE FROM track_vectors")
    server.start()
    assert similar_ids(server, audio)[0] == track_id
    with open_catalogue(server.database) as catalogue:
        listens_table = catalogue.export_listens()
    assert set(listens_table["song_id"]) >= {track_id, warm_ids[0]}
    server.stop()
    with sqlite3.connect(server.database) as db:
        assert db.execute("SELECT count(*) FROM track_vectors").fetchone() == (1,)
