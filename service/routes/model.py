"""GET /v1/model: which model version answers, how it scored, its figures and its map."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from pipeline.registry.catalogue_map import MAP_MAX_POINTS
from service.deps import RuntimeDep, SpaceQuery
from service.errors import NotFound, responses
from service.schemas import CatalogueMapResponse, ErrorResponse, Evaluation, ModelInfo

router = APIRouter(tags=["model"])
MAX_PLOT_NAME_LENGTH = 100


def _not_found(description: str) -> dict[int | str, dict[str, Any]]:
    return {404: {"model": ErrorResponse, "description": description}}


@router.get(
    "/v1/model",
    response_model=ModelInfo,
    responses=responses(401, 503),
    summary="The model version being served and its evaluation",
)
def model_info(runtime: RuntimeDep) -> ModelInfo:
    """The version's id and creation time, its encoder's architecture, its counts, the
    artifacts it came from, and the run's model table (mAP@k and AUC, and whatever else the
    report holds, on cold test songs beside random and the WMF upper bound; per kind of cold
    song too), with the names of the evaluation's figures."""
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
        plots=sorted(version.plots),
    )


@router.get(
    "/v1/model/plots/{name}",
    response_class=Response,
    responses={
        200: {
            "description": "The figure, as the evaluation drew it.",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        **responses(401, 422, 503),
        **_not_found("The version has no figure of this name (`plot_not_found`)"),
    },
    summary="One of the evaluation's figures",
)
def model_plot(
    runtime: RuntimeDep,
    name: Annotated[
        str,
        Path(
            max_length=MAX_PLOT_NAME_LENGTH,
            description="A name GET /v1/model lists in `plots`, e.g. `metrics.png`.",
        ),
    ],
) -> Response:
    """A PNG the run's evaluation drew (`metrics.png`: the model table as bars;
    `song_map.png`: a t-SNE of the song factors). Only the names the version's manifest
    lists are served."""
    version = runtime.require_version()
    path = version.plots.get(name)
    try:
        content = path.read_bytes() if path is not None else None
    except FileNotFoundError:  # its version was pruned meanwhile
        content = None
    if content is None:
        raise NotFound(
            f"model version {version.version_id} has no plot {name!r}"
            f" (it has: {', '.join(sorted(version.plots)) or 'none'})",
            code="plot_not_found",
        )
    return Response(content, media_type="image/png")


@router.get(
    "/v1/model/map",
    response_model=CatalogueMapResponse,
    responses={
        **responses(401, 422, 503),
        **_not_found("The version carries no map of this space (`map_not_available`)"),
    },
    summary="A 2-D map of the catalogue in one space",
)
def catalogue_map(
    runtime: RuntimeDep,
    space: SpaceQuery = "cf",
    limit: Annotated[
        int,
        Query(ge=1, le=MAP_MAX_POINTS, description=f"How many songs at most (1-{MAP_MAX_POINTS})."),
    ] = MAP_MAX_POINTS,
) -> CatalogueMapResponse:
    """The space's songs on its two principal axes, fitted when the version was published;
    POST /v1/similar places an upload and its neighbours on the same map (`on_map`). A
    big catalogue is drawn by a fixed sample: the songs of smallest hash of their id, the
    same for every request to this version."""
    return runtime.map_songs(space, limit)
