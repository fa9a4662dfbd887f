"""`coldstart world`: generate a seeded synthetic music world (catalogue, audio, listens)."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from world import DEFAULT_CLIP_SECONDS, DEFAULT_SONGS, DEFAULT_USERS


class Instruments(StrEnum):
    """What plays the world's notes (`world.generate.INSTRUMENTS`)."""

    soundfont = "soundfont"
    synth = "synth"


@app.command()
def world(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the world to.")],
    songs: Annotated[
        int, typer.Option("--songs", min=1, help="Songs in the catalogue.")
    ] = DEFAULT_SONGS,
    users: Annotated[int, typer.Option("--users", min=1, help="Listeners.")] = DEFAULT_USERS,
    clip_seconds: Annotated[
        float, typer.Option("--clip-seconds", min=3.0, help="Seconds of audio per song.")
    ] = DEFAULT_CLIP_SECONDS,
    seed: Annotated[int, typer.Option("--seed", help="Seed: same seed, same bytes.")] = 0,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Processes rendering audio (default: every core)."),
    ] = None,
    instruments: Annotated[
        Instruments,
        typer.Option(
            "--instruments",
            help="soundfont: sampled General MIDI instruments (Debian's fluid-soundfont-gm);"
            " synth: the additive synthesizer, the fallback without a SoundFont.",
        ),
    ] = Instruments.soundfont,
    production_taste: Annotated[
        float,
        typer.Option(
            "--production-taste",
            min=0.0,
            help="Spread of listeners' likes of the artists' production (room, compression,"
            " EQ, touch, register), sampled instruments only; 0: taste ignores production.",
        ),
    ] = 0.0,
) -> None:
    """Write listens.tsv, songs.csv and audio/ in the dataset contract, plus truth.json (every
    generative attribute, for diagnostics only)."""
    from rich.console import Console
    from rich.markup import escape

    from world.generate import WorldError, generate_world

    console = Console()
    started = time.perf_counter()
    try:
        summary = generate_world(
            out,
            n_songs=songs,
            n_users=users,
            clip_seconds=clip_seconds,
            seed=seed,
            workers=workers,
            progress=True,
            instruments=instruments.value,
            production_taste=production_taste,
        )
    except WorldError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(1) from error
    console.print(
        f"[bold]world[/bold] {summary.out}  ({instruments.value},"
        f" {time.perf_counter() - started:,.0f} s)"
    )
    console.print(
        f"  {summary.n_songs:,} songs by {summary.n_artists:,} artists,"
        f" {summary.n_users:,} listeners, {summary.n_listens:,} listens"
        f" ({summary.total_plays:,} plays, density {summary.density:.2%}),"
        f" {summary.unlistened_songs:,} songs unheard"
    )
    console.print(f"  audio: {summary.audio_bytes / 2**20:,.1f} MiB")
    for name, count in summary.formats.items():
        console.print(f"    {count:5,}  {name}", highlight=False)
