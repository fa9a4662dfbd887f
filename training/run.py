"""The training step of a run: fit the content models on `RUN/factorization/`, write `RUN/models/`.

Both models learn to predict a song's WMF factors from its audio: the targets are the
training songs' factors, validation is ranking the (folded-in, never-fitted) validation
songs for every user, and each model ends by predicting the test songs from their whole
clips into `RUN/models/<name>/test_song_factors.npy`, rows following
`factorization/test_song_ids.json`, for `coldstart evaluate`. Features come from the mel
cache that `coldstart featurize` wrote for the dataset the factorization was made from.

A test song without a cached mel (its audio was rejected by featurize) is predicted as
the zero vector, i.e. ranked as having no content evidence; validation leaves such songs
out, training too. Each model's manifest lists them.

The CNN can start from an earlier encoder (the nightly run fine-tunes the served one): it
then keeps that encoder's sizes, and its manifest names the earlier one as a parent.

The CNN fit can span several GPUs or nodes (Lightning's DDP, see `CNNSettings`): then every
process runs the training step, each on its share of the songs, and global rank 0 alone
writes the model folder and fits the baseline.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from artifacts.manifest import MANIFEST_NAME, ArtifactError, read_manifest
from artifacts.run_layout import (
    CNN_NAME,
    FACTORIZATION_DIR,
    LINEAR_NAME,
    MODELS_DIR,
    TEST_FACTORS_FILE,
)
from audio.cache import MelCache, default_cache_dir
from audio.config import FRONT_END, FrontEndConfig, FrontEndMismatchError
from corpus.dataset import LISTENS_FILE, read_listens
from factorization.matrices import play_count_matrix
from factorization.run import Factorization, dataset_root_of, load_factorization
from ranking.metrics import ranking_metrics
from training.baseline import BaselineParams, fit_baseline
from training.encoder import ContentEncoder, EncoderDims
from training.inference import predict_cached

STRATEGIES = ("auto", "ddp")
CONTRASTIVE_CLASSES = ("song", "artist")


class TrainingError(RuntimeError):
    """A run cannot be trained as asked (no factorization, no mel cache, wrong dataset)."""


@dataclass(frozen=True)
class CNNSettings:
    """How the CNN is trained. `max_minutes` bounds the wall-clock time of the fit.

    Defaults measured on the demo world (2000 songs, 12-s clips, two CPU cores): validation
    mAP levels off after about 12 epochs of 8 crops per song with a cosine schedule (20
    epochs gave the same); lr 3e-3 and unit-length targets (which drop the popularity that
    a factor vector's length carries) were clearly worse, dropout 0.1 better than 0.3.
    12 epochs take about a minute on two idle cores, four on busy ones; `max_minutes`
    stops a slower machine in time.

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
    """

    dims: EncoderDims = EncoderDims()
    epochs: int = 12
    max_minutes: float | None = 4.0
    batch_size: int = 64
    crops_per_song: int = 8
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
    patience: int = 6
    clip_batch_size: int = 32
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.contrastive_classes not in CONTRASTIVE_CLASSES:
            raise ValueError(
                f"contrastive_classes must be one of {CONTRASTIVE_CLASSES},"
                f" got {self.contrastive_classes!r}"
            )
        if self.artist_head_weight < 0:
            raise ValueError(f"artist_head_weight must be >= 0, got {self.artist_head_weight}")
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be at least 1, got {self.num_nodes}")

    @property
    def lightning_strategy(self) -> str:
        """The Trainer's strategy: "ddp" whenever more than one process may take part."""
        if self.strategy == "auto" and (self.devices not in (1, "1") or self.num_nodes > 1):
            return "ddp"
        return self.strategy

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CNN_DEFAULTS = CNNSettings()
BASELINE_DEFAULTS = BaselineParams()


@dataclass
class RunData:
    """What both models train on: the factorization, the mel cache, validation relevance.

    `valid_relevance` (n_users, n_valid) float32 CSR is 1 where a user (rows follow
    `factorization.user_ids`) listened to a validation song.
    """

    run_dir: Path
    dataset_root: Path
    factorization: Factorization
    cache: MelCache
    valid_relevance: sp.csr_matrix

    @property
    def fingerprint(self) -> str | None:
        return self.factorization.manifest.get("dataset_fingerprint")

    @property
    def parents(self) -> dict[str, str]:
        return {"factorization": self.factorization.digest}

    def cached(self, song_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The ids of `song_ids` that have a cached mel, and their positions in `song_ids`."""
        positions = np.flatnonzero(np.isin(np.asarray(song_ids), self.cache.song_ids))
        return [song_ids[i] for i in positions], positions


def load_run_data(
    run_dir: Path, dataset_root: Path | None = None, config: FrontEndConfig = FRONT_END
) -> RunData:
    """Load the factorization, open the dataset's mel cache, build the validation relevance."""
    run_dir = Path(run_dir)
    if not (run_dir / FACTORIZATION_DIR / MANIFEST_NAME).is_file():
        raise TrainingError(
            f"{run_dir}: no finished factorization (run `coldstart factorize` first)"
        )
    factorization = load_factorization(run_dir)
    root = dataset_root_of(factorization, dataset_root)
    cache_dir = default_cache_dir(root, config)
    try:
        cache = MelCache.open(cache_dir)
    except (FileNotFoundError, OSError, ValueError) as error:
        raise TrainingError(
            f"no usable mel cache at {cache_dir} ({error}): run `coldstart featurize {root}` first"
        ) from error
    config.require_same(cache.config, what=f"mel cache {cache_dir}")
    listens = read_listens(root / LISTENS_FILE)
    relevance = play_count_matrix(listens, factorization.user_ids, factorization.valid_song_ids)
    relevance.data[:] = 1.0
    return RunData(run_dir, root, factorization, cache, relevance)


def ranking_scorer(
    data: RunData, valid_rows: np.ndarray, k: int = 500
) -> Callable[[np.ndarray], float]:
    """`score(vectors (len(valid_rows), F))` -> mAP@k of ranking those validation songs.

    `valid_rows` picks the validation songs that have audio (positions in
    `factorization.valid_song_ids`); the metric is evaluation's own code.
    """
    relevance = data.valid_relevance[:, valid_rows].tocsr()
    user_factors = data.factorization.user_factors

    def score(song_vectors: np.ndarray) -> float:
        return float(ranking_metrics(user_factors, song_vectors, relevance, k=k).map)

    return score


def _scatter(n_rows: int, positions: np.ndarray, rows: np.ndarray) -> np.ndarray:
    full = np.zeros((n_rows, rows.shape[1]), np.float32)
    full[positions] = rows
    return full


def fresh_model_folder(folder: Path) -> Path:
    """Empty a model folder (manifest first, so a crash never leaves a 'finished' one)."""
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def train_linear(data: RunData, params: BaselineParams = BASELINE_DEFAULTS) -> dict[str, Any]:
    """Fit the bag-of-words baseline, predict the test songs, save `RUN/models/linear/`."""
    started = time.perf_counter()
    f = data.factorization
    train_ids, train_rows = data.cached(f.song_ids)
    valid_ids, valid_rows = data.cached(f.valid_song_ids)
    test_ids, test_rows = data.cached(f.test_song_ids)
    model, alpha_scores = fit_baseline(
        data.cache.load,
        train_ids,
        f.song_factors[train_rows],
        valid_ids,
        ranking_scorer(data, valid_rows),
        params,
        data.cache.config,
    )
    folder = fresh_model_folder(data.run_dir / MODELS_DIR / LINEAR_NAME)
    test_factors = _scatter(
        len(f.test_song_ids), test_rows, model.predict([data.cache.load(s) for s in test_ids])
    )
    np.save(folder / TEST_FACTORS_FILE, test_factors)
    return model.save(
        folder,
        parents=data.parents,
        dataset_fingerprint=data.fingerprint,
        extra_files=[TEST_FACTORS_FILE],
        extra={
            "validation": {
                "map_by_alpha": {str(alpha): value for alpha, value in alpha_scores.items()},
                "map": alpha_scores[model.alpha],
            },
            "songs_without_audio": _missing(f, data),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )


def initial_encoder(folder: Path, data: RunData) -> tuple[ContentEncoder, str]:
    """The encoder saved in `folder` to fine-tune on `data` (in training mode), and its
    manifest digest.

    Raises `TrainingError` (the caller may then train from scratch) when it cannot be
    loaded, was trained behind another front end, or predicts another number of factors.
    """
    from training.checkpoint import MANIFEST_KIND, load_encoder

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
    from pytorch_lightning.utilities import rank_zero_only

    return rank_zero_only.rank == 0


# Messages of Lightning and torch that tell a user nothing about their run: the advertising
# tip, torch's deprecation of a class Lightning still uses, and the note that an epoch has
# fewer batches than the logging interval (tiny demo worlds).
LIBRARY_CHATTER = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r".*smaller than the logging interval",
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
    """The `pl.Trainer` arguments that place a CNN fit on devices, processes and nodes.

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


def train_cnn(
    data: RunData,
    settings: CNNSettings = CNN_DEFAULTS,
    seed: int = 0,
    progress: bool = True,
    init_from: Path | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train the CNN with Lightning, predict the test songs, save `RUN/models/cnn/`.

    `init_from` (a checkpoint folder) starts from that encoder's weights and sizes instead
    of `settings.dims` and fresh ones (the content embedding's size is `settings.dims`');
    see `initial_encoder` for when it is refused. The content projection is fitted on the
    training songs once the fit is done (`training.content_space`). `verbose` lets Lightning
    print its info lines and model summary.
    Under DDP every process calls this; global rank 0 writes the folder, and every
    process returns its manifest.
    """
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException
    from pytorch_lightning.callbacks import EarlyStopping
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from training.checkpoint import save_encoder
    from training.content_space import fit_content_space
    from training.datamodule import MelDataModule
    from training.lightning_module import BestWeights, ContentModel

    started = time.perf_counter()
    f = data.factorization
    pl.seed_everything(seed, workers=True, verbose=False)
    init_digest: str | None = None
    if init_from is None:
        net = ContentEncoder(
            dataclasses.replace(settings.dims, n_factors=f.n_factors), data.cache.config
        )
    else:
        net, init_digest = initial_encoder(Path(init_from), data)
        # An encoder saved before the content embedding (or with another size) gets this
        # run's; its projection is fitted after the fit like a fresh one's.
        net = net.with_content_dims(settings.dims.content_dims).train()
    train_ids, train_rows = data.cached(f.song_ids)
    valid_ids, valid_rows = data.cached(f.valid_song_ids)
    test_ids, test_rows = data.cached(f.test_song_ids)
    window = data.cache.config.window_frames
    long_enough = np.array([data.cache.n_frames(song) >= window for song in train_ids], bool)
    train_ids = [song for song, keep in zip(train_ids, long_enough, strict=True) if keep]
    train_rows = train_rows[long_enough]
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
    )
    folder = data.run_dir / MODELS_DIR / CNN_NAME
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
        data.cache,
        train_ids,
        f.song_factors[train_rows],
        valid_ids,
        window_frames=window,
        crops_per_song=settings.crops_per_song,
        batch_size=settings.batch_size // processes,
        clip_batch_size=settings.clip_batch_size,
        num_workers=settings.num_workers,
        seed=seed,
        pair_crops=settings.contrastive_weight > 0,
        with_songs=settings.artist_head_weight > 0,
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
        test_factors = _scatter(
            len(f.test_song_ids),
            test_rows,
            predict_cached(net, data.cache, test_ids, settings.clip_batch_size),
        )
        np.save(folder / TEST_FACTORS_FILE, test_factors)
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
                "songs_without_audio": _missing(f, data),
                "seconds": round(time.perf_counter() - started, 1),
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
    from training.artist_head import NO_ARTIST

    names = _train_artists(data, train_ids)
    known = sorted({name for name in names if name is not None})
    index = {name: position for position, name in enumerate(known)}
    return np.array([NO_ARTIST if name is None else index[name] for name in names], np.int64)


def _train_artists(data: RunData, train_ids: Sequence[str]) -> list[str | None]:
    """Each training song's normalised artist from songs.csv, None where it has none."""
    from corpus.artists import UNKNOWN_ARTIST
    from training.hybrid import song_artists

    artist_of = song_artists(data.dataset_root)
    names = [artist_of.get(song, UNKNOWN_ARTIST) for song in train_ids]
    return [None if name == UNKNOWN_ARTIST else name for name in names]


def _missing(f: Factorization, data: RunData) -> dict[str, list[str]]:
    present = set(data.cache.song_ids)
    return {
        role: [song for song in ids if song not in present]
        for role, ids in (
            ("train", f.song_ids),
            ("valid", f.valid_song_ids),
            ("test", f.test_song_ids),
        )
    }


def train_run(
    run_dir: Path,
    *,
    dataset_root: Path | None = None,
    seed: int = 0,
    cnn: CNNSettings | None = CNN_DEFAULTS,
    linear: BaselineParams | None = BASELINE_DEFAULTS,
    hybrid: bool = True,
    progress: bool = True,
    init_encoder: Path | None = None,
    verbose: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train the models asked for (None skips one) on `run_dir`; return their manifests by name.

    `init_encoder` (a checkpoint folder) is where the CNN starts from (`train_cnn`'s `init_from`).
    `hybrid` also fits the artist prior and the CNN + artist fusion (`training.hybrid`;
    it needs the CNN, just trained or already in `models/cnn/`).
    Under DDP every process calls this and gets the CNN's manifest; the baseline and the
    hybrid are fitted by global rank 0 alone, after the CNN, and only there are they in
    the result.
    """
    data = load_run_data(run_dir, dataset_root)
    manifests: dict[str, dict[str, Any]] = {}
    if cnn is not None:
        # First: under DDP every process runs this function, and only once its Trainer is
        # built does a process know for sure whether it is the one that writes.
        manifests[CNN_NAME] = train_cnn(
            data, cnn, seed=seed, progress=progress, init_from=init_encoder, verbose=verbose
        )
    if hybrid and is_global_zero():
        from training.hybrid import train_artist_and_hybrid

        manifests.update(train_artist_and_hybrid(data))
    if linear is not None and is_global_zero():
        manifests[LINEAR_NAME] = train_linear(data, dataclasses.replace(linear, seed=seed))
    return manifests
