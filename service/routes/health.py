"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import RuntimeDep
from service.errors import responses
from service.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=responses(503),
    summary="A model version and its index are loaded",
)
def readyz(runtime: RuntimeDep) -> Readiness:
    version = runtime.require_version()
    return Readiness(
        model_version=version.version_id,
        songs={space: len(version.index.space(space)) for space in ("cf", "content")},
        worker=os.getpid(),
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
