"""`coldstart serve`: the HTTP API and web page on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import app

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

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
    import shutil
    import tempfile

    import uvicorn

    workers = workers or len(os.sched_getaffinity(0))
    # The app configures the log lines, uvicorn's too (service.logs): uvicorn's own
    # configuration would add its handlers beside them.
    if workers == 1:
        from service.app import create_app

        settings = _settings(registry, database)
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", log_config=None)
        return
    from service.logs import configure_logging

    # The supervisor stays small: the settings are checked and the catalogue migrated in a
    # child process, and each worker loads the catalogue's and the model's libraries itself.
    database_url, log_level, log_format = _prepare_in_child(registry, database)
    configure_logging(log_level, log_format)  # the supervisor's own lines
    # Each worker builds its app from the environment (uvicorn spawns them); unless told
    # otherwise, the workers' decode processes share the cores between them, and /metrics
    # reads every worker's values from a folder of their own (`service.metrics`).
    os.environ["COLDSTART_REGISTRY"] = str(registry)
    os.environ["COLDSTART_DATABASE_URL"] = database_url
    cores = len(os.sched_getaffinity(0))
    os.environ.setdefault("COLDSTART_DECODE_WORKERS", str(-(-cores // workers)))
    metrics_folder = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_folder = tempfile.mkdtemp(prefix="coldstart-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_folder
    try:
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
            log_config=None,
        )
    finally:
        if metrics_folder is not None:
            shutil.rmtree(metrics_folder, ignore_errors=True)


def _settings(registry: Path, database: str | None) -> Settings:
    """The service's settings from the options and COLDSTART_*; exit 2 when invalid."""
    from pydantic import ValidationError

    from catalogue.db import url_or_path
    from service.settings import Settings

    try:
        if database is None:
            return Settings(registry=registry)
        return Settings(registry=registry, database_url=url_or_path(database))
    except ValidationError as error:  # its messages only: the inputs may hold API keys
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        typer.echo(f"error: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from error


def _prepare_in_child(registry: Path, database: str | None) -> tuple[str, str, str]:
    """Check the settings and bring the catalogue's schema up to date once, before the
    workers open it together, in a child process; returns the database URL and the log
    level and format. Exits as the child did when it failed."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_prepare, args=(registry, database, sender))
    process.start()
    sender.close()
    try:
        prepared = receiver.recv()
    except EOFError:  # the child failed before sending (and said why)
        prepared = None
    process.join()
    if process.exitcode != 0 or prepared is None:
        raise typer.Exit(process.exitcode or 1)
    database_url, log_level, log_format = prepared
    return str(database_url), str(log_level), str(log_format)


def _prepare(registry: Path, database: str | None, sender: Connection) -> None:
    import sys

    from catalogue import open_catalogue

    try:
        settings = _settings(registry, database)
    except typer.Exit as error:  # the message is out; exit with its code, no traceback
        sys.exit(error.exit_code)
    open_catalogue(settings.database_url, settings.audio_store_dir()).close()
    sender.send((settings.database_url, settings.log_level, settings.log_format))
