"""Catalogue tracks: add one by audio, look one up, delete one, its neighbours, its audio."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Path, Response, UploadFile, status
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from catalogue.models import MAX_ID_LENGTH, MAX_TEXT_LENGTH
from service.deps import K, RuntimeDep, SpaceQuery, WriteAccess
from service.errors import responses
from service.schemas import Timings, Track, TrackCreated, TrackSimilarResponse
from service.uploads import AUDIO_UPLOAD_OPENAPI, SingleValuedForm, read_upload
from service.views import audio_info, tag_scores

router = APIRouter(tags=["tracks"])
TrackId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]
_TRACK = "#/paths/~1v1~1tracks~1{track_id}"
# OpenAPI links from an added track to what can be done with it (schemathesis' stateful
# phase follows them: add, then read, search by, play and delete that very track).
TRACK_LINKS = {
    name: {"operationRef": ref, "parameters": {"track_id": "$response.body#/id"}}
    for name, ref in {
        "GetTrack": f"{_TRACK}/get",
        "DeleteTrack": f"{_TRACK}/delete",
        "SimilarToTrack": f"{_TRACK}~1similar/get",
        "TrackAudio": f"{_TRACK}~1audio/get",
    }.items()
}


@router.post(
    "/v1/tracks",
    response_model=TrackCreated,
    status_code=status.HTTP_201_CREATED,
    dependencies=[WriteAccess, SingleValuedForm],
    responses={
        201: {"description": "The track, stored and indexed.", "links": TRACK_LINKS},
        **responses(400, 401, 409, 413, 415, 422, 503),
    },
    openapi_extra=AUDIO_UPLOAD_OPENAPI,
    summary="Add a new track by its audio",
)
async def add_track(
    runtime: RuntimeDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The track's recording.")],
    title: Annotated[str, Form(min_length=1, max_length=MAX_TEXT_LENGTH)],
    artist: Annotated[
        str,
        Form(
            max_length=MAX_TEXT_LENGTH,
            description="A known artist places the track by its audio and the artist's"
            " earlier songs (placement: hybrid); a new or empty one by audio alone.",
        ),
    ] = "",
    track_id: Annotated[
        str | None,
        Form(
            max_length=MAX_ID_LENGTH,
            description="Your id for it, without '/' (400 invalid_track); one is made up"
            " when left out or empty (a form field cannot tell the two apart).",
        ),
    ] = None,
) -> TrackCreated:
    """Store the audio durably (content-addressed), predict the track's factors, and add it
    to both index spaces and the catalogue: from now on it is found by /v1/similar and
    recommended to the users whose factors point its way, before anyone has played it."""
    started = time.perf_counter()
    data = await read_upload(file, runtime.settings.max_upload_bytes)
    track, embedding, placed = await runtime.cpu(
        runtime.add_track, data, file.filename or "upload", title, artist, track_id
    )
    response.headers["Location"] = f"/v1/tracks/{quote(track.id, safe='')}"  # any text but '/'
    return TrackCreated(
        **track.model_dump(exclude={"tags"}),
        model_version=runtime.require_version().version_id,
        placement=placed.placement,
        cf_vector=placed.cf_vector.tolist(),
        content_vector=placed.content_vector.tolist(),
        audio=audio_info(embedding),
        tags=tag_scores(embedding),
        timings=Timings(
            decode_ms=embedding.decode_ms,
            features_ms=embedding.features_ms,
            model_ms=embedding.model_ms,
            search_ms=0.0,
            total_ms=(time.perf_counter() - started) * 1e3,
        ),
    )


@router.get(
    "/v1/tracks/{track_id}",
    response_model=Track,
    responses=responses(401, 404, 422, 503),
    summary="A catalogue track",
)
def get_track(runtime: RuntimeDep, track_id: TrackId) -> Track:
    return runtime.track(track_id)


@router.delete(
    "/v1/tracks/{track_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[WriteAccess],
    responses=responses(401, 404, 422, 503),
    summary="Remove a track from the catalogue and the index",
)
def delete_track(runtime: RuntimeDep, track_id: TrackId) -> Response:
    """The track, its listens and its vectors go; its audio file stays in the store."""
    runtime.delete_track(track_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# On the event loop, not a worker thread: the search takes tens of microseconds and the one
# possible database read (listens since the version, titles not kept yet) is an indexed
# lookup, where a hop to a thread and back takes two thread switches.
@router.get(
    "/v1/tracks/{track_id}/similar",
    response_model=TrackSimilarResponse,
    responses=responses(401, 404, 422, 503),
    summary="Songs similar to a catalogue track",
)
async def similar_to_track(
    runtime: RuntimeDep, track_id: TrackId, k: K = 10, space: SpaceQuery = "cf"
) -> JSONResponse:
    """The `k` songs closest by cosine to the track's own vector in `space`, itself left out."""
    neighbours = runtime.similar_to_track(track_id, k, space)
    # The body of `TrackSimilarResponse`, built as plain JSON (see the recommendations).
    return JSONResponse(
        {
            "model_version": runtime.require_version().version_id,
            "track_id": track_id,
            "space": space,
            "similarity": "cosine",
            "k": k,
            "results": runtime.hits(neighbours),
        }
    )


@router.get(
    "/v1/tracks/{track_id}/audio",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The recording, as it was uploaded or published.",
            "content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        **responses(401, 404, 422),
    },
    summary="A track's recording, for playback",
)
async def track_audio(runtime: RuntimeDep, track_id: TrackId) -> FileResponse:
    path, media_type = await run_in_threadpool(runtime.audio_file, track_id)
    return FileResponse(path, media_type=media_type)
