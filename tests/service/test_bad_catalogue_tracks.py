"""Tracks put into the catalogue behind the API's back (a NaN vector, a vector of the wrong
shape, a missing audio file, audio that does not decode, NaN samples) never keep the
service from starting or following: each is re-embedded or left out, logged and counted."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.hostile_audio import RATE, hostile_corpus, tone, wav_bytes
from tests.service.test_hot_swap import metric

pytestmark = pytest.mark.slow

PROBLEMS = "coldstart_catalogue_track_problems_total"
FOLLOW_TIMEOUT_S = 60.0


def plant_vector(database: Path, track_id: str, version_id: str, vector: np.ndarray) -> None:
    """Write a vector row as a broken writer would: no check of its values or shape."""
    blob = np.asarray(vector, dtype="<f4").tobytes()
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT OR REPLACE INTO track_vectors (track_id, model_version, dim, vector,"
            " computed_at) VALUES (?, ?, ?, ?, '2026-01-01 00:00:00.000000')",
            (track_id, version_id, len(blob) // 4, blob),
        )


def plant_track(database: Path, track_id: str, audio: bytes, extension: str = "wav") -> Path:
    """Add a cold track straight into the catalogue; returns its stored audio file."""
    from catalogue import open_catalogue

    with open_catalogue(database, Path(f"{database}.audio")) as catalogue:
        record = catalogue.add_track(
            track_id, track_id, "planted", audio=audio, audio_ext=extension, origin="cold"
        )
        assert catalogue.audio_store is not None and record.audio_path is not None
        return catalogue.audio_store.path(record.audio_path)


def spaces(server: Any, track_id: str) -> list[str]:
    response = httpx.get(f"{server.url}/v1/tracks/{track_id}", timeout=30.0)
    assert response.status_code == 200, response.text
    return list(response.json()["spaces"])


def nearest(server: Any, audio: bytes) -> str:
    response = httpx.post(
        f"{server.url}/v1/similar",
        params={"k": 3, "space": "content"},
        files={"file": ("probe.wav", audio)},
        timeout=60.0,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["results"][0]["id"])


def stored_vector(database: Path, track_id: str, version_id: str) -> np.ndarray:
    with sqlite3.connect(database) as db:
        (blob,) = db.execute(
            "SELECT vector FROM track_vectors WHERE track_id = ? AND model_version = ?",
            (track_id, version_id),
        ).fetchone()
    return np.frombuffer(blob, dtype="<f4")


def test_start_up_and_follower_survive_bad_catalogue_tracks(
    start_server: Any, registry: Any, auth: dict[str, str]
) -> None:
    version = registry.version_id
    server = start_server(COLDSTART_CATALOGUE_POLL_SECONDS="0.2").start()
    database = Path(server.database)
    good = wav_bytes(tone(3.5, hz=220), RATE)
    added = httpx.post(
        f"{server.url}/v1/tracks",
        files={"file": ("good.wav", good)},
        data={"title": "Good", "track_id": "good"},
        headers=auth,
        timeout=60.0,
    )
    assert added.status_code == 201, added.text
    server.stop()
    dim = stored_vector(database, "good", version).size

    healthy = wav_bytes(tone(3.5, hz=330), RATE)
    plant_track(database, "nan-vector", healthy)
    plant_vector(database, "nan-vector", version, np.full(dim, np.nan))
    plant_track(database, "short-vector", wav_bytes(tone(3.5, hz=550), RATE)).unlink()
    plant_vector(database, "short-vector", version, np.ones(3))
    plant_track(database, "lost-audio", wav_bytes(tone(3.5, hz=660), RATE)).unlink()
    plant_track(database, "garbage", b"not audio at all\n" * 200, "mp3")
    plant_track(database, "nan-samples", hostile_corpus()["float-wav-nan"].data)

    server.start()
    assert httpx.get(f"{server.url}/readyz", timeout=30.0).status_code == 200
    counted = {
        problem: metric(server, f'{PROBLEMS}{{problem="{problem}"}}')
        for problem in ("unusable_vector", "missing_audio", "undecodable_audio")
    }
    assert counted == {"unusable_vector": 2, "missing_audio": 2, "undecodable_audio": 2}
    assert spaces(server, "good") == ["cf", "content"]
    assert spaces(server, "nan-vector") == ["cf", "content"]  # re-embedded from its audio
    assert np.isfinite(stored_vector(database, "nan-vector", version)).all()
    for track_id in ("short-vector", "lost-audio", "garbage", "nan-samples"):
        assert spaces(server, track_id) == []
    assert nearest(server, healthy) == "nan-vector"
    log = server.log.read_text()
    assert "catalogue track garbage (undecodable_audio)" in log
    assert "catalogue track nan-vector (unusable_vector)" in log

    # The same while serving: the follower re-embeds or leaves out another replica's bad writes.
    late = wav_bytes(tone(3.5, hz=770), RATE)
    plant_track(database, "late-nan-vector", late)
    plant_vector(database, "late-nan-vector", version, np.full(dim, np.inf))
    plant_track(database, "late-garbage", b"still not audio\n" * 200, "mp3")
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while time.monotonic() < deadline:
        undecodable = metric(server, f'{PROBLEMS}{{problem="undecodable_audio"}}')
        if undecodable == 3 and spaces(server, "late-nan-vector"):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the follower did not settle:\n{server.log_tail()}")
    assert metric(server, f'{PROBLEMS}{{problem="unusable_vector"}}') == 3
    assert spaces(server, "late-garbage") == []
    assert nearest(server, late) == "late-nan-vector"
    assert server.alive()
