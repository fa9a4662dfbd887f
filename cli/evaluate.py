"""`coldstart evaluate`: the model table of a run (mAP@500, AUC) and its report files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, given


@app.command()
def evaluate(
    run: Annotated[
        Path, typer.Option("--run", help="Run folder holding factorization/ and models/.")
    ],
    k: Annotated[int, typer.Option("--k", min=1, help="Cut-off of mAP@k.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the random row and the song map.")] = 0,
    max_users: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Score at most this many users with a test listen, a seeded draw above it"
            " (default: evaluation.users.MAX_EVALUATED_USERS, 100,000).",
        ),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="Dataset folder, when the factorization manifest does not name it"
            " (its fingerprint is checked either way).",
        ),
    ] = None,
) -> None:
    """Score random vectors, the WMF upper bound and every content model on the cold test
    songs; write RUN/report.json, predictions.npz, report.md and plots/."""
    from rich.console import Console
    from rich.table import Table

    from artifacts.manifest import ArtifactError
    from corpus.dataset import DatasetError
    from evaluation.report import MARKDOWN_FILE, evaluate_run, model_label, model_order

    console = Console()
    try:
        report = evaluate_run(
            run, k=k, seed=seed, dataset_root=dataset, **given(max_users=max_users)
        )
    except (ArtifactError, DatasetError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    table = Table(
        title=f"{report['n_users']:,} users x {report['n_test_songs']:,} cold test songs"
        f" ({report['n_train_songs']:,} training songs)"
    )
    table.add_column("model")
    table.add_column(f"mAP@{k}", justify="right")
    table.add_column("AUC", justify="right")
    table.add_column("mAP gap closed", justify="right")
    for name in model_order(report):
        closed = report["gap_closed"][name]["map"]
        table.add_row(
            model_label(name, report["models"][name]),
            f"{report['models'][name]['map']:.5f}",
            f"{report['models'][name]['auc']:.4f}",
            "" if closed is None else f"{closed:.1%}",
        )
    expected = report["expected_random"]
    table.add_row(
        "[dim]random, expected[/dim]", f"[dim]{expected['map']:.5f}[/dim]", "[dim]0.5000[/dim]", ""
    )
    console.print(table)
    for name, why in sorted(report["skipped_models"].items()):
        console.print(f"[yellow]skipped models/{name}: {why}[/yellow]")
    console.print(f"report: {run / MARKDOWN_FILE}")
