"""The training step of a run: fit the content models on `RUN/factorization/`, write `RUN/models/`.

Every model learns to predict a song's WMF factors from its audio and ends by predicting
the test songs into `RUN/models/<name>/test_song_factors.npy`, rows following
`factorization/test_song_ids.json`, for `coldstart evaluate`:

- `cnn`: the run's served content encoder, whatever its architecture
  (`training.encoder_fit`; what publish, the gate and the hybrid read);
- further encoders, each in `models/<its architecture>/`, scored beside it by the report;
- `artist` and `hybrid`: the artist prior and its fusion with the CNN (`training.hybrid`);
- `linear`: the paper's MFCC bag-of-words baseline (`training.baseline`);
- `kmeans`: multiscale spherical k-means features (`training.kmeans`), the stronger
  classical baseline; both end in the same ridge head (`training.ridge`).

Each reads the mel cache of its own front end (`training.run_data`): an encoder its
architecture's (or, fine-tuned, its checkpoint's), the classical models the project's
log-mel front end. A test song without a cached mel (its audio was rejected by featurize) is
predicted as the zero vector, i.e. ranked as having no content evidence; validation leaves
such songs out, training too. Each model's manifest lists them.

Under DDP (see `training.encoder_fit.CNNSettings`) every process runs the encoders' fits;
global rank 0 alone writes their folders and fits the other models.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from artifacts.manifest import ArtifactError
from artifacts.run_layout import (
    CNN_NAME,
    KMEANS_NAME,
    LINEAR_NAME,
    MODEL_NAMES,
    MODELS_DIR,
    TEST_FACTORS_FILE,
)
from audio.config import FrontEndConfig, FrontEndMismatchError
from training.baseline import BASELINE_FRONT_END, BaselineParams, fit_baseline
from training.checkpoint import read_encoder_config
from training.encoder_fit import CNN_DEFAULTS, CNNSettings, is_global_zero, train_encoder
from training.encoders import default_front_end
from training.hybrid import train_artist_and_hybrid
from training.kmeans import KMEANS_FRONT_END, KMeansParams, fit_kmeans
from training.ridge import LazyMels
from training.run_data import (
    RunData,
    TrainingError,
    bounded_draw,
    fresh_model_folder,
    load_run_data,
    ranking_scorer,
    scatter_rows,
)

BASELINE_DEFAULTS = BaselineParams()
KMEANS_DEFAULTS = KMeansParams()
# At most this many training songs fit a classical model, a seeded draw: its features are
# computed whole clip by whole clip for every song it fits on, so on a catalogue's songs the
# fit outlasts the night (28k 30-s clips: `linear` 6 minutes, `kmeans` over 8 at load 5).
CLASSICAL_MAX_TRAIN_SONGS = 4096


class ClassicalFit(Protocol):
    """`fit_baseline` and `fit_kmeans`: features by hand, a head chosen on validation."""

    def __call__(
        self,
        load_mel: Callable[[str], np.ndarray],
        train_song_ids: Sequence[str],
        train_factors: np.ndarray,
        valid_song_ids: Sequence[str],
        score: Callable[[np.ndarray], float],
        params: Any,
        config: FrontEndConfig,
    ) -> tuple[Any, dict[str, float]]: ...


def train_classical(
    data: RunData,
    name: str,
    fit: ClassicalFit,
    params: Any,
    max_train_songs: int = CLASSICAL_MAX_TRAIN_SONGS,
) -> dict[str, Any]:
    """Fit a classical model (`linear` or `kmeans`) on `data`'s log-mels, predict the test
    songs, save `RUN/models/<name>/`; return its manifest.

    It fits on at most `max_train_songs` of the training songs with audio (drawn with
    `params.seed`; its manifest says how many) and is scored on `data.validation()`.
    """
    started = time.perf_counter()
    f = data.factorization
    train_ids, train_rows = data.cached(f.song_ids)
    draw = bounded_draw(len(train_ids), max_train_songs, params.seed)
    train_ids, train_rows = [train_ids[i] for i in draw], train_rows[draw]
    valid_ids, valid_rows = data.validation()
    test_ids, test_rows = data.cached(f.test_song_ids)
    model, head_scores = fit(
        data.cache.load,
        train_ids,
        f.song_factors[train_rows],
        valid_ids,
        ranking_scorer(data, valid_rows),
        params,
        data.cache.config,
    )
    folder = fresh_model_folder(data.run_dir / MODELS_DIR / name)
    test_factors = scatter_rows(
        len(f.test_song_ids), test_rows, model.predict(LazyMels(data.cache.load, test_ids))
    )
    np.save(folder / TEST_FACTORS_FILE, test_factors)
    manifest: dict[str, Any] = model.save(
        folder,
        parents=data.parents,
        dataset_fingerprint=data.fingerprint,
        extra_files=[TEST_FACTORS_FILE],
        extra={
            "validation": {
                "map_by_head": head_scores,
                "map": head_scores[model.head.label],
            },
            "songs_without_audio": data.songs_without_audio(),
            "train_songs": len(train_ids),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    return manifest


def further_encoder_folders(cnn: CNNSettings | None, others: Sequence[CNNSettings]) -> list[str]:
    """The `models/` folder of each of `others` (its architecture's name); `ValueError` when
    one repeats the served encoder's or another's architecture, or takes a role's name."""
    names = [settings.encoder for settings in others]
    taken = [cnn.encoder] if cnn is not None else []
    for name in names:
        if name in taken:
            raise ValueError(f"encoder {name!r} is asked for twice: each trains once per run")
        if name in MODEL_NAMES:
            raise ValueError(f"encoder {name!r} would take the folder of models/{name}/")
        taken.append(name)
    return names


def _front_end_read(
    run_dir: Path,
    cnn: CNNSettings | None,
    others: Sequence[CNNSettings],
    hybrid: bool,
    init_encoder: Path | None,
) -> FrontEndConfig:
    """The front end of the mel cache the run is first read through: the served encoder's
    (its checkpoint's when it is fine-tuned, else its architecture's); without one to
    train, that of the finished `models/cnn/` the hybrid reads, else the first further
    encoder's, else the baseline's. (Each model then reads its own: `RunData.with_front_end`.)"""
    try:
        if cnn is not None and init_encoder is not None:
            return read_encoder_config(init_encoder).front_end
    except (ArtifactError, FrontEndMismatchError) as error:
        raise TrainingError(f"cannot fine-tune from {init_encoder}: {error}") from error
    if cnn is not None:
        return default_front_end(cnn.encoder)
    if hybrid:
        return read_encoder_config(run_dir / MODELS_DIR / CNN_NAME).front_end
    if others:
        return default_front_end(others[0].encoder)
    return BASELINE_FRONT_END


def train_run(
    run_dir: Path,
    *,
    dataset_root: Path | None = None,
    seed: int = 0,
    cnn: CNNSettings | None = CNN_DEFAULTS,
    others: Sequence[CNNSettings] = (),
    linear: BaselineParams | None = BASELINE_DEFAULTS,
    kmeans: KMeansParams | None = KMEANS_DEFAULTS,
    hybrid: bool = True,
    progress: bool = True,
    init_encoder: Path | None = None,
    verbose: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train the models asked for (None skips one) on `run_dir`; return their manifests by name.

    `cnn` is the served encoder (`models/cnn/`); `init_encoder` (a checkpoint folder of
    the same architecture) is where it starts from, behind that checkpoint's front end.
    `others` are further encoders, each trained from scratch into `models/<architecture>/`
    and returned under that name; `linear` and `kmeans` are the classical models' settings.
    `hybrid` also fits the artist prior and the CNN + artist
    fusion (`training.hybrid`; it needs the CNN, just trained or already in `models/cnn/`).
    Under DDP every process calls this and gets the encoders' manifests; the classical
    models and the hybrid are fitted by global rank 0 alone, after the encoders, and only there are
    they in the result. Raises `TrainingError` when a model's mel cache is missing (saying
    which command makes it) and `ValueError` for encoders asked for twice.
    """
    folders = further_encoder_folders(cnn, others)
    data = load_run_data(
        run_dir, dataset_root, _front_end_read(Path(run_dir), cnn, others, hybrid, init_encoder)
    )
    manifests: dict[str, dict[str, Any]] = {}
    if cnn is not None:
        # First: under DDP every process runs this function, and only once its Trainer is
        # built does a process know for sure whether it is the one that writes.
        manifests[CNN_NAME] = train_encoder(
            data, cnn, seed=seed, progress=progress, init_from=init_encoder, verbose=verbose
        )
    for settings, folder in zip(others, folders, strict=True):
        own = data.with_front_end(default_front_end(settings.encoder))
        manifests[folder] = train_encoder(
            own, settings, seed=seed, progress=progress, folder_name=folder, verbose=verbose
        )
    if hybrid and is_global_zero():
        manifests.update(train_artist_and_hybrid(data))
    if linear is not None and is_global_zero():
        baseline_data = data.with_front_end(BASELINE_FRONT_END)
        manifests[LINEAR_NAME] = train_classical(
            baseline_data, LINEAR_NAME, fit_baseline, dataclasses.replace(linear, seed=seed)
        )
    if kmeans is not None and is_global_zero():
        kmeans_data = data.with_front_end(KMEANS_FRONT_END)
        manifests[KMEANS_NAME] = train_classical(
            kmeans_data, KMEANS_NAME, fit_kmeans, dataclasses.replace(kmeans, seed=seed)
        )
    return manifests
