"""GET /v1/users/{user_id}/recommendations: songs for a listener, new tracks included."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from catalogue.models import MAX_ID_LENGTH
from service.deps import K, RuntimeDep
from service.errors import responses
from service.schemas import RecommendationsResponse

router = APIRouter(tags=["users"])


# On the event loop, not a worker thread: the search takes tens of microseconds and the one
# possible database read (listens since the version, titles not kept yet) is an indexed
# lookup, where a hop to a thread and back takes two thread switches.
@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=RecommendationsResponse,
    responses=responses(401, 404, 422, 503),
    summary="Recommendations for a user",
)
async def recommendations(
    runtime: RuntimeDep,
    user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    k: K = 10,
    only_new: Annotated[
        bool, Query(description="Only cold tracks: songs nobody has listened to yet.")
    ] = False,
    include_played: Annotated[
        bool, Query(description="Keep the songs the user has played (left out by default).")
    ] = False,
) -> JSONResponse:
    """Rank the cf space by the inner product of the user's vector with each song's
    (cold tracks sit at their predicted factors), best first, leaving out the songs the user
    played. The vector is the user's WMF factors, or, for a listener new since the model
    version or whose listens changed, folded in from their listens (`user_vector`). A user
    without listens is 404 `user_not_found`."""
    found = runtime.recommend(user_id, k, only_new, include_played)
    # The body of `RecommendationsResponse`, built as plain JSON (the hot path: pydantic
    # models and their validation took more time than the search).
    return JSONResponse(
        {
            "user_id": user_id,
            "model_version": runtime.require_version().version_id,
            "scoring": "inner_product",
            "space": "cf",
            "user_vector": found.user_vector,
            "only_new": only_new,
            "include_played": include_played,
            "played_songs": found.played,
            "k": k,
            "results": runtime.hits(found.neighbours),
        }
    )
