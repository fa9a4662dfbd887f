"""`coldstart demo`: the whole walk on a synthetic world, on embedded defaults.

world -> featurize -> factorize -> train -> evaluate -> publish (index + registry) -> serve,
each step the same command a user would type (their functions are called in order), so the
demo proves the real paths. Defaults: a SQLite catalogue and a local registry folder.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.app import ENCODER_NAMES, app, encoders_given
from cli.world import Instruments
from training.encoders import DEFAULT_ENCODER
from world import DEFAULT_CLIP_SECONDS, DEFAULT_SONGS, DEFAULT_USERS


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the world, the run, the registry and the catalogue.")
    ] = Path("."),
    songs: Annotated[int, typer.Option(min=10, help="Songs in the demo world.")] = DEFAULT_SONGS,
    users: Annotated[
        int, typer.Option(min=10, help="Listeners in the demo world.")
    ] = DEFAULT_USERS,
    clip_seconds: Annotated[
        float, typer.Option(min=3.0, help="Seconds of audio per song.")
    ] = DEFAULT_CLIP_SECONDS,
    seed: Annotated[int, typer.Option(help="Seed of the world, the split and the models.")] = 0,
    instruments: Annotated[
        Instruments,
        typer.Option(help="What plays the world's notes (see `coldstart world --help`)."),
    ] = Instruments.soundfont,
    encoder: Annotated[
        str, typer.Option(help=f"Encoder architecture to train and serve: {ENCODER_NAMES}.")
    ] = DEFAULT_ENCODER,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the published model at the end.")
    ] = True,
    host: Annotated[str, typer.Option(help="Interface to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8000,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also Lightning's info lines and model summary.")
    ] = False,
) -> None:
    """Generate the demo world (reused when present), featurize it, factorize, train the
    content models, evaluate them, publish the model with its indexes, and serve it."""
    from rich.console import Console

    from cli.audio import featurize
    from cli.evaluate import evaluate
    from cli.factorize import factorize
    from cli.publish import publish
    from cli.serve import serve
    from cli.train import train
    from cli.world import world
    from training.baseline import BASELINE_FRONT_END
    from training.encoders import encoder_of_front_end

    encoders_given([encoder])
    # The encoder's front end, and the classical models' (the project's log-mel).
    front_ends = list(dict.fromkeys([encoder, encoder_of_front_end(BASELINE_FRONT_END) or encoder]))
    console = Console()
    name = f"{songs}x{users}-{clip_seconds:g}s-seed{seed}-{instruments.value}"
    world_dir = workdir / "worlds" / f"demo-{name}"
    run_dir = workdir / "runs" / f"demo-{name}"
    registry = workdir / "registry"
    database = registry / "catalogue.sqlite"
    started = time.perf_counter()

    def step(title: str) -> None:
        console.rule(f"[bold]{title}[/bold]  ({time.perf_counter() - started:,.0f} s)")

    step("1/6 synthetic world")
    if (world_dir / "listens.tsv").is_file():
        console.print(f"reusing {world_dir}")
    else:
        world(
            out=world_dir,
            songs=songs,
            users=users,
            clip_seconds=clip_seconds,
            seed=seed,
            instruments=instruments,
        )
    step("2/6 featurize (log-mel cache)")
    featurize(dataset=world_dir, encoder=front_ends)
    step("3/6 factorize (WMF)")
    factorize(dataset=world_dir, run=run_dir, seed=seed)
    step(f"4/6 train ({encoder} CNN, MFCC and k-means baselines)")
    train(run=run_dir, seed=seed, encoder=[encoder], verbose=verbose)
    step("5/6 evaluate (mAP@500, AUC on cold songs)")
    evaluate(run=run_dir, seed=seed)
    step("6/6 publish (indexes, registry, catalogue)")
    registry.mkdir(parents=True, exist_ok=True)
    _import_listening_history(world_dir, database)
    publish(run=run_dir, registry=registry, database=str(database))
    console.rule(f"ready in {time.perf_counter() - started:,.0f} s")
    if not serve_after:
        return
    key = os.environ.get("COLDSTART_API_KEYS", "").split(",")[0]
    if not key:
        key = secrets.token_urlsafe(24)
        os.environ["COLDSTART_API_KEYS"] = key
        console.print(f"write key for this session (COLDSTART_API_KEYS): [bold]{key}[/bold]")
    some_song = next((world_dir / "audio").iterdir())
    url = f"http://{host}:{port}"
    console.print(f"serving on [bold]{url}[/bold] (web page at {url}/, API docs at {url}/docs)")
    console.print(
        f"try:  curl -F file=@{some_song} '{url}/v1/similar?k=5'\n"
        f"      curl -H 'Authorization: Bearer {key}' -F file=@{some_song} -F title=New"
        f" -F artist=Someone {url}/v1/tracks"
    )
    serve(registry=registry, host=host, port=port, database=str(database))


def _import_listening_history(world_dir: Path, database: Path) -> None:
    """Put the world's songs and listens into the catalogue (once), so that the nightly
    `coldstart pipeline --database` retrains on everything the catalogue knows."""
    from catalogue import open_catalogue
    from corpus.dataset import load_dataset

    with open_catalogue(database.resolve()) as catalogue:
        if catalogue.count_listens() == 0:
            world = load_dataset(world_dir)
            catalogue.import_songs(world.songs)
            catalogue.import_listens(world.listens)
