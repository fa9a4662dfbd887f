"""GET /v1/users/{user_id}/recommendations: songs for a listener, new tracks included."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from catalogue.models import MAX_ID_LENGTH
from service.deps import K, RuntimeDep
from service.errors import responses
from service.schemas import RecommendationsResponse

router = APIRouter(tags=["users"])


@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=RecommendationsResponse,
    responses=responses(401, 404, 422, 503),
    summary="Recommendations for a user",
)
def recommendations(
    runtime: RuntimeDep,
    user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    k: K = 10,
    only_new: Annotated[
        bool, Query(description="Only cold tracks: songs nobody has listened to yet.")
    ] = False,
    include_played: Annotated[
        bool, Query(description="Keep the songs the user has played (left out by default).")
    ] = False,
) -> RecommendationsResponse:
    """Rank the cf space by the inner product of the user's vector with each song's
    (cold tracks sit at their predicted factors), best first, leaving out the songs the user
    played. The vector is the user's WMF factors, or, for a listener new since the model
    version or whose listens changed, folded in from their listens (`user_vector`). A user
    without listens is 404 `user_not_found`."""
    found = runtime.recommend(user_id, k, only_new, include_played)
    return RecommendationsResponse(
        user_id=user_id,
        model_version=runtime.require_version().version_id,
        user_vector=found.user_vector,
        only_new=only_new,
        include_played=include_played,
        played_songs=found.played,
        k=k,
        results=runtime.hits(found.neighbours),
    )
