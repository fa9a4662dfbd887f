"""`coldstart serve`: the HTTP API and web page on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app


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
) -> None:
    """Serve REG/current: POST audio, get similar songs; add tracks; recommend to users.
    API keys come from COLDSTART_API_KEYS (comma-separated); the other settings from
    COLDSTART_* as well (see service/settings.py)."""
    import uvicorn
    from pydantic import ValidationError

    from catalogue.db import url_or_path
    from service.app import create_app
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
    # The app configures the log lines, uvicorn's too (service.logs): uvicorn's own
    # configuration would add its handlers beside them.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", log_config=None)
