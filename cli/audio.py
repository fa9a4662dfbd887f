"""`coldstart featurize`: the log-mel cache of a dataset's audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app

_FAILURES_SHOWN = 20


@app.command()
def featurize(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (audio/ holds the songs).")],
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache", help="Cache folder (default: DATASET/mel_cache/<front-end fingerprint>)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes (default: every core).")
    ] = None,
) -> None:
    """Store every song's log-mel (float16) for training; skip songs already cached.

    Songs too short, silent or undecodable are listed and left out."""
    from rich.console import Console

    from audio.cache import featurize_dataset
    from audio.config import FrontEndMismatchError

    console = Console()
    try:
        summary = featurize_dataset(dataset, cache, workers=workers)
    except (FileNotFoundError, FrontEndMismatchError, RuntimeError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    console.print(f"[bold]mel cache[/bold] {summary.cache_dir}")
    console.print(
        f"  {summary.cached:,} songs cached: {summary.computed:,} computed,"
        f" {summary.skipped_up_to_date:,} up to date; {len(summary.failed):,} failed"
    )
    if summary.removed:
        console.print(f"  {summary.removed:,} songs no longer in the dataset removed")
    for song_id, reason in list(summary.failed.items())[:_FAILURES_SHOWN]:
        console.print(f"  [yellow]{song_id}[/yellow] {reason}", highlight=False)
    if len(summary.failed) > _FAILURES_SHOWN:
        console.print(f"  ... and {len(summary.failed) - _FAILURES_SHOWN:,} more in failures.json")
