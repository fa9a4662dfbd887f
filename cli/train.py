"""`coldstart train`: the content models of a run; `coldstart predict`: factors of audio files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.app import ENCODER_NAMES, app, encoders_given
from training.encoders import DEFAULT_ENCODER


def _yielding_threads() -> None:
    """Let torch's OpenMP threads sleep instead of spin when they wait (before torch loads).

    On a machine shared with other work, spinning threads steal each other's cores: on two
    busy cores a training step measured 5-30x slower with the default policy (and about
    10% faster on idle ones; see BENCHMARKS.md).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@app.command()
def train(
    run: Annotated[Path, typer.Option("--run", help="Run folder made by `coldstart factorize`.")],
    encoder: Annotated[
        list[str] | None,
        typer.Option(
            "--encoder",
            help=f"Encoder architecture: {ENCODER_NAMES} (default {DEFAULT_ENCODER}). Give it"
            " again for more: the first is the served one (RUN/models/cnn/), each further one"
            " trains into RUN/models/<name>/ and is scored beside it.",
        ),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(help="Dataset folder, if the factorization manifest does not record it."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Most CNN epochs (early stopping may end sooner).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=2, help="3-second crops per CNN step (in all, split across processes)."),
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option(min=0.0, help="Wall-clock budget of the CNN fit (0: none).")
    ] = None,
    crops_per_song: Annotated[
        int | None, typer.Option(min=1, help="Random crops per training song per epoch.")
    ] = None,
    songs_per_epoch: Annotated[
        int | None,
        typer.Option(
            min=0, help="Training songs cropped per epoch, drawn anew each epoch (0: every song)."
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    mask_bands: Annotated[
        int | None,
        typer.Option(min=0, help="SpecAugment: most mel bands masked per training crop (0: off)."),
    ] = None,
    mask_frames: Annotated[
        int | None,
        typer.Option(min=0, help="SpecAugment: most frames masked per training crop (0: off)."),
    ] = None,
    contrastive_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of the song-contrastive loss (pairs of crops of one song) beside the"
            " factor MSE (0: off).",
        ),
    ] = None,
    contrastive_classes: Annotated[
        str | None,
        typer.Option(
            help="Positives of the contrastive loss: song (the other crop of the song) or"
            " artist (every crop of the artist's songs)."
        ),
    ] = None,
    artist_head_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of the cross-entropy of a linear artist classifier on the pooled"
            " features beside the factor MSE (0: off).",
        ),
    ] = None,
    distill_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of the distillation loss (a student's pooled features against its"
            " teacher's) beside the factor MSE (0: off; default 0.1).",
        ),
    ] = None,
    distill_audio: Annotated[
        Path | None,
        typer.Option(
            help="Dataset folder of audio without listens (its mel cache made by `coldstart"
            " featurize`) whose songs a student also distils its teacher on.",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, help="Data loader worker processes (0: in process).")
    ] = None,
    accelerator: Annotated[
        str, typer.Option(help="Lightning accelerator of the CNN fit: auto, cpu, gpu, ...")
    ] = "auto",
    devices: Annotated[
        str,
        typer.Option(help="Devices per node: a count, 'auto', -1 for all, or GPU ids '0,2'."),
    ] = "1",
    num_nodes: Annotated[int, typer.Option(min=1, help="Machines taking part in the fit.")] = 1,
    strategy: Annotated[
        str,
        typer.Option(help="auto (DDP when more than one process takes part) or ddp."),
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of crops, weights, codebook.")] = 0,
    cnn: Annotated[bool, typer.Option("--cnn/--no-cnn", help="Train the CNN.")] = True,
    linear: Annotated[
        bool, typer.Option("--linear/--no-linear", help="Fit the MFCC baseline.")
    ] = True,
    kmeans: Annotated[
        bool,
        typer.Option(
            "--kmeans/--no-kmeans", help="Fit the multiscale spherical k-means features' model."
        ),
    ] = True,
    hybrid: Annotated[
        bool,
        typer.Option(
            "--hybrid/--no-hybrid",
            help="Fit the artist prior and the CNN + artist fusion (after the CNN, or on the"
            " run's finished models/cnn/).",
        ),
    ] = True,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also Lightning's info lines and model summary.")
    ] = False,
) -> None:
    """Train the content models on a factorized run: the served encoder (RUN/models/cnn/,
    from the mel cache of its front end: `coldstart featurize DATASET --encoder NAME`), any
    further encoders (RUN/models/<name>/), the paper's MFCC bag-of-words linear baseline
    (RUN/models/linear/), the multiscale spherical k-means model (RUN/models/kmeans/), the
    artist prior (RUN/models/artist/) and the hybrid of CNN and artist (RUN/models/hybrid/);
    each predicts the test songs.
    Encoder options left out take the defaults of `training.encoder_fit.CNNSettings`.

    Several devices or nodes train the CNN with DDP: on one machine this command starts the
    other processes itself; across machines run it on each with MASTER_ADDR, MASTER_PORT and
    NODE_RANK set (or under torchrun or SLURM), as docs/ARCHITECTURE.md describes."""
    import dataclasses

    _yielding_threads()
    from rich.console import Console

    from artifacts.manifest import ArtifactError
    from artifacts.run_layout import MODELS_DIR
    from training.baseline import BaselineParams
    from training.encoder_fit import CNNSettings, is_global_zero
    from training.kmeans import KMeansParams
    from training.run import train_run
    from training.run_data import TrainingError

    names = encoders_given(encoder)
    if not (cnn or names[1:] or linear or kmeans or hybrid):
        raise typer.BadParameter(
            "nothing to train: --no-cnn, --no-linear, --no-kmeans and --no-hybrid"
        )
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "crops_per_song": crops_per_song,
        "lr": lr,
        "mask_bands": mask_bands,
        "mask_frames": mask_frames,
        "contrastive_weight": contrastive_weight,
        "contrastive_classes": contrastive_classes,
        "artist_head_weight": artist_head_weight,
        "distill_weight": distill_weight,
        "distill_audio": None if distill_audio is None else str(distill_audio),
        "num_workers": workers,
    }
    try:
        settings = CNNSettings(
            **{name: value for name, value in given.items() if value is not None},
            encoder=names[0],
            accelerator=accelerator,
            devices=int(devices) if devices.lstrip("-").isdigit() else devices,
            num_nodes=num_nodes,
            strategy=strategy,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    if max_minutes is not None:
        settings = dataclasses.replace(settings, max_minutes=max_minutes or None)
    if songs_per_epoch is not None:
        settings = dataclasses.replace(settings, songs_per_epoch=songs_per_epoch or None)
    console = Console()
    try:
        manifests = train_run(
            run,
            dataset_root=dataset,
            seed=seed,
            cnn=settings if cnn else None,
            others=[settings.for_encoder(name) for name in names[1:]],
            linear=BaselineParams() if linear else None,
            kmeans=KMeansParams() if kmeans else None,
            hybrid=hybrid,
            verbose=verbose,
        )
    except (TrainingError, ArtifactError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    if not is_global_zero():
        return  # the other processes of a DDP fit: rank 0 reports
    for name, manifest in manifests.items():
        validation = manifest["validation"]
        console.print(
            f"[bold]{name}[/bold] {run / MODELS_DIR / name}  validation mAP@500 "
            f"{validation['map']:.4f}  ({manifest['seconds']:.0f} s)"
            f"  digest {manifest['digest'][:12]}"
        )


@app.command()
def predict(
    files: Annotated[
        list[Path], typer.Argument(help="Audio files (any format the decoder reads).")
    ],
    run: Annotated[Path, typer.Option("--run", help="Run folder with trained models.")],
    model: Annotated[
        str,
        typer.Option(
            help="Which model of RUN/models/: cnn (the served encoder), linear, kmeans, or a"
            f" further encoder's name ({ENCODER_NAMES})."
        ),
    ] = "cnn",
    out: Annotated[
        Path | None, typer.Option(help="Save the (n_files, F) float32 factors to this .npy.")
    ] = None,
) -> None:
    """Predict the latent factor vector of audio files through the serving path
    (decode -> front end -> model), printing one JSON line per file or saving a .npy."""
    import json

    _yielding_threads()
    import numpy as np

    from artifacts.manifest import ArtifactError
    from artifacts.run_layout import MODELS_DIR
    from audio.config import FrontEndMismatchError
    from audio.errors import AudioError
    from training.inference import load_predictor

    folder = run / MODELS_DIR / model
    if not folder.is_dir():
        there = sorted(path.name for path in (run / MODELS_DIR).glob("*") if path.is_dir())
        raise typer.BadParameter(
            f"no {MODELS_DIR}/{model}/ in {run} (there: {', '.join(there) or 'none'})",
            param_hint="--model",
        )
    try:
        predictor = load_predictor(folder)
    except (ArtifactError, FrontEndMismatchError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    rows, failed = [], 0
    for file in files:
        try:
            factors = predictor(file)
        except AudioError as error:
            typer.echo(f"{file}: {error.code}: {error}", err=True)
            failed += 1
            continue
        rows.append(factors)
        if out is None:
            typer.echo(
                json.dumps({"file": str(file), "factors": [round(float(x), 6) for x in factors]})
            )
    if failed:
        raise typer.Exit(1)
    if out is not None:
        np.save(out, np.stack(rows).astype(np.float32))
        typer.echo(f"saved {len(rows)} x {rows[0].size} factors to {out}")
