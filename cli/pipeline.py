"""`coldstart pipeline` (the nightly run) and `coldstart import` (a dataset into the catalogue).

The pipeline's exit code says how it ended (`pipeline.outcome`): 0 published, 3 refused
by the quality gate (current kept), 75 busy (another run holds the lock), 1 failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import app

if TYPE_CHECKING:
    from index.settings import IndexSettings


def _database_url(value: str) -> str:
    """A URL as given, or a plain path taken as a SQLite file."""
    return value if "://" in value else f"sqlite:///{Path(value).resolve()}"


@app.command()
def pipeline(
    registry: Annotated[Path, typer.Option(help="Model registry folder (REG).")],
    dataset: Annotated[
        Path | None, typer.Option(help="Train on this dataset folder (listens.tsv, songs.csv).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(help="Train on the catalogue DB at this URL (or SQLite file path)."),
    ] = None,
    audio_store: Annotated[
        Path | None,
        typer.Option(help="The catalogue's audio store (default: beside a SQLite file)."),
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="Snapshots and run folders (default REG/pipeline).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Id of this run (default: UTC time + random).")
    ] = None,
    summary: Annotated[
        Path | None, typer.Option(help="Also write the run summary (JSON) to this file.")
    ] = None,
    map_tolerance: Annotated[
        float, typer.Option(min=0.0, help="Gate: how far mAP@500 may fall below current's.")
    ] = 0.01,
    auc_tolerance: Annotated[
        float, typer.Option(min=0.0, help="Gate: how far AUC may fall below current's.")
    ] = 0.01,
    keep_versions: Annotated[
        int, typer.Option(min=1, help="Versions kept in the registry (current always).")
    ] = 5,
    keep_runs: Annotated[int, typer.Option(min=1, help="Run folders kept under WORK/runs.")] = 5,
    factors: Annotated[
        int, typer.Option(min=1, help="WMF factors of a first version (later: current's).")
    ] = 50,
    epochs: Annotated[int, typer.Option(min=1, help="CNN epochs when training afresh.")] = 12,
    fine_tune_epochs: Annotated[
        int, typer.Option(min=1, help="CNN epochs when fine-tuning the current encoder.")
    ] = 4,
    max_minutes: Annotated[
        float, typer.Option(min=0.1, help="Wall-clock bound of the CNN's training.")
    ] = 4.0,
    from_scratch: Annotated[
        bool, typer.Option(help="Ignore the current version: cold WMF start, new CNN.")
    ] = False,
    warm_min_listeners: Annotated[
        int, typer.Option(min=1, help="Listeners a song needs to sit at its WMF factors.")
    ] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the split and the models.")] = 0,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Featurize processes (default: every core).")
    ] = None,
    engine: Annotated[
        str,
        typer.Option(help="local, or spark: featurize, factorize and embed as Spark jobs."),
    ] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(help="Spark master URL (default $COLDSTART_SPARK_MASTER, else local[2])."),
    ] = None,
    index_kind: Annotated[
        str,
        typer.Option(help="auto (exact below 100k songs, HNSW above), exact, hnsw or ivfpq."),
    ] = "auto",
    index_factory: Annotated[
        str | None, typer.Option(help="FAISS factory string of the ivfpq kind.")
    ] = None,
    index_nprobe: Annotated[
        int | None, typer.Option(min=1, help="Lists an ivfpq index searches per query.")
    ] = None,
    index_memory_gb: Annotated[
        float | None,
        typer.Option(min=0.001, help="Memory budget of one ivfpq index; above it, shards."),
    ] = None,
) -> None:
    """The nightly run: snapshot -> featurize -> factorize (warm) -> train (fine-tune) ->
    evaluate -> quality gate -> publish -> retention. Exit code: 0 published, 3 refused by
    the gate, 75 another run is going, 1 failed; the current version serves throughout."""
    from rich.console import Console

    from evaluation.gate import GateSettings
    from pipeline.nightly import PipelineSettings, run_pipeline
    from training.run import CNN_DEFAULTS

    console = Console(stderr=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )
    try:
        settings = PipelineSettings(
            registry=registry,
            dataset=dataset,
            database_url=_database_url(database) if database else None,
            audio_store=audio_store,
            work_dir=work_dir,
            run_id=run_id,
            factors=factors,
            cnn=dataclasses.replace(CNN_DEFAULTS, epochs=epochs, max_minutes=max_minutes),
            fine_tune_epochs=fine_tune_epochs,
            from_scratch=from_scratch,
            gate=GateSettings(map_tolerance=map_tolerance, auc_tolerance=auc_tolerance),
            keep_versions=keep_versions,
            keep_runs=keep_runs,
            warm_min_listeners=warm_min_listeners,
            seed=seed,
            workers=workers,
            engine=engine,
            spark_master=spark_master,
            index=_index_settings(index_kind, index_factory, index_nprobe, index_memory_gb),
        )
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    result = run_pipeline(settings)
    if summary is not None:
        from artifacts.manifest import write_json_atomic

        write_json_atomic(summary, result.to_json())
    for step in result.steps:
        console.print(f"  {step.name:<10} {step.status:<7} {step.seconds:>8.1f} s")
    colour = {"published": "green", "refused": "yellow"}.get(str(result.outcome), "red")
    console.print(f"[{colour}]{result.outcome}[/{colour}]: {result.message}")
    console.print(f"summary: {Path(result.run_dir) / 'summary.json'}")
    typer.echo(json.dumps({"outcome": str(result.outcome), "version_id": result.version_id}))
    raise typer.Exit(result.exit_code)


def _index_settings(
    kind: str, factory: str | None, nprobe: int | None, memory_gb: float | None
) -> IndexSettings:
    """`IndexSettings` with the options given (the defaults for the others); ValueError on a
    bad kind or factory string."""
    from index.settings import IndexSettings

    given: dict[str, Any] = {"kind": kind}
    if factory is not None:
        given["ivfpq_factory"] = factory
    if nprobe is not None:
        given["nprobe"] = nprobe
    if memory_gb is not None:
        given["memory_budget_bytes"] = int(memory_gb * 2**30)
    return IndexSettings(**given)


@app.command("import")
def import_dataset(
    dataset: Annotated[Path, typer.Option(help="Dataset folder (songs.csv, listens.tsv, audio/).")],
    database: Annotated[str, typer.Option(help="Catalogue DB URL (or SQLite file path).")],
    audio_store: Annotated[
        Path | None,
        typer.Option(help="The catalogue's audio store (default: beside a SQLite file)."),
    ] = None,
    copy_audio: Annotated[
        bool,
        typer.Option(
            help="Copy the recordings into the audio store (the catalogue then holds"
            " everything the nightly run needs)."
        ),
    ] = True,
) -> None:
    """Import a dataset's songs, listens and recordings into the catalogue DB, so that
    `coldstart pipeline --database` trains on it. Songs already there are kept; listens
    are refused when the catalogue already holds some (importing twice would double them).
    listens.tsv is streamed a block at a time into one transaction (COPY on PostgreSQL):
    a bad row anywhere rejects every listen, and is named."""
    from rich.console import Console

    from catalogue import open_catalogue
    from catalogue.db import default_audio_store
    from catalogue.errors import CatalogueError
    from corpus.dataset import (
        LISTENS_FILE,
        SONGS_FILE,
        DatasetError,
        find_audio,
        iter_listens,
        read_songs,
    )

    console = Console()
    url = _database_url(database)
    try:
        songs_table = read_songs(dataset / SONGS_FILE)
        if not (dataset / LISTENS_FILE).is_file():
            raise DatasetError(f"{dataset / LISTENS_FILE}: missing")
        store = audio_store or default_audio_store(url)
        with open_catalogue(url, store) as catalogue:
            if catalogue.count_listens():
                raise CatalogueError(
                    f"the catalogue already holds {catalogue.count_listens():,} listens;"
                    " not importing a second copy"
                )
            songs = catalogue.import_songs(
                songs_table, audio=find_audio(dataset) if copy_audio else None
            )
            listens = catalogue.import_listens(iter_listens(dataset / LISTENS_FILE))
    except (DatasetError, CatalogueError, OSError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    console.print(f"imported {songs:,} songs and {listens:,} listens into {url}")
