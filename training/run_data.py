"""What every content model of a run trains on: the factorization, a mel cache, validation.

`load_run_data(RUN)` reads `RUN/factorization/`, opens the mel cache that `coldstart
featurize` wrote for the dataset the factorization was made from (the cache of one front
end; `RunData.with_front_end` opens another's for an encoder behind another front end),
and builds which user listened to which validation song. `ranking_scorer` scores
validation predictions by evaluation's own mAP code. Lightning-free, so that the
encoder fit, the baseline, the hybrid and the bench scripts share it.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from artifacts.manifest import MANIFEST_NAME
from artifacts.run_layout import FACTORIZATION_DIR
from audio.cache import MelCache, default_cache_dir
from audio.config import FRONT_END, FrontEndConfig
from corpus.artists import normalise_artists
from corpus.dataset import LISTENS_FILE, SONGS_FILE, read_listens, read_songs
from factorization.matrices import play_count_matrix
from factorization.run import Factorization, dataset_root_of, load_factorization
from ranking.metrics import ranking_metrics
from training.encoders import featurize_command

# At most this many validation songs score a run's models (the encoders' every epoch, the
# classical models' ridge alphas, the artist priors and the fusion): a seeded draw, the same
# for every model of the run, so that validating costs the same at 3k songs as at 385k.
MAX_VALID_SONGS = 2048
VALID_SAMPLE_SEED = 0


class TrainingError(RuntimeError):
    """A run cannot be trained as asked (no factorization, no mel cache, wrong dataset)."""


@dataclass
class RunData:
    """What the models train on: the factorization, one front end's mel cache, validation
    relevance.

    `valid_relevance` (n_users, n_valid) float32 CSR is 1 where a user (rows follow
    `factorization.user_ids`) listened to a validation song. `max_valid_songs` bounds the
    validation songs the models are scored on (`validation_rows`).
    """

    run_dir: Path
    dataset_root: Path
    factorization: Factorization
    cache: MelCache
    valid_relevance: sp.csr_matrix
    max_valid_songs: int = MAX_VALID_SONGS

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

    def validation_rows(self, with_audio: bool = True) -> np.ndarray:
        """Positions in `factorization.valid_song_ids` of the validation songs to score on,
        ascending: those with a cached mel (all of them when not `with_audio`), at most
        `max_valid_songs` of them by a seeded draw."""
        f = self.factorization
        rows = self.cached(f.valid_song_ids)[1] if with_audio else np.arange(len(f.valid_song_ids))
        return rows[bounded_draw(rows.size, self.max_valid_songs, VALID_SAMPLE_SEED)]

    def validation(self) -> tuple[list[str], np.ndarray]:
        """The validation songs with audio the models are scored on (`validation_rows`):
        their ids and their positions in `factorization.valid_song_ids`."""
        rows = self.validation_rows()
        return [self.factorization.valid_song_ids[row] for row in rows], rows

    def with_front_end(self, config: FrontEndConfig) -> RunData:
        """The same run read through the mel cache of `config` (itself when it is this one's);
        `TrainingError` saying what to run when that cache is missing."""
        if config == self.cache.config:
            return self
        return dataclasses.replace(self, cache=open_cache(self.dataset_root, config))

    def songs_without_audio(self) -> dict[str, list[str]]:
        """Per role (train, valid, test), the songs without a cached mel (a model's manifest
        lists them: they are left out of training and predicted as zeros)."""
        present = set(self.cache.song_ids)
        f = self.factorization
        return {
            role: [song for song in ids if song not in present]
            for role, ids in (
                ("train", f.song_ids),
                ("valid", f.valid_song_ids),
                ("test", f.test_song_ids),
            )
        }


def bounded_draw(size: int, bound: int, seed: int) -> np.ndarray:
    """Positions (ascending) of at most `bound` of `size` items: all of them when they fit,
    else a draw without replacement seeded by `seed` (the same for the same arguments)."""
    if size <= bound:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, bound, replace=False))


def open_cache(dataset_root: Path, config: FrontEndConfig) -> MelCache:
    """The dataset's finished mel cache for the front end `config`; `TrainingError` saying
    which command makes it when there is none."""
    cache_dir = default_cache_dir(dataset_root, config)
    try:
        cache = MelCache.open(cache_dir)
    except (FileNotFoundError, OSError, ValueError) as error:
        raise TrainingError(
            f"no usable mel cache at {cache_dir} ({error}):"
            f" run {featurize_command(dataset_root, config)} first"
        ) from error
    config.require_same(cache.config, what=f"mel cache {cache_dir}")
    return cache


def load_run_data(
    run_dir: Path, dataset_root: Path | None = None, config: FrontEndConfig = FRONT_END
) -> RunData:
    """Load the factorization, open the dataset's mel cache of the front end `config`,
    build the validation relevance."""
    run_dir = Path(run_dir)
    if not (run_dir / FACTORIZATION_DIR / MANIFEST_NAME).is_file():
        raise TrainingError(
            f"{run_dir}: no finished factorization (run `coldstart factorize` first)"
        )
    factorization = load_factorization(run_dir)
    root = dataset_root_of(factorization, dataset_root)
    cache = open_cache(root, config)
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


def song_artists(dataset_root: Path) -> dict[str, str]:
    """Song id -> normalised artist, from the dataset's songs.csv."""
    songs = read_songs(Path(dataset_root) / SONGS_FILE)
    return dict(zip(songs["song_id"], normalise_artists(songs["artist"]), strict=True))


def scatter_rows(n_rows: int, positions: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(n_rows, rows.shape[1]) float32, zero but at `positions`, which take `rows`: the
    predictions of the songs with audio among all (a song without is the zero vector)."""
    full = np.zeros((n_rows, rows.shape[1]), np.float32)
    full[positions] = rows
    return full


def fresh_model_folder(folder: Path) -> Path:
    """Empty a model folder (manifest first, so a crash never leaves a 'finished' one)."""
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
