"""GET /v1/model and what the page's card and map read: the report's tables as they are,
the evaluation's figures (only the names the version lists), the catalogue's 2-D map, and
an upload's place on it; hostile names and parameters get a 4xx JSON, never a 500."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.registry.catalogue_map import MAP_FILE, MAP_MAX_POINTS
from service.schemas import Evaluation

pytestmark = pytest.mark.slow


def test_the_report_passes_through_with_its_kinds_and_new_metrics() -> None:
    """A metric the report gains (recall@k, NDCG, ...) reaches the page without a schema
    change; kinds and gap shares come along."""
    table = {
        "n_users": 10,
        "n_test_songs": 4,
        "models": {"cnn": {"map": 0.2, "auc": 0.7, "recall": {"50": 0.4}, "ndcg@500": 0.3}},
        "expected_random": {"map": 0.1, "auc": 0.5},
        "gap_closed": {"cnn": {"map": 0.25, "auc": None}},
    }
    report = {**table, "k": 500, "n_train_songs": 9, "kinds": {"cold_track": table}}
    shown = Evaluation.model_validate(report).model_dump()
    assert shown["models"]["cnn"]["recall"] == {"50": 0.4}
    assert shown["kinds"]["cold_track"]["models"]["cnn"]["ndcg@500"] == 0.3
    assert shown["gap_closed"]["cnn"] == {"map": 0.25, "auc": None}
    old = {key: report[key] for key in ("k", "n_users", "n_test_songs", "n_train_songs")}
    old |= {"models": {"cnn": {"map": 0.2, "auc": 0.7}}, "expected_random": {"map": 0, "auc": 0}}
    assert Evaluation.model_validate(old).kinds == {}  # a report from before kinds


def test_the_card_the_figures_and_the_map(client: httpx.Client, registry: Any) -> None:
    folder = registry.folder / "versions" / registry.version_id
    report = json.loads((folder / "report.json").read_text())
    model = client.get("/v1/model").json()
    assert model["plots"] == ["metrics.png", "song_map.png"]
    assert model["evaluation"]["kinds"].keys() == report["kinds"].keys()
    assert model["evaluation"]["gap_closed"] == report["gap_closed"]
    for name in model["plots"]:
        plot = client.get(f"/v1/model/plots/{name}")
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
        assert plot.content == (folder / "plots" / name).read_bytes()

    for space in ("cf", "content"):
        answer = client.get("/v1/model/map", params={"space": space})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == registry.version_id and body["space"] == space
        assert body["n_songs"] == len(body["points"]) == 120
        assert len(body["explained_variance"]) == 2 and 0 < sum(body["explained_variance"]) <= 1
        assert all(point["title"] and point["artist"] for point in body["points"])
        first = client.get("/v1/model/map", params={"space": space, "limit": 5}).json()
        assert first["points"] == body["points"][:5]  # the same songs, whatever the limit
    assert client.get("/v1/model/map").json()["space"] == "cf"


@pytest.mark.parametrize("space", ["cf", "content"])
def test_an_upload_lands_on_the_map_where_its_song_is(
    client: httpx.Client, tiny_world: Path, space: str
) -> None:
    """A catalogue song's own recording, uploaded, lands on its own point (the mel cache is
    float16, the upload's mel float32: near, not equal), and its neighbours on theirs."""
    points = {
        point["id"]: (point["x"], point["y"])
        for point in client.get("/v1/model/map", params={"space": space}).json()["points"]
    }
    spread = np.ptp(np.array(list(points.values())), axis=0).max()
    song = sorted((tiny_world / "audio").iterdir())[3]
    answer = client.post(
        "/v1/similar",
        params={"k": 5, "space": space},
        files={"file": (song.name, song.read_bytes())},
    ).json()
    on_map = answer["on_map"]
    assert [point["id"] for point in on_map["neighbours"]] == [
        hit["id"] for hit in answer["results"]
    ]
    for point in on_map["neighbours"]:
        np.testing.assert_allclose((point["x"], point["y"]), points[point["id"]], atol=1e-4)
    if space == "content":  # audio alone places it: its own stored vector, nearly
        assert answer["results"][0]["id"] == song.stem
        np.testing.assert_allclose((on_map["x"], on_map["y"]), points[song.stem], atol=spread / 100)


HOSTILE_PLOT_NAMES = [
    "manifest.json",
    "report.json",
    "..%2Fmanifest.json",
    "%2e%2e%2f%2e%2e%2fcurrent",
    "..%5C..%5Cmanifest.json",
    "metrics.png%00.json",
    "METRICS.PNG",
    "metrics.png ",
    "plots%2Fmetrics.png",
    "m%C3%A9trics.png",
    "%F0%9F%8E%B5.png",
    "a" * 5000,
]


@pytest.mark.parametrize("name", HOSTILE_PLOT_NAMES)
def test_only_the_listed_figures_are_served(client: httpx.Client, name: str) -> None:
    answer = client.get(f"/v1/model/plots/{name}")
    assert answer.status_code in (404, 422), answer.text
    assert answer.json()["error"]["code"] in {"plot_not_found", "not_found", "validation_error"}
    assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": str(MAP_MAX_POINTS + 1)},
        {"limit": "1" + "0" * 40},
        {"limit": "1e3"},
        {"limit": "NaN"},
        {"space": "../content"},
        {"space": "CF"},
        {"space": "x" * 10_000},
    ],
)
def test_bad_map_parameters_are_refused(client: httpx.Client, params: dict[str, Any]) -> None:
    answer = client.get("/v1/model/map", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"


def test_a_version_from_before_maps_and_figures_still_serves(
    registry: Any, audio_assets: Path, tmp_path: Path
) -> None:
    """A version published before maps (no map.npz, no plots/ in its manifest): the card
    lists no figure, the map and figure routes say why with their codes, uploads answer
    `on_map: null`."""
    from service.app import create_app
    from service.settings import Settings

    old = tmp_path / "registry"
    shutil.copytree(registry.folder, old)
    folder = old / "versions" / registry.version_id
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in [MAP_FILE, *(name for name in manifest["files"] if name.startswith("plots/"))]:
        del manifest["files"][name]
        (folder / name).unlink()
    shutil.rmtree(folder / "plots")
    (folder / "manifest.json").write_text(json.dumps(manifest))

    settings = Settings(registry=old, database_url=f"sqlite:///{tmp_path / 'catalogue.db'}")
    with TestClient(create_app(settings)) as app:
        assert app.get("/v1/model").json()["plots"] == []
        plot = app.get("/v1/model/plots/metrics.png")
        assert plot.status_code == 404 and plot.json()["error"]["code"] == "plot_not_found"
        missing = app.get("/v1/model/map")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "map_not_available"
        audio = audio_assets / "vibe_ace.mp3"
        answer = app.post("/v1/similar", files={"file": (audio.name, audio.read_bytes())})
        assert answer.status_code == 200 and answer.json()["on_map"] is None
