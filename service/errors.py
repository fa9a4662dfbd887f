"""Domain exceptions of the service and their one JSON shape.

Every error answer, whatever raised it, is

    {"error": {"code": "<stable machine code>", "message": "<sentence for a person>"}}

with the status of its class below. Routes raise these (never `HTTPException`); request
validation errors, unknown routes and unknown methods are rewritten into the same shape,
and anything unexpected becomes a 500 `internal_error` without a stack trace (logged).

Audio the front end refuses (`audio.errors.AudioError`) maps by its code:

    empty        400 audio_empty        the upload holds no bytes or no samples: a bad request
    undecodable  415 audio_undecodable  not audio in a container the decoder accepts
    too_large    413 upload_too_large   over COLDSTART_MAX_UPLOAD_BYTES
    too_short    422 audio_too_short    decodes, but is shorter than one 3-second window
    silent       422 audio_silent       decodes, but holds nothing to hear
    invalid_samples  422 audio_invalid_samples  decodes to NaN or infinite sample values
    unembeddable     422 audio_unembeddable     its log-mel or predicted vector is unusable
                                                (NaN, inf, or no direction)
    decoder_failed   422 audio_decoder_failed   the decode worker died on it (a decoder crash)
    decode_timeout   422 audio_decode_timeout   its decoding ran past the worker's deadline
                                                or CPU seconds
    decode_out_of_memory  422 audio_decode_out_of_memory  its decoding needed more memory
                                                than a worker may take

Samples above full scale are not an error: the front end peak-normalises them and the
answer's `audio.warnings` says so (`peak_normalised`).

Catalogue errors (`catalogue.errors`) map by their class (`from_catalogue_error`), and a
listen the catalogue rejects names its reason (`listen_error_code`):

    TrackNotFound   404 track_not_found   DuplicateTrack  409 track_exists
    InvalidTrack    400 invalid_track     InvalidAudio    400 invalid_track
    unknown_track   unknown_song          invalid_listen  invalid_listen
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from audio.errors import AudioError
from catalogue import (
    CatalogueError,
    DuplicateTrack,
    InvalidAudio,
    InvalidTrack,
    ListenRejection,
    TrackNotFound,
)
from service.schemas import ErrorResponse

log = logging.getLogger("coldstart.service")


class ServiceError(Exception):
    """An answer other than success: `status_code`, a stable `code`, a `message`."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers


class BadRequest(ServiceError):
    status_code, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status_code, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class NotFound(ServiceError):
    status_code, code = 404, "not_found"


class Conflict(ServiceError):
    status_code, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status_code, code = 413, "upload_too_large"


class UnsupportedMedia(ServiceError):
    status_code, code = 415, "audio_undecodable"


class Unprocessable(ServiceError):
    status_code, code = 422, "unprocessable"


class NotReady(ServiceError):
    status_code, code = 503, "model_not_loaded"


class DecoderUnavailable(ServiceError):
    """No decode worker process came free in time (all busy, or none would start)."""

    status_code, code = 503, "decoder_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


_AUDIO_ERRORS: dict[str, type[ServiceError]] = {
    "empty": BadRequest,
    "undecodable": UnsupportedMedia,
    "too_large": PayloadTooLarge,
    "too_short": Unprocessable,
    "silent": Unprocessable,
    "invalid_samples": Unprocessable,
    "unembeddable": Unprocessable,
    "decoder_failed": Unprocessable,
    "decode_timeout": Unprocessable,
    "decode_out_of_memory": Unprocessable,
}
_AUDIO_CODES = {"too_large": "upload_too_large"}


def from_audio_error(error: AudioError) -> ServiceError:
    """The answer to audio the front end refused (see the module docstring)."""
    return _AUDIO_ERRORS[error.code](
        f"{error.source}: {error.reason}", code=_AUDIO_CODES.get(error.code, f"audio_{error.code}")
    )


_CATALOGUE_ERRORS: dict[type[CatalogueError], tuple[type[ServiceError], str]] = {
    TrackNotFound: (NotFound, "track_not_found"),
    DuplicateTrack: (Conflict, "track_exists"),
    InvalidTrack: (BadRequest, "invalid_track"),
    InvalidAudio: (BadRequest, "invalid_track"),
}
_LISTEN_CODES: dict[ListenRejection, str] = {
    "unknown_track": "unknown_song",
    "invalid_listen": "invalid_listen",
}


def from_catalogue_error(error: CatalogueError) -> ServiceError:
    """The answer to a write the catalogue refused (see the module docstring)."""
    for kind, (answer, code) in _CATALOGUE_ERRORS.items():
        if isinstance(error, kind):
            return answer(str(error), code=code)
    raise TypeError(f"no HTTP answer for catalogue error {type(error).__name__}") from error


def listen_error_code(reason: ListenRejection | None) -> str:
    """The code of a listen the catalogue rejected for `reason` (see the module docstring)."""
    return _LISTEN_CODES[reason or "invalid_listen"]


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The JSON of an error answer."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code, headers=headers)


# Codes of the statuses Starlette itself raises (unknown route, wrong method, ...).
_HTTP_CODES = {
    400: "malformed_body",  # FastAPI's own 400s: a body that does not parse
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
}


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure in the shape of `ErrorResponse`."""

    async def service_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ServiceError)
        return error_response(error.status_code, error.code, error.message, headers=error.headers)

    async def validation_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = [
            {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", ""))}
            for item in error.errors()
        ]
        return error_response(422, "validation_error", _validation_message(errors), details=errors)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = _HTTP_CODES.get(error.status_code, "http_error")
        headers = getattr(error, "headers", None)
        if error.status_code == 405:  # Starlette names only the first route's methods
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(error.status_code, code, str(error.detail), headers=headers)

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "an internal error occurred")

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers at the request's path (RFC 9110 `Allow`:
    GET and DELETE of `/v1/tracks/{track_id}` are two routes, both count), found by asking
    the router, method by method, which routes match in full."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` documenting the error answers a route can give."""
    descriptions = {
        400: "Bad request: an empty upload (`audio_empty`), a body that does not parse"
        " (`malformed_body`)",
        401: "Missing or wrong API key (`unauthorized`)",
        404: "Unknown track or user (`track_not_found`, `user_not_found`, `no_audio`)",
        409: "A track with this id exists (`track_exists`)",
        413: "Upload over the size limit (`upload_too_large`)",
        415: "Not audio the decoder reads (`audio_undecodable`)",
        422: "Invalid parameters (`validation_error`), or audio too short or silent"
        " (`audio_too_short`, `audio_silent`), with NaN or infinite samples"
        " (`audio_invalid_samples`) or an unusable prediction (`audio_unembeddable`);"
        " audio whose decoding crashed its worker process (`audio_decoder_failed`), ran past"
        " its deadline (`audio_decode_timeout`) or its memory (`audio_decode_out_of_memory`)",
        503: "No model version loaded (`model_not_loaded`), or no decode worker free in time"
        " (`decoder_unavailable`)",
    }
    return {
        status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses
    }
