"""Recommendations know what a user played and who arrived since the version: played songs
left out, new listeners folded in against the version's song factors (a live server with a
catalogue of its own)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(start_server: Any) -> Any:
    return start_server().start()


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        yield http


def version_file(registry: Any, name: str) -> Any:
    return json.loads((registry.folder / "versions" / registry.version_id / name).read_text())


def world_listens(tiny_world: Path) -> pd.DataFrame:
    return pd.read_csv(
        tiny_world / "listens.tsv", sep="\t", names=["user_id", "song_id", "play_count"]
    )


def recommend(client: httpx.Client, user_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/users/{user_id}/recommendations", params={"k": 500, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


def post_listens(
    client: httpx.Client, auth: dict[str, str], user_id: str, songs: list[str]
) -> None:
    body = {"listens": [{"user_id": user_id, "song_id": song, "count": 3} for song in songs]}
    response = client.post("/v1/listens", json=body, headers=auth)
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text


def folded_in_count(client: httpx.Client) -> float:
    lines = client.get("/metrics").text.splitlines()
    (value,) = [
        float(line.split()[-1])
        for line in lines
        if line.startswith("coldstart_users_folded_in_total ")
    ]
    return value


def test_played_songs_are_left_out_unless_asked(
    client: httpx.Client, auth: dict[str, str], registry: Any, tiny_world: Path
) -> None:
    listens = world_listens(tiny_world)
    user_id = version_file(registry, "user_ids.json")[5]
    played = set(listens.loc[listens["user_id"] == user_id, "song_id"])
    n_songs = len(version_file(registry, "song_ids.json"))

    body = recommend(client, user_id)
    got = {hit["id"] for hit in body["results"]}
    assert body["user_vector"] == "fitted" and not body["include_played"]
    assert body["played_songs"] == len(played) > 0
    assert not got & played and len(got) == n_songs - len(played)  # all the others, k = 500

    everything = recommend(client, user_id, include_played="true")
    assert everything["include_played"] and played <= {hit["id"] for hit in everything["results"]}

    # A song played now leaves too, and the user is folded in with it.
    fresh = next(hit["id"] for hit in body["results"])
    post_listens(client, auth, user_id, [fresh])
    after = recommend(client, user_id)
    assert after["user_vector"] == "folded_in" and after["played_songs"] == len(played) + 1
    assert fresh not in {hit["id"] for hit in after["results"]}
    assert not {hit["id"] for hit in after["results"]} & played


def test_a_new_listener_is_folded_in_and_gets_their_genre_first(
    client: httpx.Client, auth: dict[str, str], registry: Any, tiny_world: Path
) -> None:
    """Truth (the world's genres) is read by the test alone, to pick the first listens and
    to judge the answer."""
    truth = json.loads((tiny_world / "truth.json").read_text())
    genre_of = {song["song_id"]: song["genre"] for song in truth["songs"]}
    with_factors = version_file(registry, "song_ids.json")
    genre, _ = Counter(genre_of[song] for song in with_factors).most_common(1)[0]
    first = [song for song in with_factors if genre_of[song] == genre][:6]

    assert client.get("/v1/users/newcomer/recommendations").status_code == 404
    post_listens(client, auth, "newcomer", first)
    body = recommend(client, "newcomer", k=10)
    assert body["user_vector"] == "folded_in" and body["played_songs"] == len(first)
    genres = [genre_of[hit["id"]] for hit in body["results"]]
    assert genres[:3] == [genre] * 3 and genres.count(genre) >= 8, genres
    assert not {hit["id"] for hit in body["results"]} & set(first)


def test_a_folded_in_user_scores_as_implicits_recalculate_user(
    client: httpx.Client, auth: dict[str, str], registry: Any
) -> None:
    """The served scores are the inner products of implicit's `recalculate_user` (same
    confidence, regularization and song factors) with the songs' cf vectors."""
    from implicit.cpu.als import AlternatingLeastSquares

    from factorization.confidence import confidence
    from pipeline.registry import load_version

    version = load_version(registry.folder, registry.version_id)
    wmf = version.manifest["parameters"]["wmf"]
    song_ids = version_file(registry, "song_ids.json")
    songs, plays = song_ids[10:40:3], np.arange(1, 11)
    body = {
        "listens": [
            {"user_id": "exact", "song_id": s, "count": int(c)}
            for s, c in zip(songs, plays, strict=True)
        ]
    }
    assert client.post("/v1/listens", json=body, headers=auth).status_code == 200

    model = AlternatingLeastSquares(
        factors=wmf["factors"], regularization=wmf["regularization"], alpha=1.0, dtype=np.float32
    )
    assert version.song_factors is not None
    model.item_factors = np.array(version.song_factors.factors)  # a writable copy
    columns = [song_ids.index(song) for song in songs]
    weights = confidence(plays.astype(np.float32), wmf["alpha"], wmf["eps"])
    row = sp.csr_matrix((weights, ([0] * len(columns), columns)), shape=(1, len(song_ids)))
    expected = model.recalculate_user(0, row)

    served = recommend(client, "exact", k=20)
    assert served["user_vector"] == "folded_in"
    cf_ip = version.index.space("cf")  # warm songs sit at their WMF factors
    for hit in served["results"]:
        vector = version.index._indexes["cf-ip"].vector(hit["id"])
        assert hit["score"] == pytest.approx(float(vector @ expected), abs=1e-4)
    assert len(cf_ip) >= len(served["results"])


def test_a_folded_in_vector_is_kept_until_the_listens_change(
    client: httpx.Client, auth: dict[str, str], registry: Any
) -> None:
    songs = version_file(registry, "song_ids.json")
    before = folded_in_count(client)
    post_listens(client, auth, "keeper", songs[:3])  # folded in as the listens are posted
    assert folded_in_count(client) == before + 1
    first = recommend(client, "keeper", k=5)
    again = recommend(client, "keeper", k=5)
    assert folded_in_count(client) == before + 1  # kept: no solve per request
    assert first["results"] == again["results"]
    post_listens(client, auth, "keeper", songs[3:6])
    assert folded_in_count(client) == before + 2
    assert recommend(client, "keeper", k=5)["played_songs"] == 6


def test_listeners_posted_together_are_folded_in_as_each_alone(
    client: httpx.Client, auth: dict[str, str], registry: Any
) -> None:
    """One request with several users' listens, interleaved: each user is folded in at the
    post (`refresh` looks up the whole request's songs at once) exactly as the same listens
    posted for one user alone."""
    songs = version_file(registry, "song_ids.json")
    plays = {"batch-a": songs[0:4], "batch-b": songs[10:12], "batch-c": songs[20:27]}
    interleaved = [
        {"user_id": user, "song_id": song, "count": 2}
        for position in range(max(map(len, plays.values())))
        for user, theirs in plays.items()
        for song in theirs[position : position + 1]
    ]
    before = folded_in_count(client)
    response = client.post("/v1/listens", json={"listens": interleaved}, headers=auth)
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text
    assert folded_in_count(client) == before + len(plays)
    for user, theirs in plays.items():
        alone = f"alone-{user}"
        body = {"listens": [{"user_id": alone, "song_id": song, "count": 2} for song in theirs]}
        assert client.post("/v1/listens", json=body, headers=auth).status_code == 200
        together, by_itself = recommend(client, user, k=10), recommend(client, alone, k=10)
        assert together["user_vector"] == "folded_in"
        assert together["played_songs"] == len(theirs)
        assert together["results"] == by_itself["results"]


def test_users_without_a_vector_get_404_with_its_reason(
    client: httpx.Client, auth: dict[str, str], audio_assets: Path
) -> None:
    nobody = client.get("/v1/users/nobody-at-all/recommendations")
    assert nobody.status_code == 404
    assert nobody.json()["error"]["code"] == "user_not_found"
    assert "has no listens" in nobody.json()["error"]["message"]

    audio = audio_assets / "trumpet_loop.ogg"
    added = client.post(
        "/v1/tracks",
        files={"file": (audio.name, audio.read_bytes())},
        data={"title": "Brand new", "artist": "Nobody yet"},
        headers=auth,
    )
    assert added.status_code == 201, added.text
    track_id = added.json()["id"]
    post_listens(client, auth, "cold-only", [track_id])  # a track without WMF factors
    refused = client.get("/v1/users/cold-only/recommendations")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "user_not_found"
    assert "only to songs without listening factors" in refused.json()["error"]["message"]

    for bad in ({"include_played": "perhaps"}, {"k": 0}):
        response = client.get("/v1/users/cold-only/recommendations", params=bad)
        assert (
            response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
        )
