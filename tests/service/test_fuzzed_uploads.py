"""Both upload routes against a seeded fuzzed corpus (tests/fuzz_audio.py: the real
recordings with flipped, cut, spliced, repeated, deleted and zeroed bytes): every answer is
a 2xx or a 4xx JSON error with a stable code, never a 5xx; the server stays up throughout;
a refused upload leaves the catalogue exactly as it was, and an added track is whole (row,
vector, event) and is deleted again. The full run (2,000+ files, with the server's memory)
is `bench/fuzz_uploads.py`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fuzz_audio import FuzzCase, fuzz_corpus
from tests.service.upload_answers import add_track, added_whole, catalogue_state, refusal_code

pytestmark = pytest.mark.slow

CASES = 300
SEED = 31
K = 3


@pytest.fixture(scope="module")
def corpus() -> list[FuzzCase]:
    return list(fuzz_corpus(CASES, SEED))


@pytest.fixture(scope="module")
def fuzz_server(start_server: Any) -> Iterator[Any]:
    """A server with a catalogue of its own, stopped once this module is done."""
    server = start_server().start()
    yield server
    server.stop()


@pytest.fixture
def http(fuzz_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.url, timeout=60.0) as client:
        yield client


def still_up(server: Any, http: httpx.Client, case: FuzzCase) -> None:
    assert server.alive(), f"the server died at {case.name} ({case.mutation}):\n{server.log_tail()}"
    assert http.get("/healthz").status_code == 200, f"not healthy after {case.name}"


def answered(response: httpx.Response, case: FuzzCase, success: int) -> str:
    """The outcome: "ok", or the stable code of a refusal; anything else fails, naming it."""
    assert response.status_code < 500, (case.name, case.mutation, response.text[:500])
    if response.status_code == success:
        return "ok"
    try:
        return refusal_code(response)
    except AssertionError as error:
        raise AssertionError(f"{case.name} ({case.mutation}): {error}") from error


def mix_of(outcomes: Counter[str]) -> None:
    """The corpus must reach both the decoder's refusals and the model: a fuzz that only
    ever gets one answer tests little."""
    assert outcomes["ok"] >= CASES // 10, outcomes
    assert sum(outcomes.values()) - outcomes["ok"] >= CASES // 10, outcomes


def test_similar_answers_every_fuzzed_upload(
    http: httpx.Client, fuzz_server: Any, corpus: list[FuzzCase]
) -> None:
    before = catalogue_state(fuzz_server.database)
    outcomes: Counter[str] = Counter()
    for case in corpus:
        response = http.post(
            "/v1/similar", params={"k": K}, files={"file": (case.filename, case.data)}
        )
        outcome = answered(response, case, 200)
        if outcome == "ok":
            assert len(response.json()["results"]) == K, case.name
        outcomes[outcome] += 1
        still_up(fuzz_server, http, case)
    assert catalogue_state(fuzz_server.database) == before  # /v1/similar never writes
    mix_of(outcomes)


def test_add_track_stores_a_fuzzed_upload_whole_or_not_at_all(
    http: httpx.Client, fuzz_server: Any, auth: dict[str, str], corpus: list[FuzzCase]
) -> None:
    outcomes: Counter[str] = Counter()
    for case in corpus:
        before = catalogue_state(fuzz_server.database)
        response = add_track(http, case.filename, case.data, f"fuzzed {case.name}", auth)
        outcome = answered(response, case, 201)
        outcomes[outcome] += 1
        after = catalogue_state(fuzz_server.database)
        if outcome != "ok":
            assert after == before, (case.name, case.mutation, response.json())
        else:
            track_id = response.json()["id"]
            assert added_whole(before, after, track_id), (case.name, before, after)
            deleted = http.delete(f"/v1/tracks/{track_id}", headers=auth)
            assert deleted.status_code == 204, (case.name, deleted.text)
            gone = catalogue_state(fuzz_server.database)
            assert (gone["cold"], gone["vectors"]) == (before["cold"], before["vectors"])
        still_up(fuzz_server, http, case)
    mix_of(outcomes)
