"""`coldstart featurize`: the mel cache of a dataset's audio, for an encoder's front end."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import ENCODER_NAMES, app, encoders_given
from training.encoders import DEFAULT_ENCODER

if TYPE_CHECKING:
    from rich.console import Console

    from audio.config import FrontEndConfig

_FAILURES_SHOWN = 20


class Engine(StrEnum):
    """Where the songs are computed: this machine's processes, or a Spark cluster."""

    local = "local"
    spark = "spark"


@app.command()
def featurize(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (audio/ holds the songs).")],
    encoder: Annotated[
        list[str] | None,
        typer.Option(
            "--encoder",
            help=f"Cache for this encoder's front end: {ENCODER_NAMES} (default"
            f" {DEFAULT_ENCODER}); give it again for several.",
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache", help="Cache folder (default: DATASET/mel_cache/<front-end fingerprint>)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Processes, --engine local (default: every core)."),
    ] = None,
    engine: Annotated[
        Engine, typer.Option("--engine", help="local: this machine; spark: a Spark cluster.")
    ] = Engine.local,
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Spark master URL, --engine spark (default: $COLDSTART_SPARK_MASTER or local[2]).",
        ),
    ] = None,
) -> None:
    """Store every song's model input (float16 log-mel) behind the front end of each encoder
    named, the one `coldstart train --encoder` reads; skip songs already cached.

    Songs too short, silent or undecodable are listed and left out. With --engine spark the
    dataset and the cache folder must be on a file system every executor sees."""
    from rich.console import Console

    from training.encoders import default_front_end

    names = encoders_given(encoder)
    if engine is Engine.spark and workers is not None:
        raise typer.BadParameter("applies to --engine local only", param_hint="--workers")
    if engine is Engine.local and spark_master is not None:
        raise typer.BadParameter("applies to --engine spark only", param_hint="--spark-master")
    front_ends = list(dict.fromkeys(default_front_end(name) for name in names))
    if cache is not None and len(front_ends) > 1:
        raise typer.BadParameter("one folder holds one front end's mels", param_hint="--cache")
    console = Console()
    for config in front_ends:
        _featurize_for(console, dataset, cache, config, workers, engine, spark_master)


def _featurize_for(
    console: Console,
    dataset: Path,
    cache: Path | None,
    config: FrontEndConfig,
    workers: int | None,
    engine: Engine,
    spark_master: str | None,
) -> None:
    """Featurize `dataset` for the front end `config` and print what it did."""
    from audio.cache import featurize_dataset
    from audio.config import FrontEndMismatchError

    try:
        if engine is Engine.spark:
            from audio.spark_featurize import featurize_on_spark

            summary = featurize_on_spark(dataset, cache, config, spark_master=spark_master)
        else:
            summary = featurize_dataset(dataset, cache, config, workers=workers)
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
