"""POST /v1/similar: the catalogue songs nearest to an uploaded recording."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from catalogue.models import MAX_TEXT_LENGTH
from service.deps import K, RuntimeDep, SpaceQuery
from service.errors import responses
from service.schemas import SimilarResponse, SongHit, Timings
from service.uploads import AUDIO_UPLOAD_OPENAPI, SingleValuedForm, read_upload
from service.views import audio_info, tag_scores

router = APIRouter(tags=["similar"])


@router.post(
    "/v1/similar",
    response_model=SimilarResponse,
    responses=responses(400, 401, 413, 415, 422, 503),
    dependencies=[SingleValuedForm],
    openapi_extra=AUDIO_UPLOAD_OPENAPI,
    summary="Songs similar to an uploaded recording",
)
async def similar_to_upload(
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description="A recording (mp3, flac, m4a, wav, ogg, opus).")],
    k: K = 10,
    space: SpaceQuery = "cf",
    artist: Annotated[
        str | None,
        Form(
            max_length=MAX_TEXT_LENGTH,
            description="The recording's artist: in the cf space a known artist's earlier"
            " songs place it too (as POST /v1/tracks does); unknown or empty: audio alone.",
        ),
    ] = None,
) -> SimilarResponse:
    """Decode the upload, predict its factors with the CNN (fused with its artist's prior
    in the cf space when the artist is known), and return the `k` catalogue songs closest
    by cosine in `space`. The upload is not stored (POST /v1/tracks does)."""
    started = time.perf_counter()
    data = await read_upload(file, runtime.settings.max_upload_bytes)
    result = await runtime.cpu(
        runtime.similar_to_upload, data, file.filename or "upload", k, space, artist
    )
    hits = runtime.hits(result.neighbours)  # kept rows: no thread hop (see the recommendations)
    embedding = result.embedding
    runtime.metrics.observe_stages(search=result.search_ms)
    return SimilarResponse(
        model_version=runtime.require_version().version_id,
        space=space,
        placement=result.placement,
        k=k,
        results=[SongHit.model_validate(hit) for hit in hits],
        audio=audio_info(embedding),
        timings=Timings(
            decode_ms=embedding.decode_ms,
            features_ms=embedding.features_ms,
            model_ms=embedding.model_ms,
            search_ms=result.search_ms,
            total_ms=(time.perf_counter() - started) * 1e3,
        ),
        on_map=result.on_map,
        tags=tag_scores(embedding),
    )
