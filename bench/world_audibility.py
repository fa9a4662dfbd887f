"""Diagnostic: how much of a synthetic world's listening could audio explain?

Reads a world folder (listens.tsv and truth.json; truth is what makes this a diagnostic,
models never see it), holds out a fifth of the songs as cold songs, fits WMF on the rest
(implicit's ALS, confidence 1 + alpha log(1 + plays)) and ranks each user's cold songs
by factors obtained in several ways, side by side (mean per-user AUC):

- random factors (0.5);
- genre only: ridge regression from the genre to the song factors (what a genre
  classifier could give);
- audible oracle: ridge regression from every audible attribute the generator used
  (genre, tempo, energy, brightness, mode, instrument families, groove, and their
  interactions with the genre, and the artist's production axes when the world was
  generated with `--production-taste`): roughly the best a content model could do;
- audible + artist + popularity: the oracle told the inaudible part too;
- upper bound: cold songs folded in from their held-out listens (the paper's upper bound).

and the share of the gap between random and the upper bound that each one closes. The
cold-start CNN has to close at least half of it on the default world, so the audible
oracle should close well over half, and the inaudible part should leave some gap.

Several worlds print side by side (e.g. the same seed with `--instruments synth` and
`soundfont`: their listens are the same, so the rows above agree, and only a trained
model tells the audio apart); with a `--run` per world, the AUCs `coldstart evaluate`
reported for that run's models (random, linear, cnn, upper_bound, on the run's own cold
split, gap closed against the run's upper bound) are added below.

    .venv/bin/python bench/world_audibility.py WORLD_SYNTH WORLD_SOUNDFONT \\
        --run RUN_SYNTH --run RUN_SOUNDFONT
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from implicit.als import AlternatingLeastSquares  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402

from corpus.dataset import load_dataset  # noqa: E402
from world.general_midi import Production, production_sound  # noqa: E402

FACTORS, REGULARIZATION, ALPHA, ITERATIONS = 32, 0.1, 10.0, 15
RUN_MODELS = ("random", "linear", "cnn", "upper_bound")


def fold_in(user_factors: np.ndarray, plays: sp.csc_matrix) -> np.ndarray:
    """(n_songs, F) factors of songs from their listens, the user factors held fixed."""
    gram = user_factors.T @ user_factors
    factors = np.zeros((plays.shape[1], user_factors.shape[1]), dtype=np.float32)
    for j in range(plays.shape[1]):
        rows = plays.indices[plays.indptr[j] : plays.indptr[j + 1]]
        confidence = ALPHA * plays.data[plays.indptr[j] : plays.indptr[j + 1]]
        listened = user_factors[rows]
        a = gram + (listened.T * confidence) @ listened + REGULARIZATION * np.eye(FACTORS)
        factors[j] = np.linalg.solve(a, (listened.T * (1.0 + confidence)).sum(axis=1))
    return factors


def mean_auc(user_factors: np.ndarray, song_factors: np.ndarray, listened: np.ndarray) -> float:
    """Mean over users with both listened and unlistened cold songs of the ranking AUC."""
    scores = user_factors @ song_factors.T
    ranks = scores.argsort(axis=1).argsort(axis=1)
    positives = listened.sum(axis=1)
    usable = (positives > 0) & (positives < listened.shape[1])
    rank_sum = np.where(listened, ranks, 0).sum(axis=1)
    negatives = listened.shape[1] - positives
    auc = (rank_sum - positives * (positives - 1) / 2) / np.maximum(positives * negatives, 1)
    return float(auc[usable].mean())


def attributes(
    songs: list[dict], genres: list[str], with_inaudible: bool, sound: np.ndarray | None = None
) -> np.ndarray:
    """(n_songs, n_features) the generator's attributes of songs, one-hot and standardised;
    `sound` (n_artists, n_axes): the artists' production, when listeners' taste used it."""
    genre = np.eye(len(genres))[[genres.index(s["genre"]) for s in songs]]
    continuous = np.array(
        [[np.log(s["tempo"]), s["energy"], s["brightness"], s["mode"] == "major"] for s in songs],
        dtype=np.float64,
    )
    continuous = (continuous - continuous.mean(0)) / (continuous.std(0) + 1e-9)
    families = sorted({f for s in songs for f in s["families"]})
    grooves = sorted({s["groove"] for s in songs})
    family = np.array([[f in s["families"] for f in families] for s in songs], dtype=float)
    groove = np.array([[s["groove"] == g for g in grooves] for s in songs], dtype=float)
    both = np.concatenate([continuous, continuous**2], axis=1)
    by_genre = (genre[:, :, None] * both[:, None, :]).reshape(len(songs), -1)
    columns = [genre, both, by_genre, family, groove]
    if sound is not None:
        columns.append(sound[[s["artist"] for s in songs]])
    if with_inaudible:
        artists = sorted({s["artist"] for s in songs})
        columns.append(np.eye(len(artists))[[artists.index(s["artist"]) for s in songs]])
        columns.append(np.log([[s["popularity"]] for s in songs]))
    return np.concatenate(columns, axis=1)


def oracle_aucs(world: Path, seed: int) -> tuple[dict[str, float], str]:
    """Mean AUC on a fifth of the world's songs held out, per way of getting their factors,
    and a line describing the split."""
    truth = json.loads((world / "truth.json").read_text(encoding="utf-8"))
    dataset = load_dataset(world)
    songs = truth["songs"]
    column = {row["song_id"]: i for i, row in enumerate(songs)}
    users = dataset.listens["user_id"].cat.codes.to_numpy()
    items = np.array([column[s] for s in dataset.listens["song_id"].astype(str)])
    plays = np.log1p(dataset.listens["play_count"].to_numpy()).astype(np.float32)
    matrix = sp.csr_matrix((plays, (users, items)), shape=(users.max() + 1, len(songs)))

    rng = np.random.default_rng(seed)
    cold = np.zeros(len(songs), dtype=bool)
    cold[rng.permutation(len(songs))[: len(songs) // 5]] = True
    warm_index, cold_index = np.flatnonzero(~cold), np.flatnonzero(cold)
    model = AlternatingLeastSquares(
        factors=FACTORS,
        regularization=REGULARIZATION,
        alpha=ALPHA,
        iterations=ITERATIONS,
        random_state=seed,
    )
    model.fit(matrix[:, warm_index], show_progress=False)
    user_factors, warm_factors = np.asarray(model.user_factors), np.asarray(model.item_factors)
    listened = matrix[:, cold_index].toarray() > 0

    genre_only = np.eye(len(truth["genres"]))[[truth["genres"].index(s["genre"]) for s in songs]]
    sound = (
        production_sound([Production(**a["production"]) for a in truth["artists"]])
        if "sound_axes" in truth
        else None
    )
    audible = attributes(songs, truth["genres"], with_inaudible=False, sound=sound)
    everything = attributes(songs, truth["genres"], with_inaudible=True, sound=sound)
    rows = {"random": rng.normal(size=(len(cold_index), FACTORS))}
    for name, features in (
        ("genre only", genre_only),
        ("audible oracle", audible),
        ("audible + artist + popularity", everything),
    ):
        ridge = Ridge(alpha=1.0).fit(features[warm_index], warm_factors)
        rows[name] = ridge.predict(features[cold_index])
    rows["upper bound (fold-in)"] = fold_in(user_factors, matrix[:, cold_index].tocsc())
    aucs = {name: mean_auc(user_factors, factors, listened) for name, factors in rows.items()}
    instruments = truth.get("instruments", "synth")
    split = f"{len(songs)} songs ({len(cold_index)} cold), {matrix.shape[0]} users, {instruments}"
    return aucs, split


def run_aucs(run: Path) -> dict[str, float]:
    """The AUCs `coldstart evaluate` reported for a run on the world (its own cold split)."""
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    return {f"run: {name}": report["models"][name]["auc"] for name in RUN_MODELS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path, nargs="+")
    parser.add_argument(
        "--run", type=Path, action="append", default=[], help="a run per world, in order"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.run and len(args.run) != len(args.world):
        parser.error("give one --run per world, or none")

    columns = []
    for index, world in enumerate(args.world):
        aucs, split = oracle_aucs(world, args.seed)
        print(f"[{index + 1}] {world}: {split}")
        upper = aucs["upper bound (fold-in)"]
        gaps = {name: (auc - 0.5) / (upper - 0.5) for name, auc in aucs.items()}
        if args.run:
            run = run_aucs(args.run[index])
            run_upper = run["run: upper_bound"]
            aucs |= run
            gaps |= {name: (auc - 0.5) / (run_upper - 0.5) for name, auc in run.items()}
        columns.append((aucs, gaps))
    header = "".join(f" {f'[{i + 1}] AUC':>9} {'gap':>5}" for i in range(len(columns)))
    print(f"{'song factors from':32}{header}")
    for name in columns[0][0]:
        cells = "".join(f" {aucs[name]:9.3f} {gaps[name]:5.2f}" for aucs, gaps in columns)
        print(f"{name:32}{cells}")


if __name__ == "__main__":
    main()
