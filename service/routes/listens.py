"""POST /v1/listens: record plays: the user's recommendations count them at once (played
songs left out, the user folded in), the next factorization fits them."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import RuntimeDep, WriteAccess
from service.errors import Unprocessable, responses
from service.schemas import ListensRequest, ListensResponse

router = APIRouter(tags=["listens"])


@router.post(
    "/v1/listens",
    response_model=ListensResponse,
    dependencies=[WriteAccess],
    responses=responses(400, 401, 413, 422),
    summary="Record a batch of listens",
)
def add_listens(runtime: RuntimeDep, batch: ListensRequest) -> ListensResponse:
    """Each item is judged alone and the answer is 200 with one result per item, in order:
    `stored` (committed before this answer is sent) or `rejected` with its error (e.g.
    `unknown_song`). User ids are an open set: a listen is how a new user becomes known;
    their recommendations leave the song out and fold the user in against the served
    version at once, and the next factorization fits them. A malformed body is a 422 for
    the whole batch, nothing stored."""
    limit = runtime.settings.max_listens_per_request
    if len(batch.listens) > limit:
        raise Unprocessable(
            f"{len(batch.listens)} listens in one request; at most {limit}",
            code="too_many_listens",
        )
    results = runtime.add_listens(batch.listens)
    stored = sum(result.status == "stored" for result in results)
    return ListensResponse(stored=stored, rejected=len(results) - stored, results=results)
