"""`coldstart scheduler` (the retrain loop) and `coldstart retrain` (queue one run now)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import app

RegistryOption = Annotated[
    Path | None,
    typer.Option("--registry", help="Model registry folder (default: COLDSTART_REGISTRY)."),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database", help="Catalogue DB URL or SQLite file (default: COLDSTART_DATABASE_URL)."
    ),
]


def _settings(registry: Path | None, database: str | None) -> Any:
    """The scheduler's settings from COLDSTART_*, with the options over them; an invalid
    setting (a bad cron line, an unknown time zone) ends the command with its reason."""
    from pydantic import ValidationError

    from catalogue.db import url_or_path
    from pipeline.scheduler import SchedulerSettings

    overrides: dict[str, Any] = {}
    if registry is not None:
        overrides["registry"] = registry
    if database is not None:
        overrides["database_url"] = url_or_path(database)
    try:
        return SchedulerSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        typer.echo(f"error: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from error


@app.command()
def scheduler(registry: RegistryOption = None, database: DatabaseOption = None) -> None:
    """Retrain on the cron schedule (COLDSTART_RETRAIN_CRON, default 03:00 nightly) and on
    request (POST /v1/admin/retrain, `coldstart retrain`): each run is `coldstart pipeline`
    in a child process, recorded in the catalogue (GET /v1/admin/runs). SIGTERM or Ctrl-C
    stops it; a running pipeline is terminated and its run marked failed."""
    import logging
    import signal

    from catalogue import open_catalogue
    from pipeline.scheduler import Scheduler

    settings = _settings(registry, database)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with open_catalogue(settings.database_url) as catalogue:
        loop = Scheduler(settings, catalogue)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: loop.stop())
        loop.run()


@app.command()
def retrain(database: DatabaseOption = None) -> None:
    """Queue a retrain for the scheduler (or return the one already queued); prints the
    run as JSON."""
    import dataclasses
    import json

    from catalogue import open_catalogue
    from catalogue.runs import request_run

    settings = _settings(None, database)
    with open_catalogue(settings.database_url) as catalogue:
        run, already = request_run(catalogue, "cli")
    record = dataclasses.asdict(run)
    typer.echo(
        json.dumps(
            {"run": record, "already_queued": already},
            default=lambda value: value.isoformat(),  # the record's datetimes
            indent=2,
        )
    )
