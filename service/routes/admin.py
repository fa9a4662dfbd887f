"""Retrains on request, and their records: queue a run for the scheduler, list runs; the
registry's versions, and making one of them current (a rollback).

Every route here needs a write key. The scheduler (`coldstart scheduler`) executes the
queued run; the run routes only touch the catalogue's `pipeline_runs`, so they answer at
once whether or not a model is loaded. An activation switches `REG/current` (logged in the
registry and in the run history, naming the key) and swaps this replica to it before it
answers, with no failed request; the other replicas follow at their next poll.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from artifacts.manifest import ArtifactError
from catalogue import Catalogue
from catalogue.runs import (
    MAX_RUNS_LISTED,
    RUN_ID_LENGTH,
    RunNotFound,
    get_run,
    list_runs,
    request_run,
)
from pipeline.registry.layout import RegistryError
from service.deps import Credentials, RuntimeDep, WriteAccess
from service.errors import Conflict, NotFound, NotReady, responses
from service.schemas import (
    ActivateRequest,
    ActivateResponse,
    ErrorResponse,
    ModelVersion,
    ModelVersionsResponse,
    PipelineRun,
    PipelineRunDetail,
    PipelineRunsResponse,
    RetrainResponse,
)

router = APIRouter(tags=["admin"], dependencies=[WriteAccess])
RunId = Annotated[
    str, Path(pattern=f"^[0-9a-f]{{{RUN_ID_LENGTH}}}$", description="A run's id (16 hex digits).")
]
_RUN_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No run has this id (`run_not_found`)"}
}
VersionId = Annotated[
    str,
    Path(
        pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{10}(-[0-9]+)?$",
        description="A version's id (`coldstart model list`, GET /v1/admin/versions).",
    ),
]
_REGISTRY_NOT_WRITABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorResponse,
        "description": "The registry cannot be written here (`registry_not_writable`)",
    }
}
_VERSION_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No version has this id (`version_not_found`)"},
    409: {
        "model": ErrorResponse,
        "description": "The version's files differ from its manifest (`version_unusable`)",
    },
}


def _catalogue(runtime: RuntimeDep) -> Catalogue:
    if runtime.catalogue is None:
        raise NotReady("the catalogue is not open yet", code="catalogue_not_open")
    return runtime.catalogue


def key_label(credentials: Credentials) -> str | None:
    """Who asked, without the key: `key:` and the first 8 hex digits of its sha256."""
    if credentials is None:
        return None
    return "key:" + hashlib.sha256(credentials.credentials.encode()).hexdigest()[:8]


@router.post(
    "/v1/admin/retrain",
    response_model=RetrainResponse,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(401),
    summary="Queue a retrain for the scheduler",
)
def retrain(runtime: RuntimeDep, credentials: Credentials) -> RetrainResponse:
    """Queue a pipeline run (or join the one already waiting: one retrain at a time). The
    scheduler starts it within a poll; follow it at GET /v1/admin/runs/{run_id}."""
    run, already = request_run(_catalogue(runtime), "api", requested_by=key_label(credentials))
    return RetrainResponse(
        run=PipelineRun.model_validate(dataclasses.asdict(run)), already_queued=already
    )


@router.get(
    "/v1/admin/runs",
    response_model=PipelineRunsResponse,
    responses=responses(401, 422),
    summary="Recent pipeline runs, newest first",
)
def runs(
    runtime: RuntimeDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_RUNS_LISTED, description=f"How many (1-{MAX_RUNS_LISTED}).")
    ] = 20,
) -> PipelineRunsResponse:
    return PipelineRunsResponse(
        runs=[
            PipelineRun.model_validate(dataclasses.asdict(run))
            for run in list_runs(_catalogue(runtime), limit)
        ]
    )


@router.get(
    "/v1/admin/runs/{run_id}",
    response_model=PipelineRunDetail,
    responses={**responses(401, 422), **_RUN_NOT_FOUND},
    summary="One pipeline run with its summary",
)
def run(runtime: RuntimeDep, run_id: RunId) -> PipelineRunDetail:
    try:
        record = get_run(_catalogue(runtime), run_id)
    except RunNotFound as error:
        raise NotFound(str(error), code="run_not_found") from error
    return PipelineRunDetail.model_validate(dataclasses.asdict(record))


@router.get(
    "/v1/admin/versions",
    response_model=ModelVersionsResponse,
    responses=responses(401),
    summary="The registry's model versions, newest first",
)
def versions(runtime: RuntimeDep) -> ModelVersionsResponse:
    """Every kept version with its date, its evaluation and gate numbers, and which one is
    current (served) or withdrawn (rolled back from)."""
    found = runtime.versions()
    return ModelVersionsResponse(
        current=next((v.id for v in found if v.current), None),
        versions=[ModelVersion.model_validate(version.to_json()) for version in found],
    )


@router.post(
    "/v1/admin/versions/{version_id}/activate",
    response_model=ActivateResponse,
    responses={**responses(400, 401, 422), **_VERSION_ERRORS, **_REGISTRY_NOT_WRITABLE},
    summary="Make a version current (a rollback)",
)
def activate(
    runtime: RuntimeDep,
    credentials: Credentials,
    version_id: VersionId,
    body: ActivateRequest | None = None,
) -> ActivateResponse:
    """Point REG/current at a kept version, record it in the run history (trigger `api`,
    status `activated`, who asked: the key's label; `note`), and swap this replica to it as
    to a newly published one; the next nightly run's gate compares with it, and the version
    rolled back from no longer counts toward the gate's floor."""
    note = body.note if body else None
    try:
        activation, run_id = runtime.activate(version_id, key_label(credentials), note)
    except RegistryError as error:
        raise NotFound(str(error), code="version_not_found") from error
    except ArtifactError as error:
        raise Conflict(str(error), code="version_unusable") from error
    except OSError as error:  # e.g. a registry mounted read-only here
        raise NotReady(
            f"the model registry cannot be written: {error}", code="registry_not_writable"
        ) from error
    serving = runtime.state.serving
    return ActivateResponse(
        version=activation.version,
        previous=activation.previous,
        changed=activation.changed,
        serving=serving.version.version_id if serving else None,
        run_id=run_id,
    )
