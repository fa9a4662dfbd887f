"""Retrains on request, and their records: queue a run for the scheduler, list runs.

Every route here needs a write key. The scheduler (`coldstart scheduler`) executes the
queued run; these routes only touch the catalogue's `pipeline_runs`, so they answer at
once whether or not a model is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from catalogue import Catalogue
from catalogue.runs import (
    MAX_RUNS_LISTED,
    RUN_ID_LENGTH,
    RunNotFound,
    get_run,
    list_runs,
    request_run,
)
from service.deps import Credentials, RuntimeDep, WriteAccess
from service.errors import NotFound, NotReady, responses
from service.schemas import (
    ErrorResponse,
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
