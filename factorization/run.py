"""The factorization step of a run: split the songs, fit WMF on the training songs, fold in
the held-out ones, and write `RUN/split/` and `RUN/factorization/` (docs/ARCHITECTURE.md).

Users are the ones with at least one listen of a training song: a user who only listened to
held-out songs gives WMF nothing to fit (implicit would return a zero vector), so such users
are left out of `user_ids.json`; evaluation scores only the users present. Their listens
are left out of the fold-in too (there is no user vector to fold against), so a held-out
song whose every listener was left out folds in to a zero vector; the manifest counts them.

`test_song_factors.npy` is the upper bound: what WMF says about a test song once its
listens are seen, the reference the content models' predicted factors are compared with.

With a `WarmStart` (the nightly run passes the served version's factors) the final fit
starts from the earlier factors, so the space stays where it was; the manifest records
how many users and songs were known and how far their vectors moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from artifacts.files import write_json_atomic
from artifacts.manifest import MANIFEST_NAME, ArtifactError, read_manifest, write_manifest
from artifacts.run_layout import FACTORIZATION_DIR
from corpus.dataset import LISTENS_FILE, Dataset, dataset_fingerprint, load_dataset
from corpus.split import SongSplit, cold_split, split_from_file, write_split
from factorization.matrices import confidence_matrix, listening_users
from factorization.regularization import (
    REGULARIZATION_GRID,
    RegularizationSearch,
    choose_regularization,
)
from factorization.spark_als import SparkALSEngine
from factorization.warm_start import WarmStart, factor_drift, initial_factors
from factorization.wmf import ImplicitALSEngine, WMFParams

FACTORIZATION_KIND = "factorization"
SEARCH_ITERATIONS = 5
ROLES = ("", "valid_", "test_")  # file prefixes: training songs, validation, test
ENGINES = ("implicit", "spark")


@dataclass(frozen=True)
class Factorization:
    """A loaded `RUN/factorization/`: factors with the ids their rows follow.

    `user_factors (n_users, F)`, `song_factors (n_train_songs, F)`,
    `valid_song_factors (n_valid_songs, F)`, `test_song_factors (n_test_songs, F)`: float32.
    """

    user_ids: list[str]
    user_factors: np.ndarray
    song_ids: list[str]
    song_factors: np.ndarray
    valid_song_ids: list[str]
    valid_song_factors: np.ndarray
    test_song_ids: list[str]
    test_song_factors: np.ndarray
    manifest: dict[str, Any]

    @property
    def digest(self) -> str:
        """What a child artifact names as its `factorization` parent."""
        return str(self.manifest["digest"])

    @property
    def n_factors(self) -> int:
        return int(self.user_factors.shape[1])


def _files(prefix: str, subject: str) -> tuple[str, str]:
    return f"{prefix}{subject}_factors.npy", f"{prefix}{subject}_ids.json"


def load_factorization(run_dir: Path) -> Factorization:
    """Load `run_dir/factorization/`, refusing it if unfinished, edited, or inconsistent."""
    folder = Path(run_dir) / FACTORIZATION_DIR
    manifest = read_manifest(folder, kind=FACTORIZATION_KIND)
    loaded: dict[str, Any] = {}
    for prefix, subject in [("", "user"), *((prefix, "song") for prefix in ROLES)]:
        factors_file, ids_file = _files(prefix, subject)
        factors = np.load(folder / factors_file, allow_pickle=False)
        ids = json.loads((folder / ids_file).read_text())
        if factors.dtype != np.float32 or factors.ndim != 2 or factors.shape[0] != len(ids):
            raise ArtifactError(
                f"{folder}: {factors_file} is {factors.dtype} {factors.shape},"
                f" expected float32 with one row per id in {ids_file} ({len(ids)})"
            )
        loaded[f"{prefix}{subject}_factors"] = factors
        loaded[f"{prefix}{subject}_ids"] = ids
    widths = {factors.shape[1] for name, factors in loaded.items() if name.endswith("_factors")}
    if len(widths) != 1:
        raise ArtifactError(f"{folder}: factor files disagree on the number of factors {widths}")
    return Factorization(manifest=manifest, **loaded)


def dataset_root_of(factorization: Factorization, given: Path | None = None) -> Path:
    """The dataset folder `factorization` was fitted on: `given`, else the one its manifest
    records; either way it must have the recorded fingerprint, so that models are trained,
    evaluated and published on the very listens and audio the factors came from.
    """
    recorded = factorization.manifest.get("dataset_root")
    if given is None and not recorded:
        raise ArtifactError(
            "the factorization manifest does not record its dataset folder: pass --dataset DIR"
        )
    root = Path(given if given is not None else recorded)
    if not (root / LISTENS_FILE).is_file():
        raise ArtifactError(f"{root}: not a dataset folder (no {LISTENS_FILE})")
    expected = factorization.manifest.get("dataset_fingerprint")
    if expected and dataset_fingerprint(root) != expected:
        raise ArtifactError(
            f"{root}: dataset fingerprint differs from the factorization's {expected[:12]}:"
            " not the dataset this run was factorized from"
        )
    return root


def _progress(enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def _write_factors(
    folder: Path, prefix: str, subject: str, factors: np.ndarray, ids: list[str]
) -> list[str]:
    factors_file, ids_file = _files(prefix, subject)
    np.save(folder / factors_file, np.ascontiguousarray(factors, dtype=np.float32))
    write_json_atomic(folder / ids_file, ids)
    return [factors_file, ids_file]


def factorize_run(
    dataset_root: Path,
    run_dir: Path,
    params: WMFParams | None = None,
    test_songs_file: Path | None = None,
    seed: int = 0,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    cold_artist_fraction: float = 0.1,
    num_threads: int = 0,
    progress: bool = True,
    warm_start: WarmStart | None = None,
    engine: str = "implicit",
    spark_master: str | None = None,
    regularization_reused_from: str | None = None,
) -> dict[str, Any]:
    """Split, factorize and fold in; write `run_dir/split/` and `run_dir/factorization/`.

    `seed` draws the split (`params.seed` seeds WMF and the regularization search):
    `test_fraction` cold tracks and the songs of `cold_artist_fraction` of the artists
    (`corpus.split.cold_split`); `test_songs_file` (one id per line) replaces the drawn
    test songs. `num_threads` is
    implicit's (0: every core); the factors do not depend on it. `warm_start` starts the
    final fit from earlier factors (the search still starts from random ones); its factor
    count must be `params.factors` (ValueError otherwise). `engine` is `"implicit"` (this
    machine) or `"spark"` (`factorization.spark_als`, on the cluster at `spark_master`,
    default `cluster.spark`'s; no warm start there: ValueError); the files are the same,
    the manifest's `parameters.engine` says which. `regularization_reused_from` names the
    version whose chosen lambda `params.regularization` is (the nightly run's reuse); the
    manifest's `parameters.regularization_from` says "searched", "given" or "reused from
    version X". Returns the factorization manifest, whose `digest` children name as parent.
    """
    params = params or WMFParams()
    if regularization_reused_from is not None and params.regularization == "auto":
        raise ValueError("a reused regularization is a number, not 'auto'")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "spark" and warm_start is not None:
        raise ValueError(
            "the spark engine cannot warm start (Spark's ALS takes no initial factors):"
            " use the implicit engine, or start cold"
        )
    if warm_start is not None and warm_start.n_factors != params.factors:
        raise ValueError(
            f"warm start {warm_start.label!r} has {warm_start.n_factors} factors,"
            f" this fit asks for {params.factors}: start cold or keep the factor count"
        )
    dataset_root, run_dir = Path(dataset_root), Path(run_dir)
    with _progress(progress) as bar:
        step = bar.add_task("load dataset", total=1)
        dataset = load_dataset(dataset_root)
        fingerprint = dataset_fingerprint(dataset_root)
        bar.update(step, completed=1)

        step = bar.add_task("split songs", total=1)
        split = _split(
            dataset,
            test_songs_file,
            seed,
            test_fraction,
            valid_fraction,
            cold_artist_fraction,
        )
        split_manifest = write_split(
            split,
            run_dir,
            parameters={
                "test_fraction": None if test_songs_file else test_fraction,
                "cold_artist_fraction": None if test_songs_file else cold_artist_fraction,
                "valid_fraction": valid_fraction,
                "test_songs_file": str(test_songs_file) if test_songs_file else None,
            },
            dataset_fingerprint=fingerprint,
        )
        bar.update(step, completed=1)

        step = bar.add_task("confidence matrices", total=1)
        user_ids = listening_users(dataset.listens, split.train)
        train = confidence_matrix(
            dataset.listens, user_ids, split.train, alpha=params.alpha, eps=params.eps
        )
        held_out = {
            "valid_": _song_user_confidence(dataset.listens, user_ids, split.valid, params),
            "test_": _song_user_confidence(dataset.listens, user_ids, split.test, params),
        }
        bar.update(step, completed=1)

        def make_engine(
            regularization: float, iterations: int
        ) -> ImplicitALSEngine | SparkALSEngine:
            if engine == "spark":
                return SparkALSEngine(
                    params.factors, regularization, iterations, params.seed, spark_master
                )
            return ImplicitALSEngine(
                params.factors, regularization, iterations, params.seed, num_threads
            )

        search = None
        if params.regularization == "auto":
            step = bar.add_task("choose regularization", total=len(REGULARIZATION_GRID))
            search = choose_regularization(
                train,
                make_engine,
                iterations=min(SEARCH_ITERATIONS, params.iterations),
                seed=params.seed,
                on_value=lambda _value, _score, task=step: bar.advance(task),
            )
            regularization = search.chosen
        else:
            regularization = float(params.regularization)

        wmf = make_engine(regularization, params.iterations)
        initial, warm_counts = None, None
        if warm_start is not None:
            user_init, song_init, warm_counts = initial_factors(
                warm_start, user_ids, split.train, params.seed
            )
            initial = (user_init, song_init)
        step = bar.add_task(f"fit WMF (lambda {regularization:g})", total=params.iterations)
        user_factors, song_factors = wmf.fit(
            train,
            on_iteration=lambda done, _total, task=step: bar.update(task, completed=done),
            initial=initial,
        )

        step = bar.add_task("fold in held-out songs", total=2)
        folded = {}
        for prefix, matrix in held_out.items():
            folded[prefix] = wmf.fold_in_songs(user_factors, matrix)
            bar.advance(step)

        step = bar.add_task("write factors", total=1)
        folder = run_dir / FACTORIZATION_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        files = _write_factors(folder, "", "user", user_factors, user_ids)
        files += _write_factors(folder, "", "song", song_factors, split.train)
        files += _write_factors(folder, "valid_", "song", folded["valid_"], split.valid)
        files += _write_factors(folder, "test_", "song", folded["test_"], split.test)
        manifest = write_manifest(
            folder,
            kind=FACTORIZATION_KIND,
            files=files,
            parameters={
                **params.to_json(),
                "regularization": regularization,
                "regularization_requested": params.regularization,
                "regularization_from": _regularization_from(search, regularization_reused_from),
                "engine": wmf.name,
                "implicit_version": _implicit_version() if engine == "implicit" else None,
                **_spark_parameters(wmf),
                "warm_start": warm_start.label if warm_start else None,
            },
            parents={"split": split_manifest["digest"]},
            dataset_fingerprint=fingerprint,
            extra={
                # Where the listens and audio live, so that train and evaluate need no --dataset;
                # the fingerprint above guards against a folder that changed since.
                "dataset_root": str(dataset_root.resolve()),
                "regularization_search": search.to_json() if search else None,
                "warm_start": _warm_start_report(
                    warm_start, warm_counts, user_ids, user_factors, split, song_factors, folded
                ),
                "counts": {
                    "users": len(user_ids),
                    "users_left_out": dataset.n_users - len(user_ids),
                    "train_songs": len(split.train),
                    "valid_songs": len(split.valid),
                    "test_songs": len(split.test),
                    **{f"test_{kind}_songs": n for kind, n in split.kind_counts().items()},
                    "train_listens": int(train.nnz),
                    "valid_listens": int(held_out["valid_"].nnz),
                    "test_listens": int(held_out["test_"].nnz),
                    "valid_songs_without_listeners": _empty_rows(held_out["valid_"]),
                    "test_songs_without_listeners": _empty_rows(held_out["test_"]),
                },
            },
        )
        bar.update(step, completed=1)
    return manifest


def _regularization_from(search: RegularizationSearch | None, reused_from: str | None) -> str:
    """Where a fit's lambda came from, in words (the run summary shows it)."""
    if search is not None:
        return "searched"
    return f"reused from version {reused_from}" if reused_from else "given"


def _warm_start_report(
    warm_start: WarmStart | None,
    counts: dict[str, int] | None,
    user_ids: list[str],
    user_factors: np.ndarray,
    split: SongSplit,
    song_factors: np.ndarray,
    folded: dict[str, np.ndarray],
) -> dict[str, Any] | None:
    """Where the fit started and how far every song (fitted or folded in) and user moved."""
    if warm_start is None or counts is None:
        return None
    new_song_ids = [*split.train, *split.valid, *split.test]
    new_song_factors = np.concatenate([song_factors, folded["valid_"], folded["test_"]])
    return {
        "from": warm_start.label,
        **counts,
        "drift": {
            "songs": factor_drift(
                warm_start.song_ids, warm_start.song_factors, new_song_ids, new_song_factors
            ),
            "users": factor_drift(
                warm_start.user_ids, warm_start.user_factors, user_ids, user_factors
            ),
        },
    }


def _split(
    dataset: Dataset,
    test_songs_file: Path | None,
    seed: int,
    test_fraction: float,
    valid_fraction: float,
    cold_artist_fraction: float,
) -> SongSplit:
    """The run's split. When only some songs have audio, only they are held out (the CNN
    is validated and scored on them); the others all train WMF."""
    listens, song_ids = dataset.listens, dataset.song_ids
    has_audio = pd.Index(song_ids).isin(list(dataset.audio_paths))
    holdable = pd.Index(song_ids)[has_audio] if 0 < has_audio.sum() < len(song_ids) else None
    artists = dataset.songs["artist"].tolist()
    if test_songs_file is not None:
        return split_from_file(
            test_songs_file,
            listens,
            song_ids,
            valid_fraction,
            seed,
            holdable=holdable,
            artists=artists,
        )
    return cold_split(
        listens,
        song_ids,
        test_fraction,
        valid_fraction,
        seed,
        holdable=holdable,
        artists=artists,
        cold_artist_fraction=cold_artist_fraction,
    )


def _song_user_confidence(
    listens: pd.DataFrame, user_ids: list[str], song_ids: list[str], params: WMFParams
) -> sp.csr_matrix:
    """`(len(song_ids), len(user_ids))` confidences, as fold-in reads them."""
    matrix = confidence_matrix(listens, user_ids, song_ids, alpha=params.alpha, eps=params.eps)
    return matrix.T.tocsr()


def _empty_rows(matrix: sp.csr_matrix) -> int:
    return int(np.count_nonzero(np.diff(matrix.indptr) == 0))


def _spark_parameters(wmf: ImplicitALSEngine | SparkALSEngine) -> dict[str, Any]:
    """What a Spark fit adds to the manifest's parameters: the `regParam` our λ became
    (`factorization.spark_als`), the master and pyspark's version; nothing for implicit."""
    if not isinstance(wmf, SparkALSEngine):
        return {}
    from importlib.metadata import version

    return {
        "spark": {
            "reg_param": wmf.reg_param,
            "master": wmf.fitted_on,
            "pyspark_version": version("pyspark"),
        }
    }


def _implicit_version() -> str:
    from importlib.metadata import version

    return version("implicit")
