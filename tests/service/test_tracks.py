"""Writes and lookups on a live server of their own: tracks, listens, recommendations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def writable(start_server: Any) -> Iterator[httpx.Client]:
    server = start_server().start()
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        yield http


def add_track(
    client: httpx.Client, audio: Path, headers: dict[str, str], **fields: str
) -> httpx.Response:
    return client.post(
        "/v1/tracks",
        files={"file": (audio.name, audio.read_bytes())},
        data={"title": "A new song", "artist": "Somebody", **fields},
        headers=headers,
    )


def test_writes_need_a_valid_key(writable: httpx.Client, audio_assets: Path) -> None:
    audio = audio_assets / "trumpet_loop.ogg"
    listens = {"listens": [{"user_id": "u", "song_id": "s"}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dTpw"}):
        answers = [
            add_track(writable, audio, headers),
            writable.delete("/v1/tracks/anything", headers=headers),
            writable.post("/v1/listens", json=listens, headers=headers),
        ]
        for response in answers:
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


def test_added_track_is_found_played_recommended_and_deleted(
    writable: httpx.Client,
    audio_assets: Path,
    auth: dict[str, str],
    registry: Any,
) -> None:
    audio = audio_assets / "lets_go_fishin.m4a"
    response = add_track(writable, audio, auth, title="Let's Go Fishin'", artist="Karissa Hobbs")
    assert response.status_code == 201, response.text
    created = response.json()
    track_id = created["id"]
    assert response.headers["location"] == f"/v1/tracks/{track_id}"
    assert created["origin"] == "cold" and created["new"] and created["has_audio"]
    assert created["spaces"] == ["cf", "content"]
    assert created["model_version"] == registry.version_id
    # The content space holds the encoder's content embedding, the cf space (a new artist:
    # by audio alone) its predicted factors: the in-process path's vectors.
    from pipeline.registry import load_version
    from training.inference import embed_audio

    encoder = load_version(registry.folder, registry.version_id).encoder
    dims, expected = encoder.dims, embed_audio(encoder, audio)
    content = np.asarray(created["content_vector"], np.float32)
    assert content.shape == (dims.embedding_dims,) and dims.embedding_dims != dims.n_factors
    np.testing.assert_allclose(content, expected.content, rtol=1e-4, atol=1e-5)
    assert created["placement"] == "audio"
    np.testing.assert_allclose(created["cf_vector"], expected.factors, rtol=1e-4, atol=1e-5)

    track = writable.get(f"/v1/tracks/{track_id}").json()
    assert track["title"] == "Let's Go Fishin'" and track["artist"] == "Karissa Hobbs"

    # The same recording finds the new track first, in both spaces, at cosine 1.
    for space in ("cf", "content"):
        hits = writable.post(
            "/v1/similar",
            params={"k": 5, "space": space},
            files={"file": (audio.name, audio.read_bytes())},
        ).json()["results"]
        assert hits[0]["id"] == track_id and hits[0]["new"]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)

    neighbours = writable.get(f"/v1/tracks/{track_id}/similar", params={"k": 4}).json()
    assert len(neighbours["results"]) == 4
    assert track_id not in [hit["id"] for hit in neighbours["results"]]

    played = writable.get(f"/v1/tracks/{track_id}/audio")
    assert played.status_code == 200 and played.content == audio.read_bytes()
    assert played.headers["content-type"] == "audio/mp4"

    # Only-new recommendations hold cold tracks only, this one among them.
    user_id = json.loads(
        (registry.folder / "versions" / registry.version_id / "user_ids.json").read_text()
    )[0]
    recommended = writable.get(
        f"/v1/users/{user_id}/recommendations", params={"k": 10, "only_new": "true"}
    ).json()
    assert recommended["scoring"] == "inner_product" and recommended["only_new"]
    assert track_id in [hit["id"] for hit in recommended["results"]]
    assert all(hit["new"] for hit in recommended["results"])

    duplicate = add_track(writable, audio, auth, track_id=track_id)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "track_exists"

    assert writable.delete(f"/v1/tracks/{track_id}", headers=auth).status_code == 204
    assert writable.get(f"/v1/tracks/{track_id}").status_code == 404
    assert writable.delete(f"/v1/tracks/{track_id}", headers=auth).status_code == 404
    hits = writable.post(
        "/v1/similar", params={"k": 5}, files={"file": (audio.name, audio.read_bytes())}
    ).json()["results"]
    assert track_id not in [hit["id"] for hit in hits]


def test_client_chosen_id_and_a_refused_recording(
    writable: httpx.Client, audio_assets: Path, auth: dict[str, str]
) -> None:
    response = add_track(writable, audio_assets / "warzone_track.opus", auth, track_id="label-42")
    assert response.status_code == 201 and response.json()["id"] == "label-42"
    refused = add_track(writable, audio_assets / "robin_chirp.ogg", auth, track_id="robin")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "audio_too_short"
    assert writable.get("/v1/tracks/robin").status_code == 404  # nothing stored
    assert (
        writable.post(
            "/v1/tracks", files={"file": ("x.mp3", b"")}, data={"title": ""}, headers=auth
        ).status_code
        == 422
    )


def test_recommendations_rank_by_inner_product(writable: httpx.Client, trained_run: Path) -> None:
    from factorization.run import load_factorization

    factorization = load_factorization(trained_run)
    user_id = factorization.user_ids[3]
    songs = factorization.song_ids + factorization.valid_song_ids + factorization.test_song_ids
    factors = np.concatenate(
        [
            factorization.song_factors,
            factorization.valid_song_factors,
            factorization.test_song_factors,
        ]
    )
    expected = factors @ factorization.user_factors[3]
    body = writable.get(
        f"/v1/users/{user_id}/recommendations", params={"k": 10, "include_played": "true"}
    ).json()
    assert body["space"] == "cf" and not body["only_new"] and body["user_vector"] == "fitted"
    got = body["results"]
    cold = [hit for hit in got if hit["new"]]  # tracks added by the other tests may rank here
    warm = [hit for hit in got if not hit["new"]]
    best = [songs[i] for i in np.argsort(-expected)[: len(warm)]]
    assert [hit["id"] for hit in warm] == best
    for hit in warm:
        assert hit["score"] == pytest.approx(float(expected[songs.index(hit["id"])]), rel=1e-4)
    assert all(hit["score"] <= got[0]["score"] for hit in cold)


def test_warm_song_lookup_and_its_audio(writable: httpx.Client, trained_run: Path) -> None:
    from factorization.run import load_factorization

    song_id = load_factorization(trained_run).song_ids[0]
    track = writable.get(f"/v1/tracks/{song_id}").json()
    assert track["origin"] == "warm" and not track["new"] and track["has_audio"]
    audio = writable.get(f"/v1/tracks/{song_id}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"].startswith("audio/")
    similar = writable.get(f"/v1/tracks/{song_id}/similar", params={"k": 3, "space": "content"})
    assert similar.status_code == 200 and len(similar.json()["results"]) == 3


@pytest.mark.parametrize(
    "path",
    [
        "/v1/tracks/no-such-song",
        "/v1/tracks/no-such-song/similar",
        "/v1/tracks/no-such-song/audio",
        "/v1/users/no-such-user/recommendations",
    ],
)
def test_unknown_ids_are_404(writable: httpx.Client, path: str) -> None:
    response = writable.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] in {"track_not_found", "user_not_found"}


def test_listens_are_judged_one_by_one(
    writable: httpx.Client, auth: dict[str, str], trained_run: Path
) -> None:
    from factorization.run import load_factorization

    song_id = load_factorization(trained_run).song_ids[1]
    batch = {
        "listens": [
            {
                "user_id": "new-listener",
                "song_id": song_id,
                "count": 3,
                "played_at": "2026-01-02T03:04:05+01:00",
            },
            {"user_id": "new-listener", "song_id": "no-such-song"},
            {"user_id": "another", "song_id": song_id},
        ]
    }
    response = writable.post("/v1/listens", json=batch, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stored"], body["rejected"]) == (2, 1)
    assert [item["status"] for item in body["results"]] == ["stored", "rejected", "stored"]
    assert body["results"][1]["error"]["code"] == "unknown_song"

    for bad in (
        {"listens": []},
        {"listens": [{"user_id": "u", "song_id": song_id, "count": 0}]},
        {"listens": [{"user_id": "u", "song_id": song_id, "played_at": "2026-01-02T03:04:05"}]},
        {"listens": [{"user_id": "u"}]},
    ):
        response = writable.post("/v1/listens", json=bad, headers=auth)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "validation_error"
