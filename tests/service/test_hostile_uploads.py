"""Every upload route against a generated hostile corpus (tests/hostile_audio.py): each
answer is a 2xx or a 4xx JSON error with a stable code, the server stays up, and refused
uploads leave the catalogue (rows, vectors, events, audio files) exactly as it was."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hostile_audio import RATE, Hostile, hostile_corpus, tone, wav_bytes
from tests.service.upload_answers import add_track, added_whole, catalogue_state, refusal_code

pytestmark = pytest.mark.slow

CORPUS = hostile_corpus()
# Above the largest case (255 channels of 16-bit PCM, 13 MB), so the decoder sees them all.
UPLOAD_LIMIT = 16_000_000
_STORE_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]+")


@pytest.fixture(scope="module")
def hostile_server(start_server: Any) -> Iterator[Any]:
    server = start_server(COLDSTART_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(hostile_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_server.url, timeout=120.0) as client:
        yield client


def check_answer(response: httpx.Response, hostile: Hostile, created: int) -> dict[str, Any]:
    body = response.json()
    if hostile.outcome == "refused":
        code = refusal_code(response)
        assert hostile.code is None or code == hostile.code, body
        return body
    assert response.status_code == created, body
    assert body["audio"]["peak_normalised"] is (hostile.outcome == "normalised")
    codes = [warning["code"] for warning in body["audio"]["warnings"]]
    assert ("peak_normalised" in codes) is (hostile.outcome == "normalised")
    return body


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_similar_answers_every_hostile_upload(
    http: httpx.Client, hostile_server: Any, case: str
) -> None:
    hostile = CORPUS[case]
    before = catalogue_state(hostile_server.database)
    response = http.post(
        "/v1/similar", params={"k": 3}, files={"file": (hostile.filename, hostile.data)}
    )
    body = check_answer(response, hostile, 200)
    if response.status_code == 200:
        assert len(body["results"]) == 3
    assert catalogue_state(hostile_server.database) == before  # /v1/similar never writes
    assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_add_track_stores_a_hostile_upload_whole_or_not_at_all(
    http: httpx.Client, hostile_server: Any, auth: dict[str, str], case: str
) -> None:
    hostile = CORPUS[case]
    before = catalogue_state(hostile_server.database)
    response = add_track(http, hostile.filename, hostile.data, f"hostile {case}", auth)
    body = check_answer(response, hostile, 201)
    after = catalogue_state(hostile_server.database)
    if response.status_code != 201:
        assert after == before
    else:
        track_id = body["id"]
        assert added_whole(before, after, track_id), (before, after)
        assert set(after["files"]) >= set(before["files"])
        assert http.get(f"/v1/tracks/{track_id}").json()["spaces"] == ["cf", "content"]
    assert http.get("/healthz").status_code == 200


def test_oversize_uploads_are_413_whatever_the_framing(
    http: httpx.Client, hostile_server: Any, auth: dict[str, str]
) -> None:
    before = catalogue_state(hostile_server.database)
    from service.uploads import FORM_OVERHEAD_BYTES

    # Past the body cap (the limit plus the form's allowance) whatever the other fields.
    big = wav_bytes(tone(1.0), RATE) + bytes(UPLOAD_LIMIT + 2 * FORM_OVERHEAD_BYTES)

    def chunked() -> Iterator[bytes]:
        boundary = b"--hostile\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]
        yield b"\r\n--hostile--\r\n"

    for route, auth_headers in (("/v1/similar", {}), ("/v1/tracks", auth)):
        sized = http.post(
            route, files={"file": ("big.wav", big)}, data={"title": "big"}, headers=auth_headers
        )
        assert sized.status_code == 413 and sized.json()["error"]["code"] == "upload_too_large"
        streamed = http.post(
            route,
            content=chunked(),
            headers={**auth_headers, "Content-Type": "multipart/form-data; boundary=hostile"},
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "upload_too_large"
    assert catalogue_state(hostile_server.database) == before


ODD_FILE_NAMES = [
    "../../../../etc/passwd.wav",
    "..\\..\\windows\\system32\\x.wav",
    "/absolute/path.wav",
    "%2e%2e%2fescape.wav",
    "名前 with spaces.wav",
    "a" * 1000 + ".wav",
    ".wav",
    "no-extension",
    "double.mp3.wav",
    "nul\x00byte.wav",
    "new\nline.wav",
]


@pytest.mark.parametrize("file_name", ODD_FILE_NAMES)
def test_odd_file_names_never_reach_the_file_system(
    http: httpx.Client, hostile_server: Any, auth: dict[str, str], file_name: str
) -> None:
    """Whatever the client names its file, the audio lands in the content-addressed store."""
    audio = wav_bytes(tone(3.2, hz=300 + len(file_name) % 400), RATE)
    response = http.post(
        "/v1/tracks",
        files={"file": (file_name, audio)},
        data={"title": "odd name"},
        headers=auth,
    )
    if response.status_code != 201:
        refusal_code(response)
    for stored in catalogue_state(hostile_server.database)["files"]:
        assert _STORE_NAME.fullmatch(stored.split("/")[-1]), stored
    assert not list(Path(hostile_server.database).parent.rglob("passwd*"))


ODD_FIELDS = [
    {"title": ""},
    {"title": " "},
    {"title": "x" * 1001},
    {"title": "tab\there"},
    {"title": "nul\x00byte"},
    {"title": "\u202eright-to-left"},
    {"title": "'; DROP TABLE tracks; --"},
    {"title": "ok", "artist": "y" * 1001},
    {"title": "ok", "track_id": ""},
    {"title": "ok", "track_id": " padded "},
    {"title": "ok", "track_id": "x" * 201},
    {"title": "ok", "track_id": "../../etc/passwd"},
    {"title": "ok", "track_id": "bell\x07"},
    {"title": "ok", "track_id": "🎵"},
    {"title": "ok", "track_id": "Robert'); DROP TABLE tracks;--"},
]


@pytest.mark.parametrize("fields", ODD_FIELDS, ids=repr)
def test_odd_form_fields_are_stored_as_given_or_refused_with_a_code(
    http: httpx.Client, hostile_server: Any, auth: dict[str, str], fields: dict[str, str]
) -> None:
    before = catalogue_state(hostile_server.database)
    audio = wav_bytes(tone(3.2, hz=200 + 7 * len(repr(fields)) % 900), RATE)
    response = http.post(
        "/v1/tracks", files={"file": ("odd.wav", audio)}, data=fields, headers=auth
    )
    if response.status_code == 201:
        track = response.json()
        assert track["title"] == fields["title"]
        if fields.get("track_id"):  # an empty one is one left out: an id is made up
            assert track["id"] == fields["track_id"]
        with sqlite3.connect(Path(hostile_server.database)) as db:
            assert db.execute("SELECT count(*) FROM tracks").fetchone()[0] > 0
    else:
        refusal_code(response)
        assert catalogue_state(hostile_server.database) == before
    assert http.get("/healthz").status_code == 200


def test_the_api_is_as_strict_as_its_schema(
    http: httpx.Client, hostile_server: Any, auth: dict[str, str]
) -> None:
    """What schemathesis found: the Allow header of a 405 lists every method of the path, a
    number is not a `date-time`, and a form field sent twice is refused, not half-read."""
    allowed = http.options("/v1/tracks/some-track")
    assert allowed.status_code == 405 and allowed.headers["allow"] == "DELETE, GET"
    assert http.put("/v1/tracks").headers["allow"] == "POST"
    for played_at in (0, "0", 1.5, "2026-01-02", "2026-01-02T03:04:05"):
        listen = {"user_id": "u", "song_id": "s", "played_at": played_at}
        refused = http.post("/v1/listens", json={"listens": [listen]}, headers=auth)
        assert refused.status_code == 422, (played_at, refused.text)
        assert refused.json()["error"]["code"] == "validation_error"
    before = catalogue_state(hostile_server.database)
    twice = http.post(
        "/v1/tracks",
        files=[
            ("file", ("a.wav", wav_bytes(tone(3.2), RATE))),
            ("title", (None, "one")),
            ("title", (None, "two")),
        ],  # fmt: skip
        headers=auth,
    )
    assert twice.status_code == 422 and "title: given more than once" in twice.text
    assert catalogue_state(hostile_server.database) == before
    odd_id = http.post(
        "/v1/tracks",
        files={"file": ("a.wav", wav_bytes(tone(3.3, hz=505), RATE))},
        data={"title": "odd id", "track_id": "曲名 1"},
        headers=auth,
    )
    assert odd_id.status_code == 201, odd_id.text
    assert odd_id.headers["location"] == "/v1/tracks/%E6%9B%B2%E5%90%8D%201"
    assert http.get(odd_id.headers["location"]).json()["id"] == "曲名 1"
    before = catalogue_state(hostile_server.database)
    slash = http.post(  # a '/' would make the track's URL another path: never found again
        "/v1/tracks",
        files={"file": ("a.wav", wav_bytes(tone(3.4, hz=515), RATE))},
        data={"title": "slash", "track_id": "曲/名 1"},
        headers=auth,
    )
    assert slash.status_code == 400 and slash.json()["error"]["code"] == "invalid_track"
    assert catalogue_state(hostile_server.database) == before
