"""`coldstart pipeline` (the nightly run) and `coldstart import` (a dataset into the catalogue).

The pipeline's exit code says how it ended (`pipeline.outcome`): 0 published, 3 refused
by the quality gate (current kept), 75 busy (another run holds the lock), 1 failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import ENCODER_NAMES, app, encoders_given, given

if TYPE_CHECKING:
    import pandas as pd

    from cli.progress import Step
    from index.settings import IndexSettings


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
        float | None,
        typer.Option(
            min=0.0, help="Gate: how far mAP@500 may fall below current's (default: GateSettings)."
        ),
    ] = None,
    auc_tolerance: Annotated[
        float | None,
        typer.Option(
            min=0.0, help="Gate: how far AUC may fall below current's (default: GateSettings)."
        ),
    ] = None,
    gate_metrics: Annotated[
        str | None,
        typer.Option(
            help="Gate: the metrics that decide, comma-separated, of map, auc and"
            " recall|precision|ndcg@10|50|500 (default: map,auc)."
        ),
    ] = None,
    top_k_tolerance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Gate: how far a deciding recall, precision or NDCG may fall (default:"
            " GateSettings).",
        ),
    ] = None,
    max_evaluated_users: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Evaluate and gate: score at most this many users with a test listen, a"
            " seeded draw above it (default: GateSettings, 100,000).",
        ),
    ] = None,
    keep_versions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Versions kept in the registry (current always) (default: PipelineSettings).",
        ),
    ] = None,
    keep_runs: Annotated[
        int | None,
        typer.Option(min=1, help="Run folders kept under WORK/runs (default: PipelineSettings)."),
    ] = None,
    factors: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="WMF factors of a first version (later: current's) (default: PipelineSettings).",
        ),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help=f"Encoder architecture to train: {ENCODER_NAMES}. Default: the current"
            " version's, fine-tuned (the default encoder for a first version); another than"
            " the current's trains from scratch.",
        ),
    ] = None,
    regularization: Annotated[
        str | None,
        typer.Option(
            help="WMF's lambda, or 'auto' to search it on held-out listens tonight"
            " (default: the current version's; searched on a first night).",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="CNN epochs when training afresh (default: CNNSettings)."),
    ] = None,
    fine_tune_epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CNN epochs when fine-tuning the current encoder (default: PipelineSettings).",
        ),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Wall-clock bound of the CNN's training (default: CNNSettings)."
        ),
    ] = None,
    songs_per_epoch: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Training songs cropped per CNN epoch, drawn anew each epoch, so a night's"
            " training costs the same however many songs have audio (0: every song; default:"
            " CNNSettings).",
        ),
    ] = None,
    classical_models: Annotated[
        bool,
        typer.Option(
            help="Also fit the linear and kmeans baselines: report rows beside the encoder."
        ),
    ] = True,
    from_scratch: Annotated[
        bool, typer.Option(help="Ignore the current version: cold WMF start, new CNN.")
    ] = False,
    warm_min_listeners: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Listeners a song needs to sit at its WMF factors (default: PipelineSettings).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the split and the models (default: PipelineSettings)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Featurize processes (default: every core).")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="local, or spark: featurize, factorize and embed as Spark jobs"
            " (default: PipelineSettings)."
        ),
    ] = None,
    spark_master: Annotated[
        str | None,
        typer.Option(help="Spark master URL (default $COLDSTART_SPARK_MASTER, else local[2])."),
    ] = None,
    index_kind: Annotated[
        str | None,
        typer.Option(
            help="auto (exact below 100k songs, HNSW above), exact, hnsw or ivfpq"
            " (default: IndexSettings)."
        ),
    ] = None,
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
    """The nightly run: snapshot -> featurize (for the encoder it trains) -> factorize
    (warm) -> train (fine-tune the current encoder, or --encoder from scratch) ->
    evaluate -> quality gate -> publish -> retention. Exit code: 0 published, 3 refused by
    the gate, 75 another run is going, 1 failed; the current version serves throughout.
    On a terminal the steps show live; otherwise each logs a line as it starts and ends."""
    from rich.console import Console

    from artifacts.run_layout import SUMMARY_FILE
    from catalogue.db import url_or_path
    from cli.factorize import parse_regularization
    from cli.progress import Steps
    from evaluation.gate import GateSettings
    from pipeline.nightly import PipelineSettings, StepRecord, run_pipeline
    from training.encoder_fit import CNN_DEFAULTS

    if encoder is not None:
        encoders_given([encoder])

    console = Console(stderr=True)
    steps = Steps(console)
    if steps.progress is None:  # a log: the run's INFO lines, one per step and more
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
        )
    else:  # a terminal: the steps live, and only warnings above them
        from rich.logging import RichHandler

        logging.basicConfig(
            handlers=[RichHandler(level=logging.WARNING, console=console)],
            format="%(name)s %(message)s",
            force=True,
        )
    try:
        settings = PipelineSettings(
            registry=registry,
            dataset=dataset,
            database_url=url_or_path(database) if database else None,
            audio_store=audio_store,
            work_dir=work_dir,
            run_id=run_id,
            cnn=dataclasses.replace(
                CNN_DEFAULTS,
                **given(epochs=epochs, max_minutes=max_minutes),
                **({} if songs_per_epoch is None else {"songs_per_epoch": songs_per_epoch or None}),
            ),
            from_scratch=from_scratch,
            classical_models=classical_models,
            gate=GateSettings(
                **given(
                    map_tolerance=map_tolerance,
                    auc_tolerance=auc_tolerance,
                    top_k_tolerance=top_k_tolerance,
                    max_users=max_evaluated_users,
                    metrics=tuple(m.strip() for m in gate_metrics.split(","))
                    if gate_metrics
                    else None,
                )
            ),
            workers=workers,
            spark_master=spark_master,
            index=_index_settings(index_kind, index_factory, index_nprobe, index_memory_gb),
            **given(
                encoder=encoder,
                factors=factors,
                regularization=None
                if regularization is None
                else parse_regularization(regularization),
                fine_tune_epochs=fine_tune_epochs,
                keep_versions=keep_versions,
                keep_runs=keep_runs,
                warm_min_listeners=warm_min_listeners,
                seed=seed,
                engine=engine,
            ),
        )
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    shown: dict[str, Step] = {}

    def on_step(record: StepRecord) -> None:
        if record.status == "running":
            shown[record.name] = steps.start(record.name)
        elif record.name in shown:
            steps.finish(shown.pop(record.name), failed=record.status == "failed")

    with steps:
        result = run_pipeline(settings, on_step=on_step if steps.progress is not None else None)
    if summary is not None:
        from artifacts.files import write_json_atomic

        write_json_atomic(summary, result.to_json())
    for step in result.steps:
        console.print(f"  {step.name:<10} {step.status:<7} {step.seconds:>8.1f} s")
    colour = {"published": "green", "refused": "yellow"}.get(str(result.outcome), "red")
    console.print(f"[{colour}]{result.outcome}[/{colour}]: {result.message}")
    console.print(f"summary: {Path(result.run_dir) / SUMMARY_FILE}")
    typer.echo(json.dumps({"outcome": str(result.outcome), "version_id": result.version_id}))
    raise typer.Exit(result.exit_code)


def _index_settings(
    kind: str | None, factory: str | None, nprobe: int | None, memory_gb: float | None
) -> IndexSettings:
    """`IndexSettings` with the options given (the defaults for the others); ValueError on a
    bad kind or factory string."""
    from index.settings import IndexSettings

    return IndexSettings(
        **given(
            kind=kind,
            ivfpq_factory=factory,
            nprobe=nprobe,
            memory_budget_bytes=None if memory_gb is None else int(memory_gb * 2**30),
        )
    )


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
    from catalogue.db import default_audio_store, url_or_path
    from catalogue.errors import CatalogueError
    from cli.progress import Steps
    from corpus.dataset import (
        LISTENS_FILE,
        SONGS_FILE,
        DatasetError,
        find_audio,
        iter_listens,
        read_songs,
    )

    console = Console()
    url = url_or_path(database)
    try:
        songs_table = read_songs(dataset / SONGS_FILE)
        if not (dataset / LISTENS_FILE).is_file():
            raise DatasetError(f"{dataset / LISTENS_FILE}: missing")
        store = audio_store or default_audio_store(url)
        with open_catalogue(url, store) as catalogue, Steps(Console(stderr=True)) as steps:
            if catalogue.count_listens():
                raise CatalogueError(
                    f"the catalogue already holds {catalogue.count_listens():,} listens;"
                    " not importing a second copy"
                )
            with steps.step(f"songs ({len(songs_table):,})") as step:
                songs = catalogue.import_songs(
                    songs_table, audio=find_audio(dataset) if copy_audio else None
                )
                step.update(f"{songs:,} added")
            with steps.step("listens") as step:
                listens = catalogue.import_listens(
                    _counted(iter_listens(dataset / LISTENS_FILE), step)
                )
                step.update(f"{listens:,} added")
    except (DatasetError, CatalogueError, OSError) as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise typer.Exit(1) from error
    console.print(f"imported {songs:,} songs and {listens:,} listens into {url}")


def _counted(frames: Iterator[pd.DataFrame], step: Step) -> Iterator[pd.DataFrame]:
    """`frames` passed on, telling `step` how many listens were read (and written) so far."""
    rows = 0
    for block, frame in enumerate(frames, 1):
        rows += len(frame)
        step.update(f"{rows:,} listens read (block {block})")
        yield frame
    step.update(f"{rows:,} listens read; committing (a first load builds the indexes now)")
