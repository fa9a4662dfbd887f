"""Request bodies capped in bytes, answered with 413 before the rest is read.

`BodyLimitMiddleware` refuses a body whose `Content-Length` is over the cap without
reading a byte of it, and counts the bytes of a body sent without one (chunked): past
the cap it stops reading and answers 413 itself, whatever the route would have said
(FastAPI turns an error raised while parsing a form into a 400; the 413 must win). The
cap is the upload limit plus room for the multipart envelope and the form fields; the
file part alone is checked against the exact limit in `read_upload`.
"""

from __future__ import annotations

import json

from fastapi import Depends, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, error_body

# Multipart boundaries, part headers, title and artist fields: generous, still bounded.
FORM_OVERHEAD_BYTES = 64 * 1024
# The media types the `file` part of an upload may declare (the decoder reads the bytes,
# whatever is declared), for the routes' `openapi_extra`.
AUDIO_MEDIA_TYPES = "audio/*, application/octet-stream"
_FILE_PART = {"encoding": {"file": {"contentType": AUDIO_MEDIA_TYPES}}}
AUDIO_UPLOAD_OPENAPI = {"requestBody": {"content": {"multipart/form-data": _FILE_PART}}}


class _BodyTooLarge(Exception):
    """Raised from `receive` once the body passes the cap; turned into a 413 below."""


class BodyLimitMiddleware:
    """Answer 413 `upload_too_large` to any request body over `max_body_bytes`."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(send, f"the request body ({declared:,} bytes) is")
            return
        received = 0
        exceeded = False
        started = False

        async def receive_capped() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def send_unless_exceeded(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the route's answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_capped, send_unless_exceeded)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._too_large(send, "the request body is")

    async def _too_large(self, send: Send, what: str) -> None:
        body = json.dumps(
            error_body(
                "upload_too_large", f"{what} over the limit of {self.max_body_bytes:,} bytes"
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """The uploaded file's bytes; `PayloadTooLarge` over `max_bytes` (read at most one more)."""
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"{file.filename or 'the upload'}: over the limit of {max_bytes:,} bytes"
        )
    return data


async def single_valued_form(request: Request) -> None:
    """Refuse a form that repeats a field (`title` twice): the schema says one string, and
    taking one of the values silently would accept what the schema does not."""
    form = await request.form()  # parsed once, cached by Starlette for the route
    repeated = sorted({key for key, _ in form.multi_items() if len(form.getlist(key)) > 1})
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("body", key), "msg": "given more than once", "type": "repeated"}
                for key in repeated
            ]  # fmt: skip
        )


SingleValuedForm = Depends(single_valued_form)
