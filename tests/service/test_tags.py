"""Tags: a version served by `musicnn-msd` (frozen, with MSD_musicnn's tag head) or by
`dieleman-msd` (the frozen teacher beside the trained network) returns each recording's top
tags on POST /v1/similar, POST /v1/tracks and GET /v1/tracks/{id}; one served by a model
without a tag head (`dieleman`) returns `tags: null`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import API_KEY
from training.encoders.musicnn_weights import CACHE_ENV
from training.inference import TOP_TAGS

ASSET = "vibe_ace.mp3"


@pytest.fixture(scope="module", params=["musicnn-msd", "dieleman-msd"])
def tagging_client(
    request: pytest.FixtureRequest,
    tiny_world: Path,
    trained_run: Path,
    musicnn_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    """The service over a version whose CNN is a tiny-trained tagging architecture."""
    from audio.cache import featurize_dataset
    from evaluation.report import evaluate_run
    from pipeline.registry import publish_run
    from service.app import create_app
    from service.settings import Settings
    from tests.tiny import tiny_settings
    from training.encoders import default_front_end
    from training.run import train_run

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(CACHE_ENV, str(musicnn_cache))
        name = request.param
        run = tmp_path_factory.mktemp(f"run-{name}")
        shutil.copytree(trained_run / "factorization", run / "factorization")
        featurize_dataset(tiny_world, config=default_front_end(name), progress=False)
        cnn = tiny_settings(name)
        train_run(run, dataset_root=tiny_world, cnn=cnn, linear=None, progress=False)
        evaluate_run(run, seed=0, progress=False, dataset_root=tiny_world)
        registry = tmp_path_factory.mktemp(f"registry-{name}")
        publish_run(run, registry)
    database = tmp_path_factory.mktemp("catalogue") / "catalogue.db"
    settings = Settings(
        registry=registry, database_url=f"sqlite:///{database}", api_keys=(API_KEY,)
    )
    with TestClient(create_app(settings)) as client:
        yield client


def assert_top_tags(tags: Any) -> None:
    assert isinstance(tags, list) and len(tags) == TOP_TAGS
    probabilities = [tag["probability"] for tag in tags]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert all(isinstance(tag["tag"], str) and tag["tag"] for tag in tags)


@pytest.mark.slow
def test_a_tagging_model_returns_each_recordings_top_tags(
    tagging_client: TestClient, audio_assets: Path
) -> None:
    audio = (audio_assets / ASSET).read_bytes()
    similar = tagging_client.post("/v1/similar", files={"file": (ASSET, audio)})
    assert similar.status_code == 200, similar.text
    assert_top_tags(similar.json()["tags"])

    created = tagging_client.post(
        "/v1/tracks",
        files={"file": (ASSET, audio)},
        data={"title": "Vibe", "track_id": "tagged"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["tags"] == similar.json()["tags"]  # the same audio, the same model

    stored = tagging_client.get("/v1/tracks/tagged")
    assert stored.status_code == 200, stored.text
    tags = stored.json()["tags"]
    assert_top_tags(tags)
    assert [tag["tag"] for tag in tags] == [tag["tag"] for tag in similar.json()["tags"]]


def test_a_model_without_a_tag_head_returns_no_tags(
    client: httpx.Client, audio_assets: Path
) -> None:
    audio = (audio_assets / ASSET).read_bytes()
    answer = client.post("/v1/similar", files={"file": (ASSET, audio)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["tags"] is None
    some_song = answer.json()["results"][0]["id"]
    track = client.get(f"/v1/tracks/{some_song}")
    assert track.status_code == 200 and track.json()["tags"] is None
