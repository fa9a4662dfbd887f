"""Training a content encoder of a run with Lightning: `RUN/models/cnn/` (or a further one).

The encoder (any architecture of `training.encoders`, by name in `CNNSettings.encoder`)
learns to predict a song's WMF factors from its audio: the targets are the training
songs' factors, validation is ranking the (folded-in, never-fitted) validation songs for
every user, and the fit ends by fitting the content space on the training songs
(`training.content_space`) and predicting the test songs from their whole clips into
`test_song_factors.npy`, rows following `factorization/test_song_ids.json`. Features come
from the mel cache of the encoder's own front end (`RunData.with_front_end`).

The encoder can start from an earlier one (the nightly run fine-tunes the served one): it
then keeps that encoder's architecture, sizes and front end, and its manifest names the
earlier one as a parent.

The fit can span several GPUs or nodes (Lightning's DDP, see `CNNSettings`): then every
process runs it, each on its share of the songs, and global rank 0 alone writes the model
folder. This module is the only one of the run's training that imports Lightning.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from artifacts.manifest import ArtifactError, read_manifest
from artifacts.run_layout import CNN_NAME, MODELS_DIR, TEST_FACTORS_FILE
from audio.config import FrontEndMismatchError
from corpus.artists import UNKNOWN_ARTIST
from training.artist_head import NO_ARTIST
from training.checkpoint import MANIFEST_KIND, load_encoder, save_encoder
from training.content_space import fit_content_space, pooled_cached
from training.datamodule import MelDataModule
from training.distillation import JoinedMels, TeacherFeatures, agreement, teacher_features
from training.encoders import DEFAULT_ENCODER, build_encoder, encoder_class
from training.encoders.base import ContentEncoder, EncoderDims, EncoderWeightsError
from training.inference import predict_cached
from training.lightning_module import BestWeights, ContentModel
from training.run_data import (
    RunData,
    TrainingError,
    fresh_model_folder,
    open_cache,
    scatter_rows,
    song_artists,
)

STRATEGIES = ("auto", "ddp")
# The weight of the distillation loss (a student's pooled features against its teacher's)
# beside the factor MSE. Each MSE starts near its targets' variance per dimension: on a
# 600-song world, 0.019 for the WMF factors and 0.27 for MSD_musicnn's penultimate features
# of the same songs (BENCHMARKS.md). 0.1 makes the teacher's term start a little above the
# factors' (x 1.4), so that neither goal drowns the other and hearing like the teacher,
# which the factors of a small world cannot teach, is not left for last.
DISTILL_WEIGHT = 0.1
CONTRASTIVE_CLASSES = ("song", "artist")


@dataclass(frozen=True)
class CNNSettings:
    """How a content encoder is trained. `max_minutes` bounds the wall-clock time of the fit.

    `encoder` names the architecture (`training.encoders.available_encoders()`); `dims`
    its sizes (an instance of its `dims_type`; None: its defaults), the factor count
    always the factorization's.

    Defaults measured with `dieleman` on the demo world (2000 songs, 12-s clips, two CPU
    cores): validation mAP levels off after about 12 epochs of 8 crops per song with a
    cosine schedule (20 epochs gave the same); lr 3e-3 and unit-length targets (which drop
    the popularity that a factor vector's length carries) were clearly worse, dropout 0.1
    better than 0.3. 12 epochs take about a minute on two idle cores, four on busy ones;
    `max_minutes` stops a slower machine in time. `songs_per_epoch` bounds an epoch on a
    large catalogue (`CropSampler`: a new random draw of that many training songs each
    epoch; None: every song): 4,096 songs x 8 crops is about what two CPU cores train in
    the 4-minute budget over 12 epochs, and leaves the demo world's epochs (under 2,500
    training songs) as they were.

    `accelerator`, `devices` and `num_nodes` are Lightning's. More than one process in all
    is a DDP fit ("auto" picks "ddp"; Lightning's spawn and fork launchers are refused: their
    fit runs in child processes whose best weights never come back). `batch_size` stays
    the crops of one optimiser step, split evenly across the processes, so the settings
    above mean the same steps on any number of devices; batch norm, though, normalises each
    process's share (torch syncs it on GPUs only), so keep the share at 16 crops or more.

    `contrastive_weight` > 0 adds the song-contrastive objective beside the factor MSE
    (`training.contrastive`: batches of pairs of crops of one song, so `crops_per_song` and
    each process's share of `batch_size` must be even); `contrastive_classes` "artist" makes
    every crop of the same artist (songs.csv) a positive, not only the other crop of its song.
    `artist_head_weight` > 0 adds the cross-entropy of a linear classifier of the pooled
    features into the training songs' artists (songs.csv; `training.artist_head`).

    `distill_weight`: for an architecture with a teacher (`student`), the weight of the
    MSE between its pooled features and the teacher's features of the same song
    (`training.distillation`) beside the factor MSE (0: no distillation). The default,
    `DISTILL_WEIGHT`, is explained where it is defined. `distill_audio`: a dataset folder
    of audio without listens (`DIR/audio/`, its mel cache made by `coldstart featurize`,
    e.g. `bench.distill_music`'s freely licensed soundtracks) whose songs join the
    training crops for the distillation loss only (their factors are unknown).
    """

    encoder: str = DEFAULT_ENCODER
    dims: EncoderDims | None = None
    epochs: int = 12
    max_minutes: float | None = 4.0
    batch_size: int = 64
    crops_per_song: int = 8
    songs_per_epoch: int | None = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    normalise_targets: bool = False
    mask_bands: int = 0
    mask_frames: int = 0
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.1
    contrastive_classes: str = "song"
    artist_head_weight: float = 0.0
    distill_weight: float = DISTILL_WEIGHT
    distill_audio: str | None = None
    patience: int = 6
    clip_batch_size: int = 32
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"

    def __post_init__(self) -> None:
        architecture = encoder_class(self.encoder)  # UnknownEncoderError names the others
        if self.dims is not None and not isinstance(self.dims, architecture.dims_type):
            raise ValueError(
                f"{self.encoder} takes {architecture.dims_type.__name__},"
                f" got {type(self.dims).__name__}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.contrastive_classes not in CONTRASTIVE_CLASSES:
            raise ValueError(
                f"contrastive_classes must be one of {CONTRASTIVE_CLASSES},"
                f" got {self.contrastive_classes!r}"
            )
        if self.artist_head_weight < 0:
            raise ValueError(f"artist_head_weight must be >= 0, got {self.artist_head_weight}")
        if self.distill_weight < 0:
            raise ValueError(f"distill_weight must be >= 0, got {self.distill_weight}")
        if self.distill_audio is not None and (self.contrastive_weight or self.artist_head_weight):
            raise ValueError(
                "distill_audio songs have no artist nor listens: not with the contrastive or"
                " artist objectives"
            )
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be at least 1, got {self.num_nodes}")

    @property
    def lightning_strategy(self) -> str:
        """The Trainer's strategy: "ddp" whenever more than one process may take part."""
        if self.strategy == "auto" and (self.devices not in (1, "1") or self.num_nodes > 1):
            return "ddp"
        return self.strategy

    def for_encoder(self, name: str) -> CNNSettings:
        """These settings for the architecture `name` at its default sizes (itself when it
        is this one's)."""
        return self if name == self.encoder else dataclasses.replace(self, encoder=name, dims=None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CNN_DEFAULTS = CNNSettings()


def initial_encoder(folder: Path, data: RunData) -> tuple[ContentEncoder, str]:
    """The encoder saved in `folder` to fine-tune on `data` (in training mode), and its
    manifest digest.

    Raises `TrainingError` (the caller may then train from scratch) when it cannot be
    loaded, was trained behind another front end than `data`'s cache, or predicts another
    number of factors.
    """
    try:
        digest = str(read_manifest(folder, kind=MANIFEST_KIND)["digest"])
        encoder = load_encoder(folder, data.cache.config)
    except (ArtifactError, FrontEndMismatchError) as error:
        raise TrainingError(f"cannot fine-tune from {folder}: {error}") from error
    n_factors = data.factorization.n_factors
    if encoder.dims.n_factors != n_factors:
        raise TrainingError(
            f"cannot fine-tune from {folder}: it predicts {encoder.dims.n_factors} factors,"
            f" the factorization has {n_factors}"
        )
    # load_encoder gives eval mode, and Lightning keeps the mode it is handed
    return encoder.train(), digest


def is_global_zero() -> bool:
    """Whether this process is the one that writes: the only one, or global rank 0 of a DDP
    fit. Exact once a Trainer was built in the process (Lightning sets the rank then);
    before, read from the launcher's environment (RANK, LOCAL_RANK, SLURM_PROCID)."""
    return bool(rank_zero_only.rank == 0)


# Messages of Lightning and torch that tell a user nothing about their run: the advertising
# tip, torch's deprecation of a class Lightning still uses, the note that an epoch has
# fewer batches than the logging interval (tiny demo worlds), and the note that modules are
# in eval mode (a frozen pretrained network, `musicnn-msd`, is so on purpose).
LIBRARY_CHATTER = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r".*smaller than the logging interval",
    r".*module\(s\) in eval mode at the start of training",
)


def quiet_lightning() -> None:
    """Keep library chatter off the console where a Trainer is built: Lightning's info lines
    (placement, the litlogger tip, "fit stopped") and the warnings of `LIBRARY_CHATTER`. Our
    progress bar and summaries, and every other warning, still show."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric.utilities.rank_zero").setLevel(logging.WARNING)
    for message in LIBRARY_CHATTER:
        warnings.filterwarnings("ignore", message=message)


def trainer_placement(settings: CNNSettings) -> dict[str, Any]:
    """The `pl.Trainer` arguments that place an encoder fit on devices, processes and nodes.

    The DataModule shards the songs itself (`training.datamodule.CropSampler`), so Lightning
    must not put its own sampler in: `use_distributed_sampler=False`.
    """
    return {
        "accelerator": settings.accelerator,
        "devices": settings.devices,
        "num_nodes": settings.num_nodes,
        "strategy": settings.lightning_strategy,
        "use_distributed_sampler": False,
    }


def starting_encoder(
    data: RunData, settings: CNNSettings, init_from: Path | None
) -> tuple[ContentEncoder, str | None]:
    """The net a fit starts from (training mode) and the digest of the checkpoint it came
    from: a fresh `settings.encoder` behind its own front end, or the encoder saved in
    `init_from` (its architecture must be `settings.encoder`; see `initial_encoder`) with
    the content embedding's size of `settings.dims` (the architecture's default when None).
    `data` must read the mel cache of that front end (`TrainingError` otherwise, and when
    the trained weights a fresh encoder starts from cannot be had)."""
    architecture = encoder_class(settings.encoder)
    if init_from is None:
        if data.cache.config != architecture.default_front_end:
            raise TrainingError(
                f"{settings.encoder} trains behind its own front end"
                f" ({architecture.default_front_end.fingerprint()[:12]}), not behind the mel"
                f" cache {data.cache.cache_dir}: read the run through its cache"
                " (RunData.with_front_end)"
            )
        try:
            net = build_encoder(
                settings.encoder, settings.dims, n_factors=data.factorization.n_factors
            )
        except EncoderWeightsError as error:
            raise TrainingError(f"cannot start a {settings.encoder} encoder: {error}") from error
        return net.train(), None
    net, digest = initial_encoder(Path(init_from), data)
    if net.name != settings.encoder:
        raise TrainingError(
            f"cannot fine-tune a {settings.encoder} encoder from {init_from}: it is a {net.name}"
        )
    # An encoder saved before the content embedding (or with another size) gets this run's;
    # its projection is fitted after the fit like a fresh one's.
    content_dims = (settings.dims or architecture.dims_type()).content_dims
    return net.with_content_dims(content_dims).train(), digest


def train_encoder(
    data: RunData,
    settings: CNNSettings = CNN_DEFAULTS,
    seed: int = 0,
    progress: bool = True,
    init_from: Path | None = None,
    folder_name: str = CNN_NAME,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train the encoder `settings` name with Lightning, predict the test songs, save it in
    `RUN/models/<folder_name>/` (`cnn`: the run's served encoder).

    `init_from` (a checkpoint folder) starts from that encoder's weights and sizes instead
    of `settings.dims` and fresh ones (see `starting_encoder`). `data` reads the mel cache
    of the encoder's front end. The content projection is fitted on the training songs once
    the fit is done (`training.content_space`). `verbose` lets Lightning print its info
    lines and model summary. Under DDP every process calls this; global rank 0 writes the
    folder, and every process returns its manifest.
    """
    started = time.perf_counter()
    f = data.factorization
    pl.seed_everything(seed, workers=True, verbose=False)
    net, init_digest = starting_encoder(data, settings, init_from)
    train_ids, train_rows = data.cached(f.song_ids)
    valid_ids, valid_rows = data.validation()
    test_ids, test_rows = data.cached(f.test_song_ids)
    window = data.cache.config.window_frames
    long_enough = np.array([data.cache.n_frames(song) >= window for song in train_ids], bool)
    train_ids = [song for song, keep in zip(train_ids, long_enough, strict=True) if keep]
    train_rows = train_rows[long_enough]
    teacher = distillation_teacher(net, settings)
    distilled = None if teacher is None else teacher_features(data.dataset_root, train_ids, teacher)
    crops, crop_ids, crop_factors = data.cache, train_ids, f.song_factors[train_rows]
    extra_ids: list[str] = []
    if teacher is not None and distilled is not None and settings.distill_audio is not None:
        extra_root = Path(settings.distill_audio)
        extra_cache = open_cache(extra_root, data.cache.config)
        extra_ids = [s for s in extra_cache.song_ids if extra_cache.n_frames(s) >= window]
        if set(extra_ids) & set(data.cache.song_ids):
            raise TrainingError(f"{extra_root} has songs of the same ids as the run's dataset")
        distilled = distilled.followed_by(teacher_features(extra_root, extra_ids, teacher))
        crops = JoinedMels(data.cache, extra_cache)
        crop_ids = [*train_ids, *extra_ids]
        unknown = np.full((len(extra_ids), f.n_factors), np.nan, np.float32)
        crop_factors = np.vstack([crop_factors, unknown])
    module = ContentModel(
        net,
        user_factors=f.user_factors,
        valid_relevance=data.valid_relevance[:, valid_rows].tocsr(),
        valid_factors=f.valid_song_factors[valid_rows],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        schedule=settings.schedule,
        normalise_targets=settings.normalise_targets,
        mask_bands=settings.mask_bands,
        mask_frames=settings.mask_frames,
        contrastive_weight=settings.contrastive_weight,
        contrastive_temperature=settings.contrastive_temperature,
        contrastive_classes=contrastive_classes(data, train_ids, settings),
        artist_head_weight=settings.artist_head_weight,
        artist_classes=artist_classes(data, train_ids) if settings.artist_head_weight else None,
        teacher_features=None if distilled is None else distilled.features,
        distill_weight=settings.distill_weight,
    )
    folder = data.run_dir / MODELS_DIR / folder_name
    best = BestWeights(monitor="val/map", mode="max")
    if not verbose:
        quiet_lightning()
    try:
        trainer = pl.Trainer(
            **trainer_placement(settings),
            max_epochs=settings.epochs,
            max_time=None if settings.max_minutes is None else {"minutes": settings.max_minutes},
            logger=[
                CSVLogger(folder, name="logs", version=""),
                TensorBoardLogger(folder, name="logs", version="", default_hp_metric=False),
            ],
            callbacks=[EarlyStopping("val/map", mode="max", patience=settings.patience), best],
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=verbose,
            num_sanity_val_steps=0,
            log_every_n_steps=10,
            deterministic="warn",  # some CUDA kernels have no deterministic version
        )
    except MisconfigurationException as error:
        raise TrainingError(f"cannot train on {trainer_placement(settings)}: {error}") from error
    processes = trainer.world_size
    if settings.batch_size % processes or settings.batch_size // processes < 2:
        raise TrainingError(
            f"batch_size {settings.batch_size} does not split into {processes} processes"
            " of at least 2 crops each"
        )
    datamodule = MelDataModule(
        crops,
        crop_ids,
        crop_factors,
        valid_ids,
        window_frames=window,
        crops_per_song=settings.crops_per_song,
        songs_per_epoch=settings.songs_per_epoch,
        batch_size=settings.batch_size // processes,
        clip_batch_size=settings.clip_batch_size,
        num_workers=settings.num_workers,
        seed=seed,
        pair_crops=settings.contrastive_weight > 0,
        with_songs=settings.artist_head_weight > 0 or distilled is not None,
    )
    if trainer.is_global_zero:
        fresh_model_folder(folder)
    trainer.fit(module, datamodule=datamodule)
    manifest = None
    if trainer.is_global_zero:
        net = net.cpu().eval()
        content_space = fit_content_space(
            net, data.cache, train_ids, settings.clip_batch_size, seed
        )
        test_factors = scatter_rows(
            len(f.test_song_ids),
            test_rows,
            predict_cached(net, data.cache, test_ids, settings.clip_batch_size),
        )
        np.save(folder / TEST_FACTORS_FILE, test_factors)
        distillation = (
            None
            if teacher is None or distilled is None
            else {
                **distillation_report(data, net, teacher, distilled, valid_ids, settings),
                "audio_songs": len(extra_ids),
            }
        )
        manifest = save_encoder(
            net,
            folder,
            parameters={
                "seed": seed,
                **settings.to_dict(),
                "dims": net.dims.to_dict(),
                "init_from": init_digest,
            },
            parents={**data.parents, **({"init_encoder": init_digest} if init_digest else {})},
            dataset_fingerprint=data.fingerprint,
            extra_files=[TEST_FACTORS_FILE],
            extra={
                "validation": {"map": best.best_score, "best_epoch": best.best_epoch},
                "content_space": content_space,
                "epochs_run": trainer.current_epoch,
                "train_songs": len(train_ids),
                "processes": processes,
                "songs_without_audio": data.songs_without_audio(),
                "seconds": round(time.perf_counter() - started, 1),
                **({"distillation": distillation} if distillation else {}),
            },
        )
    # The other processes wait here for rank 0's manifest (no file system shared needed).
    manifest = trainer.strategy.broadcast(manifest, src=0)
    if processes > 1 and torch.distributed.is_initialized():
        # All ranks leave the process group together: a rank that exits while gloo's threads
        # still run aborts (SIGABRT), and the launcher then kills rank 0 mid-write.
        trainer.strategy.barrier("leave")
        torch.distributed.destroy_process_group()
    return manifest


def distillation_teacher(net: ContentEncoder, settings: CNNSettings) -> ContentEncoder | None:
    """The teacher `net` distils (eval mode), or None when its architecture has none or
    `settings.distill_weight` is 0; `TrainingError` when the teacher cannot be built or
    its pooled features are not as wide as `net`'s."""
    if net.teacher is None or settings.distill_weight <= 0:
        return None
    try:
        teacher = build_encoder(net.teacher).eval()
    except EncoderWeightsError as error:
        raise TrainingError(f"cannot build {net.name}'s teacher {net.teacher}: {error}") from error
    if teacher.dims.pooled_dims != net.dims.pooled_dims:
        raise TrainingError(
            f"{net.name} pools {net.dims.pooled_dims} features; its teacher {teacher.name}"
            f" pools {teacher.dims.pooled_dims}"
        )
    return teacher


def distillation_report(
    data: RunData,
    net: ContentEncoder,
    teacher: ContentEncoder,
    distilled: TeacherFeatures,
    valid_ids: Sequence[str],
    settings: CNNSettings,
) -> dict[str, Any]:
    """What the manifest records of a distillation: the teacher, its features' cost on the
    training songs, and how closely the trained `net` hears like it on the validation
    songs (`training.distillation.agreement`)."""
    valid = teacher_features(data.dataset_root, valid_ids, teacher)
    pooled = pooled_cached(net, data.cache, valid_ids, settings.clip_batch_size)
    return {
        "teacher": teacher.name,
        "weight": settings.distill_weight,
        "features": distilled.cache_dir.name,
        "train_songs_heard": int(distilled.heard.sum()),
        "train_songs_computed": distilled.computed,
        "teacher_seconds": round(distilled.seconds + valid.seconds, 1),
        "validation": agreement(net, pooled, teacher, valid.features),
    }


def contrastive_classes(
    data: RunData, train_ids: Sequence[str], settings: CNNSettings
) -> np.ndarray | None:
    """The class of each training song in the contrastive loss: None (each song its own)
    unless `settings.contrastive_classes` is "artist": then the index of its normalised
    artist in songs.csv (a song without one stays a class of its own)."""
    if settings.contrastive_weight <= 0 or settings.contrastive_classes == "song":
        return None
    names = [
        f"\0{song}" if name is None else name
        for song, name in zip(train_ids, _train_artists(data, train_ids), strict=True)
    ]
    _, classes = np.unique(np.array(names, dtype=object), return_inverse=True)
    return classes.astype(np.int64)


def artist_classes(data: RunData, train_ids: Sequence[str]) -> np.ndarray:
    """The artist head's class of each training song (n_train,) int64: the index of its
    normalised artist in songs.csv among the training songs' artists, `NO_ARTIST` (left out
    of the loss) for a song without one."""
    names = _train_artists(data, train_ids)
    known = sorted({name for name in names if name is not None})
    index = {name: position for position, name in enumerate(known)}
    return np.array([NO_ARTIST if name is None else index[name] for name in names], np.int64)


def _train_artists(data: RunData, train_ids: Sequence[str]) -> list[str | None]:
    """Each training song's normalised artist from songs.csv, None where it has none."""
    artist_of = song_artists(data.dataset_root)
    names = [artist_of.get(song, UNKNOWN_ARTIST) for song in train_ids]
    return [None if name == UNKNOWN_ARTIST else name for name in names]
