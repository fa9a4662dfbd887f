"""`coldstart factorize`: the cold-start split and the WMF factors of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cli.app import app, given


def parse_regularization(value: str) -> float | Literal["auto"]:
    """`--regularization`: 'auto' (search it) or a positive lambda (here and the pipeline)."""
    if value == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError as error:
        raise typer.BadParameter(f"'auto' or a positive number, got {value!r}") from error
    if not number > 0:
        raise typer.BadParameter(f"must be > 0, got {value!r}")
    return number


@app.command()
def factorize(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder (listens.tsv, songs.csv, audio/).")
    ],
    run: Annotated[
        Path, typer.Option("--run", help="Run folder to write split/ and factorization/ into.")
    ],
    test_songs: Annotated[
        Path | None,
        typer.Option(
            "--test-songs", help="Test song ids, one per line (instead of a drawn split)."
        ),
    ] = None,
    cold_artists: Annotated[
        float | None,
        typer.Option(
            "--cold-artists",
            min=0.0,
            max=0.99,
            help="Share of artists held out with all their songs (cold-artist test songs;"
            " default: factorize_run's).",
        ),
    ] = None,
    factors: Annotated[
        int | None,
        typer.Option(min=1, help="Latent factors per user and song (default: WMFParams)."),
    ] = None,
    regularization: Annotated[
        str | None,
        typer.Option(
            help="Ridge weight lambda, or 'auto' to choose it on held-out listens"
            " (default: WMFParams)."
        ),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(min=1, help="ALS iterations (default: WMFParams).")
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(help="Confidence 1 + alpha*log(1 + plays/eps) (default: WMFParams)."),
    ] = None,
    eps: Annotated[
        float | None, typer.Option(help="Confidence scale eps (default: WMFParams).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the split and of WMF (default: WMFParams).")
    ] = None,
    threads: Annotated[int, typer.Option(min=0, help="implicit threads (0: every core).")] = 0,
    engine: Annotated[
        Literal["implicit", "spark"],
        typer.Option(help="WMF on this machine (implicit) or on Spark MLlib's ALS."),
    ] = "implicit",
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Spark master URL for --engine spark (default $COLDSTART_SPARK_MASTER,"
            " else local[2]); on a cluster also set $COLDSTART_SPARK_STAGING to a folder or"
            " URL every executor reads.",
        ),
    ] = None,
) -> None:
    """Split the songs (cold-start, popularity-stratified), fit WMF on the training songs'
    listens and fold in the validation and test songs."""
    from rich.console import Console

    from artifacts.run_layout import FACTORIZATION_DIR
    from corpus.dataset import DatasetError
    from corpus.split import SplitError
    from factorization.run import factorize_run
    from factorization.wmf import WMFParams

    params = WMFParams(
        **given(
            factors=factors,
            regularization=None if regularization is None else parse_regularization(regularization),
            iterations=iterations,
            alpha=alpha,
            eps=eps,
            seed=seed,
        )
    )
    console = Console()
    try:
        manifest = factorize_run(
            dataset,
            run,
            params,
            test_songs_file=test_songs,
            seed=params.seed,
            **given(cold_artist_fraction=cold_artists),
            num_threads=threads,
            engine=engine,
            spark_master=spark_master,
        )
    except (DatasetError, SplitError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    counts = manifest["counts"]
    console.print(
        f"[bold]factorization[/bold] {run / FACTORIZATION_DIR}  digest {manifest['digest'][:12]}"
        f"  engine {manifest['parameters']['engine']}"
    )
    console.print(
        f"  users {counts['users']:,} ({counts['users_left_out']:,} left out: no training listen)"
        f"   songs: train {counts['train_songs']:,}  valid {counts['valid_songs']:,}"
        f"  test {counts['test_songs']:,} (cold tracks {counts['test_cold_track_songs']:,},"
        f" cold artists {counts['test_cold_artist_songs']:,})"
    )
    search = manifest["regularization_search"]
    if search:
        tried = "  ".join(
            f"{value:g}: {score:.4f}"
            for value, score in zip(search["grid"], search["scores"], strict=True)
        )
        console.print(
            f"  regularization {search['chosen']:g} chosen by {search['metric']} ({tried})"
        )
        if search["chosen"] in (min(search["grid"]), max(search["grid"])):
            console.print("  [yellow]the chosen value is at the edge of the grid[/yellow]")
    else:
        console.print(f"  regularization {manifest['parameters']['regularization']:g} (given)")
