"""The app factory: `create_app(settings) -> FastAPI`.

Start-up work (opening the catalogue, verifying and loading the model version, putting
cold tracks back into the index) runs in the lifespan, in a worker thread, before the
first request is served; then a thread watches the registry for a newly published version
until shutdown. Every request is pinned to one model version (`PinServing`), so a swap
never changes the version under a request. `uvicorn --factory service.app:create_app`
reads the settings from the environment (COLDSTART_*); the app configures its log lines
itself (`service.logs`), so they reach the container's output under uvicorn too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from service.deps import ReadAccess
from service.errors import install_error_handlers
from service.logs import configure_logging
from service.memory import bound_kernel_caches, tune_allocator
from service.metrics import MetricsMiddleware, ServiceMetrics
from service.routes import API_ROUTERS, OPEN_ROUTERS
from service.routes.page import STATIC_DIR
from service.runtime import Runtime, one_search_thread
from service.settings import Settings
from service.uploads import FORM_OVERHEAD_BYTES, BodyLimitMiddleware

DESCRIPTION = """\
Content-based cold-start music recommendation (van den Oord, Dieleman & Schrauwen, NIPS 2013).

POST the audio of a track nobody has listened to yet: a CNN predicts its latent factors from
the audio, which places it among the songs listeners already know. Every error answers
`{"error": {"code": "...", "message": "..."}}`. Writes need `Authorization: Bearer <API key>`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: from the COLDSTART_* environment)."""
    settings = settings or Settings()
    tune_allocator()  # before the service's threads start
    bound_kernel_caches()
    configure_logging(settings.log_level, settings.log_format)
    metrics = ServiceMetrics()
    runtime = Runtime(settings, metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        one_search_thread()  # the routes that search on the event loop
        await anyio.to_thread.run_sync(runtime.start)
        runtime.start_watching()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(runtime.close)

    app = FastAPI(
        title="coldstart",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    read_access = [ReadAccess] if settings.read_requires_key else []
    for router in API_ROUTERS:
        app.include_router(router, dependencies=read_access)
    for router in OPEN_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(PinServing, runtime=runtime)
    # Added last = runs first: metrics see the 413s the body limit sends.
    app.add_middleware(
        BodyLimitMiddleware, max_body_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


class PinServing:
    """Open `Runtime.pinned` around each HTTP request: whatever it reads of the model
    version, from the route or the worker threads it calls, is one version."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.runtime.pinned():
            await self.app(scope, receive, send)
