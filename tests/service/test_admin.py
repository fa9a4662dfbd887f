"""The admin API on a live server: retrains queued (one at a time) and their records; the
versions of an empty registry (activations with a model: tests/service/test_hot_swap.py).

The server runs on an empty registry: these routes touch only the catalogue and the
registry, so they answer without a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from catalogue import open_catalogue
from catalogue.runs import claim_next, finish_run, get_run
from tests.service.conftest import API_KEY, LiveServer


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("admin")
    server = LiveServer(folder / "registry", folder / "catalogue.db", folder / "server.log")
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def http(admin_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=admin_server.url, timeout=30.0) as client:
        yield client


AUTH = {"Authorization": f"Bearer {API_KEY}"}
ROUTES = [
    ("POST", "/v1/admin/retrain"),
    ("GET", "/v1/admin/runs"),
    ("GET", "/v1/admin/runs/0123456789abcdef"),
    ("GET", "/v1/admin/versions"),
    ("POST", "/v1/admin/versions/20260101T000000Z-0123456789/activate"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-key"}])
def test_every_admin_route_needs_the_write_key(http, method, path, headers):
    answer = http.request(method, path, headers=headers)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_retrain_queues_one_run_and_records_who_asked(http, admin_server):
    first = http.post("/v1/admin/retrain", headers=AUTH)
    assert first.status_code == 202, first.text
    body = first.json()
    run = body["run"]
    assert not body["already_queued"] and run["status"] == "queued" and run["trigger"] == "api"
    label = "key:" + hashlib.sha256(API_KEY.encode()).hexdigest()[:8]
    assert run["requested_by"] == label and API_KEY not in first.text

    again = http.post("/v1/admin/retrain", headers=AUTH)
    assert again.status_code == 202 and again.json() == {"run": run, "already_queued": True}

    listed = http.get("/v1/admin/runs", headers=AUTH)
    assert listed.status_code == 200 and [r["id"] for r in listed.json()["runs"]] == [run["id"]]

    # a scheduler (here: its repository calls on the same database) runs and finishes it
    with open_catalogue(Path(admin_server.database)) as catalogue:
        assert claim_next(catalogue).id == run["id"]
        summary = {"run_id": run["id"], "outcome": "refused", "steps": [{"name": "gate"}]}
        finish_run(catalogue, run["id"], "refused", exit_code=3, message="worse", summary=summary)
        assert get_run(catalogue, run["id"]).requested_by == label  # never the key itself

    detail = http.get(f"/v1/admin/runs/{run['id']}", headers=AUTH)
    assert detail.status_code == 200
    assert detail.json()["status"] == "refused" and detail.json()["exit_code"] == 3
    assert detail.json()["summary"] == summary

    newer = http.post("/v1/admin/retrain", headers=AUTH).json()
    assert not newer["already_queued"] and newer["run"]["id"] != run["id"]
    runs = http.get("/v1/admin/runs", params={"limit": 5}, headers=AUTH).json()["runs"]
    assert [r["id"] for r in runs] == [newer["run"]["id"], run["id"]]
    assert "summary" not in runs[0]  # the list stays small; summaries are per run
    one = http.get("/v1/admin/runs", params={"limit": 1}, headers=AUTH).json()["runs"]
    assert [r["id"] for r in one] == [newer["run"]["id"]]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/admin/runs/0123456789abcdef", {}, 404, "run_not_found"),
        ("/v1/admin/runs/" + "a" * 10_000, {}, 422, "validation_error"),
        ("/v1/admin/runs/..%2F..%2Fcurrent", {}, 404, "not_found"),  # no such route
        ("/v1/admin/runs", {"limit": 0}, 422, "validation_error"),
        ("/v1/admin/runs", {"limit": 1001}, 422, "validation_error"),
        ("/v1/admin/runs", {"limit": "ten"}, 422, "validation_error"),
        (
            "POST /v1/admin/versions/20260101T000000Z-0123456789/activate",
            {},
            404,
            "version_not_found",
        ),
        ("POST /v1/admin/versions/../current/activate", {}, 404, "not_found"),
        ("POST /v1/admin/versions/latest/activate", {}, 422, "validation_error"),
        ("POST /v1/admin/versions/" + "2" * 5000 + "/activate", {}, 422, "validation_error"),
    ],
)
def test_hostile_input_gets_a_json_error(http, path, params, status, code):
    method, _, path = path.rpartition(" ")
    answer = http.request(method or "GET", path, params=params, headers=AUTH)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == code


def test_the_schema_documents_the_admin_routes(http):
    paths = http.get("/openapi.json").json()["paths"]
    assert paths["/v1/admin/retrain"]["post"]["security"] == [{"ApiKey": []}]
    assert set(paths["/v1/admin/runs/{run_id}"]["get"]["responses"]) >= {"200", "401", "404"}


def test_an_empty_registry_lists_no_versions(http):
    answer = http.get("/v1/admin/versions", headers=AUTH)
    assert answer.status_code == 200 and answer.json() == {"current": None, "versions": []}
    body = http.post(
        "/v1/admin/versions/20260101T000000Z-0123456789/activate",
        json={"note": "x" * 501},
        headers=AUTH,
    )
    assert body.status_code == 422 and body.json()["error"]["code"] == "validation_error"
