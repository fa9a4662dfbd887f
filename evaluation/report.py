"""The model table of a run: every model's test-song vectors scored against the WMF users.

`evaluate_run(RUN)` reads `RUN/factorization/` (user factors, test song ids, and the folded-in
test song factors, the upper bound), builds from the dataset which user listened to which
test song, and scores with `ranking.metrics.ranking_metrics` over the users with a test
listen, at most `max_users` of them (one seeded draw, `evaluation.users`):

- `random`: seeded Gaussian song vectors, the floor, beside its analytic expectation;
- `upper_bound`: the folded-in WMF factors, what a perfect content model could reach;
- every finished content model `RUN/models/<name>/test_song_factors.npy` (`linear`, `cnn`,
  the served encoder, further encoders named by their architecture, and the `artist` prior
  and the `hybrid` of CNN and artist, `training.hybrid`). An encoder's row records its
  architecture (`models.<name>.architecture`; report.md labels `cnn (dieleman)`).

When the split records each test song's kind (`corpus.split`: `cold_track`, a new song by
an artist with training songs; `cold_artist`, one by an artist without), the table is
also made per kind: users rank only that kind's songs, with that kind's random
expectation and upper bound, and `hybrid_effect` says what the hybrid gains over the CNN
on each (on cold artists it is the CNN, so it should cost exactly nothing).

It writes, in `RUN/` (docs/ARCHITECTURE.md): `report.json` (the numbers), `predictions.npz`
(everything needed to recompute them without the dataset: evaluated users' ids and factors,
their test listens as CSR arrays, and each model's test song vectors), `report.md` with
`plots/metrics.png` and `plots/song_map.png`, and last the report's `manifest.json`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from artifacts.files import write_atomic, write_json_atomic
from artifacts.manifest import MANIFEST_NAME, ArtifactError, read_manifest, write_manifest
from artifacts.run_layout import (
    CNN_NAME,
    HYBRID_NAME,
    MODELS_DIR,
    PLOTS_DIR,
    REPORT_FILE,
    SPLIT_DIR,
    TEST_FACTORS_FILE,
)
from corpus.dataset import load_dataset
from corpus.split import KINDS, load_split
from evaluation.users import MAX_EVALUATED_USERS, users_to_evaluate
from factorization.matrices import play_count_matrix
from factorization.run import Factorization, dataset_root_of, load_factorization
from ranking.metrics import (
    CUTOFFS,
    DEFAULT_K,
    EXPECTED_RANDOM_AUC,
    TOP_K_METRICS,
    RankingMetrics,
    expected_random_map,
    expected_random_top_k,
    ranking_metrics,
)
from training.checkpoint import CONFIG_FILE as ENCODER_CONFIG_FILE
from training.checkpoint import read_encoder_config

REPORT_KIND = "report"
PREDICTIONS_FILE = "predictions.npz"
MARKDOWN_FILE = "report.md"
METRICS_PLOT = f"{PLOTS_DIR}/metrics.png"
SONG_MAP_PLOT = f"{PLOTS_DIR}/song_map.png"
TRUTH_FILE = "truth.json"
RANDOM = "random"
UPPER_BOUND = "upper_bound"
PREDICTION_KEYS = (
    "user_ids",
    "user_factors",
    "test_song_ids",
    "relevance_indptr",
    "relevance_indices",
)
SONG_MAP_MAX_SONGS = 3000
SONG_MAP_MAX_LABELS = 10


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def _content_models(
    run_dir: Path, factorization: Factorization
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str], dict[str, str]]:
    """Test song vectors of every finished model under `RUN/models/`.

    Returns `(vectors by name, manifest digest by name, skipped: reason by name,
    architecture by name of the models that are encoders)`. A folder without a manifest is
    unfinished and skipped; a finished one that was trained on another factorization, or
    whose vectors do not follow the test songs, is an error.
    """
    vectors: dict[str, np.ndarray] = {}
    digests: dict[str, str] = {}
    skipped: dict[str, str] = {}
    architectures: dict[str, str] = {}
    models_dir = Path(run_dir) / MODELS_DIR
    folders = sorted(p for p in models_dir.iterdir() if p.is_dir()) if models_dir.is_dir() else []
    expected_shape = factorization.test_song_factors.shape
    for folder in folders:
        name = folder.name
        if not (folder / MANIFEST_NAME).is_file():
            skipped[name] = "no manifest.json (unfinished)"
            continue
        manifest = read_manifest(folder)
        if TEST_FACTORS_FILE not in manifest.get("files", {}):
            skipped[name] = f"its manifest lists no {TEST_FACTORS_FILE}"
            continue
        if name in (RANDOM, UPPER_BOUND, *PREDICTION_KEYS):
            raise ArtifactError(f"{folder}: {name!r} is a reserved name, not a model's")
        parent = manifest.get("parents", {}).get("factorization")
        if parent != factorization.digest:
            raise ArtifactError(
                f"{folder}: trained on factorization {str(parent)[:12]}, but the run's is"
                f" {factorization.digest[:12]}: retrain it or remove the folder"
            )
        factors = np.load(folder / TEST_FACTORS_FILE, allow_pickle=False)
        if factors.dtype != np.float32 or factors.shape != expected_shape:
            raise ArtifactError(
                f"{folder}: {TEST_FACTORS_FILE} is {factors.dtype} {factors.shape}, expected"
                f" float32 {expected_shape} (rows following factorization/test_song_ids.json)"
            )
        if not np.isfinite(factors).all():
            raise ArtifactError(f"{folder}: {TEST_FACTORS_FILE} holds NaN or infinite values")
        vectors[name] = factors
        digests[name] = str(manifest["digest"])
        if ENCODER_CONFIG_FILE in manifest["files"]:
            architectures[name] = read_encoder_config(folder).architecture
    return vectors, digests, skipped, architectures


def _gap_closed(value: float, floor: float, ceiling: float) -> float | None:
    """Fraction of the floor -> ceiling distance that `value` covers (None when no gap)."""
    return (value - floor) / (ceiling - floor) if ceiling != floor else None


def _score_table(
    user_factors: np.ndarray,
    relevance: sp.csr_array,
    vectors: dict[str, np.ndarray],
    k: int,
    bar: Progress,
    what: str = "",
) -> dict[str, Any]:
    """Every model's mAP@k, AUC and top-k metrics (recall, precision, NDCG at `CUTOFFS`)
    over the users with a relevant song in `relevance` `(n_users, n_songs)`,
    `vectors[name]` `(n_songs, F)`; with the random expectation and each model's share of
    the gap from it to the upper bound (mAP and AUC)."""
    evaluated = np.flatnonzero(np.diff(relevance.indptr) > 0)
    relevance = sp.csr_array(relevance[evaluated])
    users = user_factors[evaluated]
    scored: dict[str, RankingMetrics] = {}
    for name, song_vectors in vectors.items():
        step = bar.add_task(f"score {name}{what}", total=evaluated.size)
        scored[name] = ranking_metrics(
            users,
            song_vectors,
            relevance,
            k=k,
            on_chunk=lambda done, _total, step=step: bar.update(step, completed=done),
        )
    n_relevant = np.diff(relevance.indptr)
    expected = {
        "map": expected_random_map(n_relevant, relevance.shape[1], k),
        "auc": EXPECTED_RANDOM_AUC,
        **expected_random_top_k(n_relevant, relevance.shape[1], CUTOFFS),
    }
    ceiling = scored[UPPER_BOUND]
    return {
        "n_users": int(evaluated.size),
        "n_test_songs": int(relevance.shape[1]),
        "models": {name: {"map": m.map, "auc": m.auc, **m.top_k()} for name, m in scored.items()},
        "expected_random": expected,
        "gap_closed": {
            name: {
                "map": _gap_closed(m.map, expected["map"], ceiling.map),
                "auc": _gap_closed(m.auc, expected["auc"], ceiling.auc),
            }
            for name, m in scored.items()
        },
    }


def _test_kinds(run_dir: Path, test_song_ids: list[str]) -> np.ndarray | None:
    """Each test song's kind (`corpus.split.KINDS`), following `test_song_ids`; None when
    the run has no split that records them."""
    if not (Path(run_dir) / SPLIT_DIR / MANIFEST_NAME).is_file():
        return None
    split = load_split(run_dir)
    if split.test_kinds is None:
        return None
    kind_of = dict(zip(split.test, split.test_kinds, strict=True))
    if set(kind_of) != set(test_song_ids):
        raise ArtifactError(f"{run_dir}: the split's test songs differ from the factorization's")
    return np.array([kind_of[song_id] for song_id in test_song_ids])


def _by_kind(
    user_factors: np.ndarray,
    relevance: sp.csr_array,
    vectors: dict[str, np.ndarray],
    kinds: np.ndarray | None,
    k: int,
    bar: Progress,
) -> dict[str, Any]:
    """`_score_table` per kind of test song that has songs and listeners."""
    tables: dict[str, Any] = {}
    for kind in KINDS if kinds is not None else ():
        columns = np.flatnonzero(kinds == kind)
        sub = sp.csr_array(relevance[:, columns])
        if columns.size < 2 or sub.nnz == 0:
            continue
        picked = {name: song_vectors[columns] for name, song_vectors in vectors.items()}
        tables[kind] = _score_table(user_factors, sub, picked, k, bar, f" ({kind})")
    return tables


def _hybrid_effect(tables: dict[str, Any]) -> dict[str, dict[str, float]]:
    """hybrid minus cnn, mAP and AUC, in each table that has both."""
    return {
        kind: {
            metric: table["models"][HYBRID_NAME][metric] - table["models"][CNN_NAME][metric]
            for metric in ("map", "auc")
        }
        for kind, table in tables.items()
        if {HYBRID_NAME, CNN_NAME} <= table["models"].keys()
    }


def _write_predictions(
    path: Path,
    user_ids: list[str],
    user_factors: np.ndarray,
    relevance: sp.csr_array,
    test_song_ids: list[str],
    vectors: dict[str, np.ndarray],
) -> None:
    arrays = {
        "user_ids": np.array(user_ids, dtype=str),
        "user_factors": user_factors,
        "test_song_ids": np.array(test_song_ids, dtype=str),
        "relevance_indptr": relevance.indptr.astype(np.int64),
        "relevance_indices": relevance.indices.astype(np.int32),
        **vectors,
    }

    def write(handle: IO[bytes]) -> None:
        # np.savez's layout, but refusing object arrays and free of its keyword names.
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, array in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)

    write_atomic(path, write)


def load_predictions(run_dir: Path) -> dict[str, Any]:
    """Read `RUN/predictions.npz` back: ids as lists, the relevance as CSR, model vectors.

    Returns `{"user_ids", "user_factors", "test_song_ids", "relevance", "models": {name:
    (n_test_songs, F) float32}}`, enough to recompute every number of `report.json`.
    """
    with np.load(Path(run_dir) / PREDICTIONS_FILE, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    user_ids = arrays.pop("user_ids").tolist()
    test_song_ids = arrays.pop("test_song_ids").tolist()
    relevance = sp.csr_array(
        (
            np.ones(arrays["relevance_indices"].size, dtype=bool),
            arrays.pop("relevance_indices"),
            arrays.pop("relevance_indptr"),
        ),
        shape=(len(user_ids), len(test_song_ids)),
    )
    return {
        "user_ids": user_ids,
        "user_factors": arrays.pop("user_factors"),
        "test_song_ids": test_song_ids,
        "relevance": relevance,
        "models": arrays,
    }


def _song_labels(
    dataset_root: Path, artists: pd.Series, song_ids: list[str]
) -> tuple[list[str], str]:
    """A label per song for colouring the song map: its genre, else its artist.

    The genre comes from `truth.json` (synthetic worlds only; diagnostics, never a training
    signal) when it maps every song, as `{"songs": {id: {"genre": ..}}}` or
    `{"songs": [{"song_id": .., "genre": ..}]}`; otherwise the artist (`artists`: song id ->
    artist, from songs.csv).
    """
    truth_path = dataset_root / TRUTH_FILE
    if truth_path.is_file():
        songs = json.loads(truth_path.read_text()).get("songs")
        if isinstance(songs, list):
            songs = {record.get("song_id"): record for record in songs}
        if isinstance(songs, dict):
            genres = {
                song_id: str(record["genre"])
                for song_id, record in songs.items()
                if isinstance(record, dict) and "genre" in record
            }
            if all(song_id in genres for song_id in song_ids):
                return [genres[song_id] for song_id in song_ids], "genre"
    return artists.reindex(song_ids).fillna("?").tolist(), "artist"


def _plot_song_map(
    path: Path, factorization: Factorization, dataset_root: Path, artists: pd.Series, seed: int
) -> str:
    """t-SNE of train + test song factors (at most `SONG_MAP_MAX_SONGS`), coloured by genre
    or artist; returns what the colours show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    song_ids = factorization.song_ids + factorization.test_song_ids
    factors = np.concatenate([factorization.song_factors, factorization.test_song_factors])
    is_test = np.r_[
        np.zeros(len(factorization.song_ids), bool), np.ones(len(factorization.test_song_ids), bool)
    ]
    rng = np.random.default_rng(seed)
    if len(song_ids) > SONG_MAP_MAX_SONGS:
        keep = np.sort(rng.choice(len(song_ids), SONG_MAP_MAX_SONGS, replace=False))
    else:
        keep = np.arange(len(song_ids))
    labels, label_kind = _song_labels(dataset_root, artists, [song_ids[i] for i in keep])
    perplexity = float(max(1.0, min(30.0, (keep.size - 1) / 3)))
    embedding = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed
    ).fit_transform(factors[keep].astype(np.float64))

    names, sizes = np.unique(labels, return_counts=True)
    shown = names[np.argsort(-sizes, kind="stable")][:SONG_MAP_MAX_LABELS]
    label_array = np.array(labels)
    figure, axes = plt.subplots(figsize=(9, 7))
    other = ~np.isin(label_array, shown)
    palette = plt.get_cmap("tab10")
    groups = [("other", other, "lightgrey")] if other.any() else []
    groups = groups + [(name, label_array == name, palette(i)) for i, name in enumerate(shown)]
    for name, mask, colour in groups:
        for test, marker, size in ((False, "o", 10), (True, "^", 22)):
            selected = mask & (is_test[keep] == test)
            axes.scatter(
                *embedding[selected].T,
                s=size,
                marker=marker,
                color=colour,
                edgecolors="black" if test else "none",
                linewidths=0.3,
                label=name if not test else None,
            )
    axes.set_title(
        f"t-SNE of song factors ({keep.size} songs; triangles: test, folded in) by {label_kind}"
    )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(fontsize=7, markerscale=1.5, loc="best", title=label_kind)
    figure.tight_layout()
    write_atomic(path, lambda handle: figure.savefig(handle, format="png", dpi=110))
    plt.close(figure)
    return label_kind


def _plot_metrics(path: Path, report: dict[str, Any], order: list[str]) -> None:
    """Bars of mAP@k and AUC per model, with the random expectation as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    expected = report["expected_random"]
    for ax, metric, title in (
        (axes[0], "map", f"mAP@{report['k']}"),
        (axes[1], "auc", "AUC"),
    ):
        values = [report["models"][name][metric] for name in order]
        labels = [model_label(name, report["models"][name]) for name in order]
        bars = ax.bar(labels, values, color="tab:blue")
        ax.bar_label(bars, fmt="%.4f", fontsize=8)
        ax.axhline(expected[metric], color="grey", linestyle="--", label="random (expected)")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=8)
    axes[1].set_ylim(0, 1)
    figure.suptitle(f"{report['n_users']:,} users, {report['n_test_songs']:,} cold test songs")
    figure.tight_layout()
    write_atomic(path, lambda handle: figure.savefig(handle, format="png", dpi=110))
    plt.close(figure)


def model_order(report: dict[str, Any]) -> list[str]:
    """Model names best first by mAP (ties by name)."""
    return sorted(report["models"], key=lambda name: (-report["models"][name]["map"], name))


KIND_TITLES = {
    "cold_track": "Cold tracks: new songs by artists with training songs",
    "cold_artist": "Cold artists: songs by artists without a training song",
}


def model_label(name: str, row: dict[str, Any]) -> str:
    """A row's name in the tables: an encoder's with its architecture when the folder is
    named for its role (`cnn (dieleman)`), the bare name otherwise."""
    architecture = row.get("architecture")
    return name if architecture in (None, name) else f"{name} ({architecture})"


def _table_lines(table: dict[str, Any], k: int) -> list[str]:
    """A markdown model table (best mAP first) with the random expectation, then a blank."""
    lines = [
        f"| model | mAP@{k} | AUC | mAP gap closed | AUC gap closed |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in model_order(table):
        row = table["models"][name]
        closed = [
            "" if value is None else f"{value:.1%}"
            for value in (table["gap_closed"][name][metric] for metric in ("map", "auc"))
        ]
        lines.append(
            f"| {model_label(name, row)} | {row['map']:.5f} | {row['auc']:.4f} | {closed[0]}"
            f" | {closed[1]} |"
        )
    expected = table["expected_random"]
    return [
        *lines,
        f"| *random, expected* | *{expected['map']:.5f}* | *{expected['auc']:.4f}* | | |",
        "",
    ]


def _top_k_lines(table: dict[str, Any]) -> list[str]:
    """A markdown table of recall, precision and NDCG at each cutoff (models in the order
    of `_table_lines`), with the random expectation, then a blank."""
    names = [f"{metric}@{cutoff}" for metric in TOP_K_METRICS for cutoff in CUTOFFS]
    headers = [name.replace("ndcg", "NDCG") for name in names]
    lines = [
        "| model | " + " | ".join(headers) + " |",
        "|---|" + "---:|" * len(names),
    ]
    rows = [(name, table["models"][name]) for name in model_order(table)]
    rows.append(("*random, expected*", table["expected_random"]))
    for label, values in rows:
        cells = ["" if name not in values else f"{values[name]:.4f}" for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _hybrid_lines(effect: dict[str, dict[str, float]], k: int) -> list[str]:
    """What the hybrid gains (or costs) over the CNN per kind of test song."""
    if not effect:
        return []
    lines = ["## What the artist adds (hybrid minus cnn)", ""]
    lines += [
        f"- {kind}: mAP@{k} {delta['map']:+.5f}, AUC {delta['auc']:+.4f}"
        for kind, delta in effect.items()
    ]
    return [*lines, "", "A cold artist's hybrid vector is its CNN vector: no artist to add.", ""]


def _markdown(
    run_dir: Path, report: dict[str, Any], factorization: Factorization, label_kind: str
) -> str:
    k = report["k"]
    settings = report["settings"]
    lines = [
        f"# Cold-start evaluation: `{Path(run_dir).name}`",
        "",
        f"{report['n_users']:,} users ranked all {report['n_test_songs']:,} test songs (never"
        f" seen by WMF); a song is relevant to a user who listened to it. mAP@{k} ties are"
        " broken pessimistically (non-listened songs first); AUC counts ties as 1/2.",
        "",
        *_table_lines(report, k),
        "Gap closed: (model - expected random) / (upper_bound - expected random).",
        "",
        "Top-k metrics on the same ranking (recall@c = hits in the top c / listened songs,"
        " precision@c = hits / c, NDCG@c with binary gains; ties pessimistic):",
        "",
        *_top_k_lines(report),
    ]
    for kind, table in report.get("kinds", {}).items():
        lines += [
            f"## {KIND_TITLES[kind]} ({table['n_test_songs']:,} songs, {table['n_users']:,} users)",
            "",
            f"Users rank only the {kind} test songs; random expectation and upper bound of"
            " these songs.",
            "",
            *_table_lines(table, k),
            *_top_k_lines(table),
        ]
    lines += _hybrid_lines(report.get("hybrid_effect", {}), k)
    if report["skipped_models"]:
        lines += ["Skipped model folders:", ""]
        lines += [f"- `{name}`: {why}" for name, why in sorted(report["skipped_models"].items())]
        lines.append("")
    lines += [
        f"![mAP@{k} and AUC per model]({METRICS_PLOT})",
        "",
        f"![t-SNE of song factors, coloured by {label_kind}]({SONG_MAP_PLOT})",
        "",
        "## Settings",
        "",
        f"- k: {k}; random vectors seed: {settings['seed']}",
        f"- users evaluated: {report['n_users']:,} of the"
        f" {settings['n_users_with_test_listens']:,} with a test listen (at most"
        f" {settings['max_users']:,}, a seeded draw above that; WMF users without a test listen:"
        f" {settings['n_users_without_test_listens']:,}); test listens:"
        f" {settings['n_test_listens']:,}",
        f"- songs: train {report['n_train_songs']:,}, test {report['n_test_songs']:,}",
        f"- factorization `{settings['factorization_digest'][:12]}`, parameters:",
    ]
    lines += [
        f"  - {key}: {json.dumps(value)}"
        for key, value in sorted(factorization.manifest["parameters"].items())
    ]
    lines += [
        f"- dataset: `{settings['dataset_root']}`, fingerprint `{settings['dataset_fingerprint']}`",
        "",
    ]
    return "\n".join(lines)


def evaluate_run(
    run_dir: Path,
    k: int = DEFAULT_K,
    seed: int = 0,
    progress: bool = True,
    dataset_root: Path | None = None,
    max_users: int = MAX_EVALUATED_USERS,
) -> dict[str, Any]:
    """Score random, upper_bound and every finished content model of `run_dir`; write the
    report files and return the content of `report.json`.

    `seed` draws the random row's Gaussian vectors and the song map's subsample; `max_users`
    bounds the users scored (`evaluation.users`).
    `dataset_root` is needed only when the factorization manifest does not name its dataset.
    """
    run_dir = Path(run_dir)
    existing = run_dir / MANIFEST_NAME
    if existing.is_file():
        kind = json.loads(existing.read_text()).get("kind")
        if kind != REPORT_KIND:
            raise ArtifactError(f"{existing}: a {kind!r} manifest, not a report's; not overwriting")
        existing.unlink()

    with _progress(progress) as bar:
        step = bar.add_task("load factorization and listens", total=2)
        factorization = load_factorization(run_dir)
        root = dataset_root_of(factorization, dataset_root)
        bar.advance(step)
        dataset = load_dataset(root)
        listens = play_count_matrix(
            dataset.listens, factorization.user_ids, factorization.test_song_ids
        )
        artists = dataset.songs.set_index("song_id")["artist"]
        del dataset  # the listens table is the largest thing here; scoring needs only the CSR
        n_with_listens = int(np.count_nonzero(np.diff(listens.indptr)))
        evaluated = users_to_evaluate(listens, max_users)
        relevance = sp.csr_array(listens[evaluated] > 0)
        user_factors = factorization.user_factors[evaluated]
        bar.advance(step)

        content, digests, skipped, architectures = _content_models(run_dir, factorization)
        rng = np.random.default_rng(seed)
        vectors = {
            RANDOM: rng.standard_normal(factorization.test_song_factors.shape).astype(np.float32),
            UPPER_BOUND: factorization.test_song_factors,
            **content,
        }
        table = _score_table(user_factors, relevance, vectors, k, bar)
        kinds = _test_kinds(run_dir, factorization.test_song_ids)
        by_kind = _by_kind(user_factors, relevance, vectors, kinds, k, bar)
        for scored in (table, *by_kind.values()):
            for name, architecture in architectures.items():
                scored["models"][name]["architecture"] = architecture
        report: dict[str, Any] = {
            "k": k,
            "n_users": table["n_users"],
            "n_test_songs": len(factorization.test_song_ids),
            "n_train_songs": len(factorization.song_ids),
            "models": table["models"],
            "expected_random": table["expected_random"],
            "gap_closed": table["gap_closed"],
            "kinds": by_kind,
            "hybrid_effect": _hybrid_effect(by_kind),
            "skipped_models": skipped,
            "settings": {
                "seed": seed,
                "max_users": max_users,
                "n_users_with_test_listens": n_with_listens,
                "n_users_without_test_listens": len(factorization.user_ids) - n_with_listens,
                "n_test_listens": int(relevance.nnz),
                "factorization_digest": factorization.digest,
                "model_digests": digests,
                "dataset_root": str(root),
                "dataset_fingerprint": factorization.manifest.get("dataset_fingerprint"),
            },
        }

        step = bar.add_task("write report and plots", total=4)
        write_json_atomic(run_dir / REPORT_FILE, report)
        _write_predictions(
            run_dir / PREDICTIONS_FILE,
            [factorization.user_ids[i] for i in evaluated],
            user_factors,
            relevance,
            factorization.test_song_ids,
            vectors,
        )
        bar.advance(step)
        _plot_metrics(run_dir / METRICS_PLOT, report, model_order(report))
        bar.advance(step)
        label_kind = _plot_song_map(run_dir / SONG_MAP_PLOT, factorization, root, artists, seed)
        bar.advance(step)
        markdown = _markdown(run_dir, report, factorization, label_kind)
        write_atomic(run_dir / MARKDOWN_FILE, lambda handle: handle.write(markdown.encode()))
        write_manifest(
            run_dir,
            kind=REPORT_KIND,
            files=[REPORT_FILE, PREDICTIONS_FILE, MARKDOWN_FILE, METRICS_PLOT, SONG_MAP_PLOT],
            parameters={"k": k, "seed": seed, "max_users": max_users},
            parents={
                "factorization": factorization.digest,
                **{f"model:{n}": d for n, d in digests.items()},
            },
            dataset_fingerprint=factorization.manifest.get("dataset_fingerprint"),
        )
        bar.advance(step)
    return report
