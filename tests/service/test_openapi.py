"""The OpenAPI schema is complete and the live app keeps to it: a bounded schemathesis run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def fuzzed_server(start_server: Any) -> Any:
    """A server of its own: the fuzzer adds (and may delete) tracks and listens."""
    return start_server().start()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: Any) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


def test_schema_documents_every_route_and_error(fuzzed_server: Any) -> None:
    spec = httpx.get(f"{fuzzed_server.url}/openapi.json").json()
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert operations == {
        ("POST", "/v1/similar"),
        ("POST", "/v1/tracks"),
        ("GET", "/v1/tracks/{track_id}"),
        ("DELETE", "/v1/tracks/{track_id}"),
        ("GET", "/v1/tracks/{track_id}/similar"),
        ("GET", "/v1/tracks/{track_id}/audio"),
        ("GET", "/v1/users/{user_id}/recommendations"),
        ("POST", "/v1/listens"),
        ("GET", "/v1/model"),
        ("GET", "/v1/model/map"),
        ("GET", "/v1/model/plots/{name}"),
        ("POST", "/v1/admin/retrain"),
        ("GET", "/v1/admin/runs"),
        ("GET", "/v1/admin/runs/{run_id}"),
        ("GET", "/v1/admin/versions"),
        ("POST", "/v1/admin/versions/{version_id}/activate"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    similar = spec["paths"]["/v1/similar"]["post"]["responses"]
    assert set(similar) >= {"200", "400", "413", "415", "422", "503"}
    assert similar["415"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )
    assert spec["paths"]["/v1/tracks"]["post"]["security"] == [{"ApiKey": []}]


def test_every_audio_refusal_code_is_documented_in_the_readme_and_the_schema(
    fuzzed_server: Any,
) -> None:
    from audio.errors import AUDIO_ERROR_CODES, AudioError
    from service.errors import from_audio_error

    spec = httpx.get(f"{fuzzed_server.url}/openapi.json").json()
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for audio_code in AUDIO_ERROR_CODES:
        answer = from_audio_error(AudioError(audio_code, "x", "y"))
        assert f"`{answer.code}`" in readme, answer.code
        for route in ("/v1/similar", "/v1/tracks"):
            documented = spec["paths"][route]["post"]["responses"][str(answer.status_code)]
            assert f"`{answer.code}`" in documented["description"], (route, answer.code)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_live_app_keeps_to_its_schema(
    fuzzed_server: Any, auth: dict[str, str], mode: GenerationMode, subtests: Any
) -> None:
    """Per operation, a bounded number of generated requests (valid ones, then invalid
    ones) against the live server: no 5xx, only documented statuses, bodies and content
    types, invalid requests refused. Schema-valid data may still be refused (random bytes
    are a valid `binary` file but not audio: 415), so positive data acceptance is the one
    check left out."""
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode.is_negative and not (list(operation.iter_parameters()) or len(operation.body)):
            continue  # nothing to get wrong (GET /healthz, /readyz, /metrics, /v1/model)
        with subtests.test(msg=operation.label):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def keeps_to_schema(case: Any) -> None:
                case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])

            keeps_to_schema()
