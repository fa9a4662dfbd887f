"""`coldstart serve`: the HTTP API and web page on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import app

if TYPE_CHECKING:
    from service.settings import Settings


@app.command()
def serve(
    registry: Annotated[Path, typer.Option("--registry", help="Model registry folder.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Catalogue DB URL or SQLite file (default: COLDSTART_DATABASE_URL).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes, each with the model and indexes loaded, answering on one"
            " port (default: the cores this process may run on).",
        ),
    ] = None,
) -> None:
    """Serve REG/current: POST audio, get similar songs; add tracks; recommend to users.
    API keys come from COLDSTART_API_KEYS (comma-separated); the other settings from
    COLDSTART_* as well (see service/settings.py).

    With several workers, each is a replica of the service (`docs/ARCHITECTURE.md`):
    it swaps versions at its own poll and follows the tracks the others write through
    the catalogue's change log, as replicas on several machines do."""
    import os

    import uvicorn
    from pydantic import ValidationError

    from catalogue.db import url_or_path
    from service.logs import configure_logging
    from service.settings import Settings

    if database is not None:
        database = url_or_path(database)
    try:
        settings = (
            Settings(registry=registry)
            if database is None
            else Settings(registry=registry, database_url=database)
        )
    except ValidationError as error:  # its messages only: the inputs may hold API keys
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        typer.echo(f"error: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from error
    workers = workers or len(os.sched_getaffinity(0))
    # The app configures the log lines, uvicorn's too (service.logs): uvicorn's own
    # configuration would add its handlers beside them.
    if workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", log_config=None)
        return
    configure_logging(settings.log_level, settings.log_format)  # the supervisor's lines
    _migrate_once(settings)
    # Each worker builds its app from the environment (uvicorn spawns them).
    os.environ["COLDSTART_REGISTRY"] = str(settings.registry)
    os.environ["COLDSTART_DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        log_config=None,
    )


def _migrate_once(settings: Settings) -> None:
    """Bring the catalogue's schema up to date before the workers open it together, in a
    child process: the supervisor stays small (it imports neither the catalogue's data
    libraries nor the model's, which every worker loads for itself)."""
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(
        target=_open_and_close, args=(settings.database_url, settings.audio_store_dir())
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        raise typer.Exit(1)


def _open_and_close(database_url: str, audio_store: Path) -> None:
    from catalogue import open_catalogue

    open_catalogue(database_url, audio_store).close()
