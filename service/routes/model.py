"""GET /v1/model: which model version answers, and how it scored."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import RuntimeDep
from service.errors import responses
from service.schemas import Evaluation, ModelInfo

router = APIRouter(tags=["model"])


@router.get(
    "/v1/model",
    response_model=ModelInfo,
    responses=responses(401, 503),
    summary="The model version being served and its evaluation",
)
def model_info(runtime: RuntimeDep) -> ModelInfo:
    """The version's id and creation time, its encoder's architecture, its counts, the
    artifacts it came from, and the run's model table (mAP@k and AUC on cold test songs,
    beside random and the WMF upper bound)."""
    version = runtime.require_version()
    manifest = version.manifest
    return ModelInfo(
        version=version.version_id,
        created_at=version.created_at,
        architecture=version.encoder.name,
        n_factors=int(manifest["n_factors"]),
        counts={name: int(value) for name, value in manifest["counts"].items()},
        evaluation=Evaluation.model_validate(version.report),
        parents=manifest["parents"],
    )
