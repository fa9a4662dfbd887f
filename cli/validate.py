"""`coldstart validate DIR`: every problem of a dataset folder as `file:line: message`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app


def front_end_refusal(path: Path) -> str | None:
    """Why featurize would refuse the clip at `path` (`audio.decode.decode_usable`: a full
    decode, then shorter than one window, silent), or None."""
    from audio.decode import decode_usable
    from audio.errors import AudioError

    try:
        decode_usable(path, name=path.name)
    except AudioError as error:
        return error.reason
    return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"


@app.command()
def validate(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder (listens.tsv, songs.csv, audio/).")
    ],
    no_audio: Annotated[
        bool, typer.Option("--no-audio", help="Leave audio/ alone: no listing, no probes.")
    ] = False,
    headers_only: Annotated[
        bool,
        typer.Option(
            "--headers-only",
            help="Probe each file's header and first frame only, without the full decode"
            " that finds clips featurize refuses (too short, silent).",
        ),
    ] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Threads probing audio (default: 2 per core).")
    ] = None,
    max_per_kind: Annotated[
        int, typer.Option(min=1, help="Problems printed per kind; the rest are counted.")
    ] = 20,
) -> None:
    """Check a dataset folder against the contract and print every problem with its line.

    Every audio file is decoded in full and judged as `coldstart featurize` will judge it: a clip
    shorter than one 3-second window or silent gets a warning naming the file.

        Exits 1 when there is an error (warnings alone exit 0), so that scripts can gate on it.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from corpus.validate import KINDS, validate_dataset

    report = validate_dataset(
        dataset,
        check_audio=not no_audio,
        workers=workers,
        progress=True,
        max_per_kind=max_per_kind,
        clip_check=None if headers_only else front_end_refusal,
    )
    console = Console(highlight=False, soft_wrap=True)  # one problem, one greppable line
    for problem in report.problems:
        colour = "red" if problem.severity == "error" else "yellow"
        console.print(f"[{colour}]{escape(str(problem))}[/{colour}]")
    for kind, n in report.omitted().items():
        console.print(f"... and {n:,} more {escape(KINDS[kind][1])}", style="dim")

    summary = report.summary
    table = Table(title=f"dataset {escape(str(dataset))}", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    rows = [
        ("users", f"{summary.users:,}"),
        ("songs (songs.csv)", f"{summary.songs:,}"),
        ("listens", f"{summary.listens:,}"),
        ("plays (sum of counts)", f"{summary.plays:,}"),
        ("density", f"{summary.density:.3g}"),
        ("songs listened", f"{summary.songs_listened:,}"),
        ("unknown songs in listens", f"{summary.unknown_songs:,}"),
        ("median listens per user", f"{summary.median_listens_per_user:g}"),
        ("median listeners per song", f"{summary.median_listeners_per_song:g}"),
    ]
    if summary.audio_files is not None:
        rows += [
            ("audio files", f"{summary.audio_files:,}"),
            ("songs with audio", f"{summary.songs_with_audio:,}"),
        ]
    if summary.audio_seconds is not None:
        rows.append(("audio", _duration(summary.audio_seconds)))
    if summary.shortest_clip_seconds is not None:
        rows.append(
            (
                "clip length",
                f"{summary.shortest_clip_seconds:.1f} to {summary.longest_clip_seconds:.1f} s",
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    verdict = "[green]ok[/green]" if report.ok else "[red]not ok[/red]"
    console.print(f"{verdict}: {report.errors:,} errors, {report.warnings:,} warnings")
    raise typer.Exit(0 if report.ok else 1)
