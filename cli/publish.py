"""`coldstart publish`: make a finished run the model version the service serves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app


@app.command()
def publish(
    run: Annotated[
        Path, typer.Option("--run", help="Finished run: factorization, models/cnn, report.json.")
    ],
    registry: Annotated[Path, typer.Option("--registry", help="Model registry folder.")],
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Catalogue DB URL (or SQLite path) to import the songs' titles and artists into.",
        ),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(help="Dataset folder, when neither the run's manifests nor report name it."),
    ] = None,
) -> None:
    """Build a registry version from RUN (song vectors in the cf and content spaces, user
    factors, the CNN, the evaluation), then switch REG/current to it atomically."""
    from rich.console import Console

    from artifacts.manifest import ArtifactError
    from catalogue.db import url_or_path
    from pipeline.registry import publish_run
    from training.run_data import TrainingError

    console = Console()
    if database is not None:
        database = url_or_path(database)
    try:
        version_id = publish_run(run, registry, database, dataset_root=dataset)
    except (ArtifactError, TrainingError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    console.print(f"published [bold]{version_id}[/bold]; {registry / 'current'} points to it")
