"""POST /v1/similar on the live server: every real format, every refusal, the bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

RECORDINGS = [
    "vibe_ace.mp3",
    "asc_game_theme.mp3",
    "brahms_hungarian_dance_5.flac",
    "lets_go_fishin.m4a",
    "sugar_plum_fairy.wav",
    "trumpet_loop.ogg",
    "speech_librispeech.ogg",
    "warzone_track.opus",
    "humpback_whale.opus",
]


def post_similar(client: httpx.Client, name: str, data: bytes, **params: object) -> httpx.Response:
    return client.post("/v1/similar", params=params, files={"file": (name, data)})


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_format_answers_k_songs(client: httpx.Client, audio_assets: Path, name: str) -> None:
    response = post_similar(client, name, (audio_assets / name).read_bytes(), k=7)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["k"] == 7 and len(body["results"]) == 7
    assert body["similarity"] == "cosine" and body["space"] == "cf"
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0001 for s in scores)
    assert all(hit["title"] and hit["artist"] for hit in body["results"])
    assert body["audio"]["seconds"] > 3.0
    timings = body["timings"]
    for stage in ("decode_ms", "features_ms", "model_ms", "search_ms"):
        assert 0.0 <= timings[stage] <= timings["total_ms"]


def test_content_space_and_model_version(
    client: httpx.Client, audio_assets: Path, server: Any
) -> None:
    data = (audio_assets / "vibe_ace.mp3").read_bytes()
    cf = post_similar(client, "vibe_ace.mp3", data, k=120, space="cf").json()
    content = post_similar(client, "vibe_ace.mp3", data, k=120, space="content").json()
    assert content["space"] == "content" and len(content["results"]) == 120
    assert [hit["id"] for hit in cf["results"]] != [hit["id"] for hit in content["results"]]
    assert cf["model_version"] == client.get("/v1/model").json()["version"]


REFUSALS = [
    # (what, file name, bytes or a recording to cut, status, code)
    ("the 2.7 s robin", "robin_chirp.ogg", None, 422, "audio_too_short"),
    ("an empty file", "empty.mp3", b"", 400, "audio_empty"),
    (
        "a text file",
        "notes.txt",
        b"these are not the sounds you are looking for\n" * 20,
        415,
        "audio_undecodable",
    ),
    ("an MP3 cut after 20 kB (0.8 s)", "cut.mp3", 20_000, 422, "audio_too_short"),
    ("an MP3 cut inside its header (600 bytes)", "cut.mp3", 600, 415, "audio_undecodable"),
    ("random bytes", "noise.wav", b"\x17\x99\x03" * 5000, 415, "audio_undecodable"),
]


@pytest.mark.parametrize(("what", "name", "payload", "status", "code"), REFUSALS)
def test_bad_uploads_get_a_clear_4xx_and_the_server_stays_up(
    client: httpx.Client,
    audio_assets: Path,
    server: Any,
    what: str,
    name: str,
    payload: bytes | int | None,
    status: int,
    code: str,
) -> None:
    if payload is None:
        data = (audio_assets / name).read_bytes()
    elif isinstance(payload, int):
        data = (audio_assets / "vibe_ace.mp3").read_bytes()[:payload]
    else:
        data = payload
    response = post_similar(client, name, data)
    assert response.status_code == status, (what, response.text)
    error = response.json()["error"]
    assert error["code"] == code
    assert name in error["message"] and len(error["message"]) > 20
    assert "Traceback" not in response.text
    assert client.get("/healthz").status_code == 200 and server.alive()


def test_a_truncated_mp3_still_long_enough_is_used(
    client: httpx.Client, audio_assets: Path
) -> None:
    data = (audio_assets / "vibe_ace.mp3").read_bytes()
    response = post_similar(client, "half.mp3", data[: len(data) // 2], k=3)
    assert response.status_code == 200, response.text
    assert 3.0 < response.json()["audio"]["seconds"] < 5.0  # half of the 8-s excerpt


def test_oversize_upload_is_413_before_the_body_is_read(
    client: httpx.Client, server: Any, upload_limit: int
) -> None:
    big = b"\0" * (upload_limit + 100_000)
    response = post_similar(client, "big.wav", big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert client.get("/healthz").status_code == 200

    # Without a Content-Length (chunked), the server stops reading past the limit.
    def chunks() -> object:
        boundary = b"--cut\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(200):
            yield b"\0" * 65_536  # 13 MB in all, far past the limit

    response = client.post(
        "/v1/similar",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=cut"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert client.get("/healthz").status_code == 200 and server.alive()


@pytest.mark.parametrize(
    ("params", "status"),
    [({"k": 0}, 422), ({"k": 501}, 422), ({"k": "ten"}, 422), ({"k": 500}, 200), ({"k": 1}, 200)],
)
def test_k_bounds(
    client: httpx.Client, audio_assets: Path, params: dict[str, object], status: int
) -> None:
    data = (audio_assets / "trumpet_loop.ogg").read_bytes()
    response = post_similar(client, "trumpet_loop.ogg", data, **params)
    assert response.status_code == status, response.text
    if status == 200:  # k above the catalogue size gives the whole catalogue
        assert len(response.json()["results"]) == min(params["k"], 120)  # type: ignore[call-overload]
    else:
        assert response.json()["error"]["code"] == "validation_error"


def test_bad_space_and_missing_file_are_422(client: httpx.Client, audio_assets: Path) -> None:
    data = (audio_assets / "trumpet_loop.ogg").read_bytes()
    response = post_similar(client, "trumpet_loop.ogg", data, space="sonic")
    assert response.status_code == 422
    assert "space" in response.json()["error"]["message"]
    response = client.post("/v1/similar", data={"nothing": "here"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
