"""Dependencies of the routes, as `Annotated` aliases: the runtime, keys, common queries.

Keys are compared with `hmac.compare_digest` against every configured key (no early
exit), so the time an answer takes says nothing about how much of a key was right.
Writes always need a key; with none configured they are refused, never open to all.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import Unauthorized
from service.runtime import Runtime
from service.schemas import MAX_K, Space
from service.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from COLDSTART_API_KEYS, as `Authorization: Bearer <key>`.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def get_runtime(request: Request) -> Runtime:
    """The app's runtime. The dependencies here are `async`: FastAPI runs a plain function
    dependency in a worker thread, two thread switches for what is an attribute lookup."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _check_key(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if credentials is None:
        raise Unauthorized("this request needs an API key: `Authorization: Bearer <key>`")
    given = credentials.credentials.encode()
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(key.get_secret_value().encode(), given)
    if not matched:
        raise Unauthorized("the API key is not valid")


async def require_write_key(runtime: RuntimeDep, credentials: Credentials) -> None:
    """Writes need a valid key; without configured keys, writes are disabled."""
    if not runtime.settings.api_keys:
        raise Unauthorized("writes are disabled: no API keys are configured (COLDSTART_API_KEYS)")
    _check_key(runtime.settings, credentials)


async def require_read_key(runtime: RuntimeDep, credentials: Credentials) -> None:
    """Reads need a valid key: the app adds this to the API's routes only when
    COLDSTART_READ_REQUIRES_KEY is true, so the OpenAPI schema says which is the case."""
    _check_key(runtime.settings, credentials)


WriteAccess = Depends(require_write_key)
ReadAccess = Depends(require_read_key)
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"How many songs (1-{MAX_K}).")]
SpaceQuery = Annotated[
    Space,
    Query(
        description="cf: the listening-data space (warm songs at their WMF factors);"
        " content: every song at its audio-predicted vector."
    ),
]
