"""`coldstart teacher fetch`: Pons' trained musicnn weights, from PyPI into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app

teacher = typer.Typer(
    help="The teacher: musicnn trained on the Million Song Dataset (Pons & Serra 2019).",
    no_args_is_help=True,
)
app.add_typer(teacher, name="teacher")


@teacher.command()
def fetch(
    wheel: Annotated[
        Path | None,
        typer.Option(
            "--wheel",
            help="A copy of musicnn-0.1.0-py3-none-any.whl (default: download it from PyPI).",
        ),
    ] = None,
) -> None:
    """Download PyPI's musicnn 0.1.0 wheel (never installed), check its sha256, convert its
    MSD_musicnn and MTT_musicnn checkpoints to PyTorch into the cache ($COLDSTART_CACHE,
    else $XDG_CACHE_HOME/coldstart, else ~/.cache/coldstart). Nothing to do when done."""
    from rich.console import Console

    from artifacts.manifest import read_manifest
    from training.encoders.musicnn_weights import (
        WEIGHTS_KIND,
        MusicnnWeightsError,
        fetch_weights,
    )

    console = Console()
    try:
        folder = fetch_weights(copy_of=wheel)
    except MusicnnWeightsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    parameters = read_manifest(folder, WEIGHTS_KIND)["parameters"]
    console.print(f"musicnn weights in {folder}")
    console.print(f"  from {parameters['url']}")
    console.print(f"  wheel sha256 {parameters['wheel_sha256']}")
    for model, tags in sorted(parameters["tags"].items()):
        console.print(f"  {model}: {len(tags)} tags")
