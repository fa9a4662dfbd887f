"""What an answer to an untrusted upload may be, and what a refused one may leave behind.

Shared by the hostile and the fuzzed upload tests (tests/service/test_hostile_uploads.py,
test_fuzzed_uploads.py) and the fuzz benchmark (bench/fuzz_uploads.py): every answer is a
2xx or a 4xx `{"error": {"code", "message"}}` whose code is in `STABLE_CODES`, and a
refused upload leaves `catalogue_state` as it was.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

STABLE_CODES = frozenset(
    {
        "audio_empty",
        "audio_undecodable",
        "audio_too_short",
        "audio_silent",
        "audio_invalid_samples",
        "audio_unembeddable",
        # A decode in a worker process (issue #31) that crashed, ran past its deadline or
        # past its memory limit.
        "audio_decoder_failed",
        "audio_decode_timeout",
        "audio_decode_out_of_memory",
        "upload_too_large",
        "unknown_audio_format",
        "invalid_track",
        "track_exists",
        "validation_error",
        "malformed_body",
        "unsupported_media_type",
    }
)


def refusal_code(response: httpx.Response) -> str:
    """The stable code of a refused upload; asserts the answer is a 4xx in the one error
    shape with a code of `STABLE_CODES` and a message."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert error["code"] in STABLE_CODES, (response.status_code, error)
    assert isinstance(error["message"], str) and error["message"], error
    return str(error["code"])


def add_track(
    http: httpx.Client, filename: str, data: bytes, title: str, headers: dict[str, str]
) -> httpx.Response:
    """POST /v1/tracks: `data` uploaded as `filename`, titled `title`, by the artist "tests"."""
    return http.post(
        "/v1/tracks",
        files={"file": (filename, data)},
        data={"title": title, "artist": "tests"},
        headers=headers,
    )


def catalogue_state(database: Path | str) -> dict[str, Any]:
    """What a write can leave in the SQLite catalogue `database`: cold rows, vectors,
    events, and the files of its audio store (`<database>.audio/`, uploads in flight aside)."""
    database = Path(database)
    with closing(sqlite3.connect(database)) as db:
        cold = {row[0] for row in db.execute("SELECT id FROM tracks WHERE origin = 'cold'")}
        vectors = {row[0] for row in db.execute("SELECT track_id FROM track_vectors")}
        events = db.execute("SELECT count(*) FROM track_events").fetchone()[0]
    store = Path(f"{database}.audio")
    files = sorted(
        p.relative_to(store).as_posix()
        for p in store.rglob("*")
        if p.is_file() and ".incoming" not in p.parts
    )
    return {"cold": cold, "vectors": vectors, "events": events, "files": files}


def added_whole(before: dict[str, Any], after: dict[str, Any], track_id: str) -> bool:
    """Whether the catalogue went from `before` to `after` (`catalogue_state`) by adding the
    one track `track_id` whole: its cold row, its vector and one event."""
    return (
        after["cold"] == before["cold"] | {track_id}
        and after["vectors"] == before["vectors"] | {track_id}
        and after["events"] == before["events"] + 1
    )
