"""Hybrid placement through HTTP: a known artist places a new track by audio and artist with
the evaluation's own priors and fusion, a new artist by audio alone, odd artists get a
clear answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from corpus.artists import normalise_artist
from corpus.dataset import find_audio, read_songs
from corpus.split import load_split
from training.artist_prior import load_artist_priors
from training.fusion import hybrid_vectors, load_fusion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def writable(start_server: Any) -> Iterator[httpx.Client]:
    server = start_server().start()
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        yield http


@pytest.fixture(scope="module")
def cold_track(trained_run: Path, tiny_world: Path) -> tuple[str, str, Path, int]:
    """A test song of kind cold_track: (song id, its artist as songs.csv spells it, its
    recording, its row among the test songs)."""
    split = load_split(trained_run)
    songs = read_songs(tiny_world / "songs.csv").set_index("song_id")["artist"]
    audio = find_audio(tiny_world)
    row = (split.test_kinds or []).index("cold_track")
    song_id = split.test[row]
    return song_id, str(songs[song_id]), audio[song_id], row


def _post_track(
    client: httpx.Client, audio: Path, auth: dict[str, str], artist: str
) -> httpx.Response:
    return client.post(
        "/v1/tracks",
        files={"file": (audio.name, audio.read_bytes())},
        data={"title": "A new song", "artist": artist},
        headers=auth,
    )


def _f32(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _cnn_factors(trained_run: Path, audio: Path) -> np.ndarray:
    """The served CNN's predicted factors for `audio`: the service embeds the same way."""
    from training.checkpoint import load_encoder
    from training.inference import embed_audio

    return embed_audio(load_encoder(trained_run / "models" / "cnn"), audio).factors


def test_a_known_artist_places_the_track_as_the_evaluation_did(
    writable: httpx.Client,
    auth: dict[str, str],
    trained_run: Path,
    cold_track: tuple[str, str, Path, int],
) -> None:
    _, artist, audio, row = cold_track
    # One spelling among many: the suffix and the surrounding spaces do not matter.
    response = _post_track(writable, audio, auth, f"  {artist.upper()} feat. Somebody ")
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["placement"] == "hybrid"
    cf = _f32(created["cf_vector"])
    content = _cnn_factors(trained_run, audio)

    # The evaluation's priors and weights (the run's own files), through the evaluation's
    # function, on the service's CNN vector: the same bytes.
    priors = load_artist_priors(trained_run / "models" / "artist")
    weights = load_fusion(trained_run / "models" / "hybrid")
    prior, count = priors.lookup([normalise_artist(artist)])
    assert count[0] > 0
    expected = hybrid_vectors(content[None, :], prior, count, weights)[0]
    assert cf.tobytes() == expected.tobytes()
    assert not np.array_equal(cf, content)

    # And the CNN vector is the evaluation's, up to the mel cache's float16 rounding.
    cnn_test = np.load(trained_run / "models" / "cnn" / "test_song_factors.npy")[row]
    hybrid_test = np.load(trained_run / "models" / "hybrid" / "test_song_factors.npy")[row]
    scale = float(np.abs(cnn_test).max())
    assert float(np.abs(content - cnn_test).max()) <= 2e-3 * scale
    assert float(np.abs(cf - hybrid_test).max()) <= 2e-3 * max(scale, 1.0)


def test_a_new_artist_falls_back_to_audio(
    writable: httpx.Client,
    auth: dict[str, str],
    trained_run: Path,
    cold_track: tuple[str, str, Path, int],
) -> None:
    _, _, audio, _ = cold_track
    response = _post_track(writable, audio, auth, "Nobody Has Heard Of Us Yet")
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["placement"] == "audio"
    assert _f32(created["cf_vector"]).tobytes() == _cnn_factors(trained_run, audio).tobytes()


@pytest.mark.parametrize(
    "artist",
    ["", "     ", "\u00a0\u2003", "Ñandú & Björk 🎵 北京", "x" * 1000],
    ids=["empty", "spaces", "unicode-spaces", "unicode", "1000-chars"],
)
def test_odd_artists_are_placed_by_audio(
    writable: httpx.Client,
    auth: dict[str, str],
    cold_track: tuple[str, str, Path, int],
    artist: str,
) -> None:
    _, _, audio, _ = cold_track
    response = _post_track(writable, audio, auth, artist)
    assert response.status_code == 201, response.text
    assert response.json()["placement"] == "audio"


def test_control_characters_are_a_clear_400(
    writable: httpx.Client, auth: dict[str, str], cold_track: tuple[str, str, Path, int]
) -> None:
    _, _, audio, _ = cold_track
    response = _post_track(writable, audio, auth, "Nina\tHolm")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_track"


def test_an_overlong_artist_is_a_clear_422(
    writable: httpx.Client, auth: dict[str, str], cold_track: tuple[str, str, Path, int]
) -> None:
    _, _, audio, _ = cold_track
    for response in (
        _post_track(writable, audio, auth, "y" * 10_000),
        writable.post(
            "/v1/similar",
            files={"file": (audio.name, audio.read_bytes())},
            data={"artist": "y" * 10_000},
        ),
    ):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error" and "artist" in json.dumps(error)


def test_similar_takes_an_artist(
    writable: httpx.Client, cold_track: tuple[str, str, Path, int]
) -> None:
    _, artist, audio, _ = cold_track

    def similar(space: str, **data: str) -> dict[str, Any]:
        response = writable.post(
            f"/v1/similar?space={space}&k=5",
            files={"file": (audio.name, audio.read_bytes())},
            data=data,
        )
        assert response.status_code == 200, response.text
        return response.json()

    with_artist = similar("cf", artist=artist)
    assert with_artist["placement"] == "hybrid"
    assert similar("cf")["placement"] == "audio"
    assert similar("cf", artist="   ")["placement"] == "audio"
    assert similar("cf", artist="Ñandú 🎵")["placement"] == "audio"
    assert similar("content", artist=artist)["placement"] == "audio"  # sound only
    assert len(with_artist["results"]) == 5
