"""Issue #16: how far audio + artist can go on a synthetic world (diagnostic, reads truth.json).

    python -m bench.hybrid_ceiling WORLD RUN [WORLD RUN ...] [--ridge-only] [--no-residual]
        [--figures RUN MODEL COLD_TRACK_MAP ALL_AUC ...] [--json FILE]
    python -m bench.hybrid_ceiling --listens-world OUT --seed N [--songs 3000 --users 6000]

BENCHMARKS.md ("Issue #16: the ceiling of audio + artist") ran, for N = 0 and 1:

    python -m bench.hybrid_ceiling --listens-world /tmp/ceiling/lw-default-sN --seed N
    python -m bench.hybrid_ceiling /tmp/ceiling/lw-default-s0 /tmp/ceiling/r-default-s0 \
        /tmp/ceiling/lw-default-s1 /tmp/ceiling/r-default-s1 [--ridge-only]
    python -m bench.hybrid_ceiling --listens-world /tmp/ceiling/lw-w1000-sN --seed N \
        --songs 1000 --users 2000
    python -m bench.hybrid_ceiling /tmp/ceiling/lw-w1000-s0 /tmp/ceiling/r-w1000-s0 \
        /tmp/ceiling/lw-w1000-s1 /tmp/ceiling/r-w1000-s1 [--ridge-only] \
        --figures r-w1000-s0 cnn 0.3000 0.8251 --figures r-w1000-s0 hybrid 0.3621 0.8367 \
        --figures r-w1000-s1 cnn 0.3324 0.7865 --figures r-w1000-s1 hybrid 0.3747 0.7916

The first form scores, for each world and run, predictors that are handed the world's
truth (`truth.json`: every song's, artist's and listener's generative attributes), with the
report's own metric (`ranking.metrics.ranking_metrics`, mAP@500 and AUC, per kind of test
song as `evaluation.report` cuts them) on the run's own users and test songs. A RUN without
`factorization/` is factorized first (`factorization.run.factorize_run(WORLD, RUN, seed=0)`,
what `coldstart factorize --seed 0` does); a RUN with a `report.json` adds its `cnn` and
`hybrid` rows (the actual models) and the gap shares measured from its cnn.

The listens never depend on the audio (`world.generate`), so the second form writes a stand-in
world without audio: the same catalogue, listeners and listens.tsv as `coldstart world --seed
N --songs S --users U`, byte for byte, and a truth.json with the same artists, songs and
users (no file, format or sections). With no audio the split holds out the same songs
(`factorization.run._split`: `holdable` is None either way), so its run has the same split
and factors as the real world's, in seconds instead of an hour of rendering.

Rows. In the WMF space (the report's `u · h`, regressions fitted on the training songs'
WMF factors, chosen by validation mAP, never on test songs):

- `oracle audio`: ridge / MLP from the song's audible attributes that listeners react to
  (`world.taste.audible_affinity`: genre, tempo, energy, brightness, mode,
  instrument families, drum groove; quadratic terms for the three with an ideal value);
- `oracle audio + artist prior`: that, fused with the project's artist prior
  (`training.artist_prior.fit_artist_priors`, shrinkage chosen on validation) by the
  project's fusion (`training.fusion.fit_fusion` on validation songs, users' scores), exactly
  as `training.hybrid` fuses the CNN;
- `... + inaudible popularity`: the regression also given the song's own (log) popularity,
  inaudible in this world; then fused the same way;
- `oracle audio + artist residual prior`: the prior of what the audio does not explain (per
  artist the shrunk mean of its training songs' factors minus their out-of-fold oracle
  predictions), fused the same way (`--no-residual` skips its 5 out-of-fold fits);
- `artist prior alone` (the `artist` row);
- `degraded audio, noise s`: stand-ins for CNNs of lesser quality, a ridge from the audible
  features with Gaussian noise of s standard deviations, alone and fused with the prior:
  how the hybrid's share of the cnn -> upper_bound gap moves with the audio model's quality;

and outside it, rankings by the true affinity of each listener for each test song
(`audible_affinity` / `inaudible_affinity` of `world.taste`, from truth.json's
listeners): `true taste: audible` (what the audio can tell, with perfect knowledge of every
listener), `+ artist` (favourite artists and the artist's popularity: what knowing the
artist can add), `+ song popularity` (everything the listens were drawn from but the draw
itself). The last is the ceiling of any predictor that has not seen the test songs' listens:
listeners pick songs in proportion to exp(affinity) (Gumbel top-k), so ranking by affinity
orders the songs by their chance of being picked. `upper_bound` (the test songs folded in
from those very listens) also knows the draw.

Shares: of the cnn -> upper_bound mAP@500 gap on cold tracks (the hybrid target, 50%), of
the random -> upper_bound AUC gap on all test songs (the cnn target, 88%), and of the random
-> upper_bound mAP gap on cold tracks (needs no cnn: the hybrid target asks at least half of
it whatever the cnn, as long as the cnn beats random). truth.json is read here only, never by
a model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from artifacts.manifest import MANIFEST_NAME
from artifacts.run_layout import FACTORIZATION_DIR
from corpus.artists import UNKNOWN_ARTIST
from corpus.dataset import LISTENS_FILE, read_listens
from corpus.split import KINDS, load_split
from factorization.matrices import play_count_matrix
from factorization.run import Factorization, factorize_run, load_factorization
from ranking.metrics import expected_random_map, ranking_metrics
from training.artist_prior import fit_artist_priors
from training.fusion import fit_fusion, hybrid_vectors, score_metric
from training.run_data import song_artists
from world.catalogue import artist_truth, draw_catalogue, song_truth
from world.generate import _CATALOGUE, _LISTENERS, _LISTENS, TRUTH_FILE, write_listens_and_songs
from world.style import FAMILIES, GENRES, GROOVES
from world.taste import (
    Listeners,
    SongFeatures,
    audible_affinity,
    draw_listeners,
    inaudible_affinity,
    sample_listens,
)

K = 500
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0)
MLP_ALPHAS = (0.1,)  # 0.001 too, in a first run: never chosen on either world
NOISE_LEVELS = (0.0, 0.5, 1.0, 2.0, 4.0)  # feature noise of the degraded audio oracles
Scores = dict[str, tuple[float, float]]  # kind -> (mAP@500, AUC)


def listens_world(out: Path, seed: int, n_songs: int = 3000, n_users: int = 6000) -> None:
    """Write `coldstart world`'s listens.tsv and songs.csv for this seed and sizes, and the
    artists, songs and users of its truth.json, without rendering any audio."""
    out.mkdir(parents=True, exist_ok=True)
    artists, songs = draw_catalogue(np.random.default_rng([seed, _CATALOGUE]), n_songs)
    listeners = draw_listeners(np.random.default_rng([seed, _LISTENERS]), n_users, artists, n_songs)
    users, items, plays = sample_listens(
        np.random.default_rng([seed, _LISTENS]), listeners, SongFeatures.of(songs)
    )
    heard = write_listens_and_songs(out, listeners.user_ids, songs, artists, users, items, plays)
    truth = {
        "seed": seed,
        "listens_only": True,
        "artists": [artist_truth(a) for a in artists],
        "songs": [
            song_truth(s) | {"artist_name": artists[s.artist].name, "listeners": int(heard[i])}
            for i, s in enumerate(songs)
        ],
        "users": listeners.truth(artists),
    }
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class Truth:
    """truth.json as arrays: every song's features and every listener's taste."""

    song_row: dict[str, int]
    songs: SongFeatures
    artist_log_popularity: np.ndarray  # (n_songs,) log popularity of each song's artist
    user_row: dict[str, int]
    listeners: Listeners


def read_truth(world: Path) -> Truth:
    """Rebuild `world.taste`'s SongFeatures and Listeners from truth.json (floats as
    rounded there: 3 or 4 decimals)."""
    truth = json.loads((world / TRUTH_FILE).read_text())
    genre = {g.name: i for i, g in enumerate(GENRES)}
    songs, users, artists = truth["songs"], truth["users"], truth["artists"]
    artist_row = {a["name"]: i for i, a in enumerate(artists)}
    families = np.array([[f in s["families"] for f in FAMILIES] for s in songs], np.float32)
    log_pop = np.log([s["popularity"] for s in songs])
    mean, std = log_pop.mean(), log_pop.std() + 1e-9
    features = SongFeatures(
        genre=np.array([genre[s["genre"]] for s in songs]),
        log_tempo=np.log([s["tempo"] for s in songs]),
        energy=np.array([s["energy"] for s in songs]),
        brightness=np.array([s["brightness"] for s in songs]),
        major=np.array([1.0 if s["mode"] == "major" else -1.0 for s in songs]),
        families=families,
        groove=np.array([GROOVES.index(s["groove"]) for s in songs]),
        artist=np.array([s["artist"] for s in songs]),
        popularity=(log_pop - mean) / std,
    )
    artist_log_pop = np.log([artists[s["artist"]]["popularity"] for s in songs])

    def column(key: str) -> np.ndarray:
        return np.array([u[key] for u in users], np.float64)

    listeners = Listeners(
        user_ids=[u["user_id"] for u in users],
        anchor=np.array([genre[u["anchor_genre"]] for u in users]),
        genre_affinity=np.array([[u["genre_affinity"][g.name] for g in GENRES] for u in users]),
        tempo=np.log(column("tempo_bpm")),
        tempo_width=column("tempo_width"),
        tempo_weight=column("tempo_weight"),
        energy=column("energy"),
        energy_weight=column("energy_weight"),
        brightness=column("brightness"),
        brightness_weight=column("brightness_weight"),
        mode=column("major_preference"),
        families=np.array([[u["families"][f] for f in FAMILIES] for u in users]),
        grooves=np.array([[u["grooves"][g] for g in GROOVES] for u in users]),
        favourites=[np.array([artist_row[a] for a in u["favourite_artists"]]) for u in users],
        loyalty=column("loyalty"),
        mainstream=column("mainstream"),
        activity=column("activity").astype(np.int64),
        repeat=column("repeat"),
    )
    return Truth(
        song_row={s["song_id"]: i for i, s in enumerate(songs)},
        songs=features,
        artist_log_popularity=(artist_log_pop - mean) / std,
        user_row={u: i for i, u in enumerate(listeners.user_ids)},
        listeners=listeners,
    )


def audible_features(truth: Truth, rows: np.ndarray, popularity: bool = False) -> np.ndarray:
    """(len(rows), d) what listeners hear and react to, standardised: one-hot genre and
    groove, families, mode, and tempo, energy, brightness with their squares (a listener
    likes a value: -w (x - x0)^2 is linear in x and x^2). `popularity` adds the song's
    inaudible log popularity and its products with every other column."""
    s = truth.songs
    continuous = [s.log_tempo[rows], s.energy[rows], s.brightness[rows]]
    columns = [
        np.eye(len(GENRES))[s.genre[rows]],
        np.eye(len(GROOVES))[s.groove[rows]],
        s.families[rows],
        s.major[rows, None],
        *(np.stack([x, x**2], axis=1) for x in continuous),
    ]
    x = np.concatenate(columns, axis=1).astype(np.float64)
    if popularity:
        p = s.popularity[rows, None]
        x = np.concatenate([x, p, p**2, x * p], axis=1)
    return x


@dataclass
class World:
    """One run's factorization, kinds, relevance and the truth of its songs and users."""

    name: str
    f: Factorization
    kinds: np.ndarray  # kind of each test song
    users: np.ndarray  # evaluated users: rows of f.user_ids with a test listen
    relevance: sp.csr_array  # (len(users), n_test) listened
    valid_relevance: sp.csr_matrix  # (n_users, n_valid) listened
    truth: Truth
    rows: dict[str, np.ndarray]  # role -> truth rows of the role's songs
    artists: dict[str, list[str]]  # role -> normalised artist of each song
    report: dict[str, Any] | None

    def valid_map(self, vectors: np.ndarray) -> float:
        return ranking_metrics(self.f.user_factors, vectors, self.valid_relevance, k=K).map


def load_world(world: Path, run: Path) -> World:
    """The run's files (factorized here first when it has none) and the world's truth."""
    if not (run / FACTORIZATION_DIR / MANIFEST_NAME).is_file():
        factorize_run(world, run, seed=0, progress=False, num_threads=1)
    f = load_factorization(run)
    split = load_split(run)
    kind_of = dict(zip(split.test, split.test_kinds or [], strict=True))
    listens = read_listens(world / LISTENS_FILE)
    test = play_count_matrix(listens, f.user_ids, f.test_song_ids)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    valid = play_count_matrix(listens, f.user_ids, f.valid_song_ids)
    valid.data[:] = 1.0
    truth = read_truth(world)
    artist_of = song_artists(world)
    ids = {"train": f.song_ids, "valid": f.valid_song_ids, "test": f.test_song_ids}
    report_file = run / "report.json"
    return World(
        name=str(run),
        f=f,
        kinds=np.array([kind_of[s] for s in f.test_song_ids]),
        users=users,
        relevance=sp.csr_array(test[users] > 0),
        valid_relevance=valid,
        truth=truth,
        rows={r: np.array([truth.song_row[s] for s in songs]) for r, songs in ids.items()},
        artists={r: [artist_of.get(s, UNKNOWN_ARTIST) for s in songs] for r, songs in ids.items()},
        report=json.loads(report_file.read_text()) if report_file.is_file() else None,
    )


def score(w: World, vectors: np.ndarray, user_vectors: np.ndarray | None = None) -> Scores:
    """mAP@500 and AUC on all test songs and per kind, the report's way: each kind's users
    rank only that kind's songs. `user_vectors` (evaluated users, F) default to their WMF
    factors; true-taste rows pass their scores with identity song vectors."""
    users = w.f.user_factors[w.users] if user_vectors is None else user_vectors
    out: Scores = {}
    for kind in ("all", *KINDS):
        columns = np.arange(w.kinds.size) if kind == "all" else np.flatnonzero(w.kinds == kind)
        sub = sp.csr_array(w.relevance[:, columns])
        evaluated = np.flatnonzero(np.diff(sub.indptr) > 0)
        kind_users, song_vectors = users[evaluated], vectors[columns]
        if user_vectors is not None:  # scores given: keep only this kind's columns
            kind_users, song_vectors = kind_users[:, columns], song_vectors[:, columns]
        m = ranking_metrics(kind_users, song_vectors, sub[evaluated], k=K)
        out[kind] = (m.map, m.auc)
    return out


def random_map(w: World, kind: str) -> float:
    columns = np.arange(w.kinds.size) if kind == "all" else np.flatnonzero(w.kinds == kind)
    counts = np.diff(sp.csr_array(w.relevance[:, columns]).indptr)
    return expected_random_map(counts[counts > 0], columns.size, K)


@dataclass(frozen=True)
class Regression:
    """A fitted oracle's vectors: validation, test, and (when asked) the training songs'
    out-of-fold predictions (5 folds, each predicted by a model fitted on the others)."""

    valid: np.ndarray
    test: np.ndarray
    train_out_of_fold: np.ndarray | None
    note: str


def fit_regression(
    w: World, popularity: bool, out_of_fold: bool = False, mlp: bool = True
) -> Regression:
    """The best (by validation mAP) ridge or MLP from the truth features to the training
    songs' WMF factors; the squares are those of the users' scores (targets mapped by
    `score_metric`, predictions mapped back)."""
    from sklearn.base import clone
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    metric = score_metric(w.f.user_factors)
    back = np.linalg.inv(metric)
    x = {r: audible_features(w.truth, w.rows[r], popularity) for r in ("train", "valid", "test")}
    scaler = StandardScaler().fit(x["train"])
    x = {r: scaler.transform(v) for r, v in x.items()}
    target = w.f.song_factors.astype(np.float64) @ metric
    models: dict[str, Any] = {f"ridge alpha {a:g}": Ridge(alpha=a) for a in RIDGE_ALPHAS}
    models |= {
        f"mlp alpha {a:g}": MLPRegressor(
            hidden_layer_sizes=(256, 256),
            alpha=a,
            early_stopping=True,
            max_iter=500,
            random_state=0,
        )
        for a in (MLP_ALPHAS if mlp else ())
    }
    best: tuple[float, np.ndarray, np.ndarray, str] | None = None
    for name, model in models.items():
        _log(f"  fit {name}{' with popularity' if popularity else ''}")
        model.fit(x["train"], target)
        valid = (model.predict(x["valid"]) @ back).astype(np.float32)
        found = w.valid_map(valid)
        if best is None or found > best[0]:
            test = (model.predict(x["test"]) @ back).astype(np.float32)
            best = (found, valid, test, name)
    assert best is not None
    oof = None
    if out_of_fold:
        _log(f"  out-of-fold predictions of the training songs ({best[3]})")
        folds = KFold(5, shuffle=True, random_state=0)
        predicted = cross_val_predict(clone(models[best[3]]), x["train"], target, cv=folds)
        oof = (predicted @ back).astype(np.float32)
    return Regression(best[1], best[2], oof, f"{best[3]}, valid mAP {best[0]:.4f}")


def fused(
    w: World, valid: np.ndarray, test: np.ndarray, priors: Any
) -> tuple[np.ndarray, np.ndarray]:
    """`training.hybrid`'s fusion of `valid`/`test` vectors with the artist priors, fitted on
    the validation songs' folded-in factors (users' scores); returns (valid, test) vectors."""
    vp, vc = priors.lookup(w.artists["valid"])
    tp, tc = priors.lookup(w.artists["test"])
    weights = fit_fusion(
        valid, vp, vc, w.f.valid_song_factors, metric=score_metric(w.f.user_factors)
    )
    return hybrid_vectors(valid, vp, vc, weights), hybrid_vectors(test, tp, tc, weights)


def degraded_audio(w: World, priors: Any, notes: dict[str, str]) -> dict[str, Scores]:
    """Stand-ins for CNNs of every quality: ridge (alpha 10) from the audible features plus
    Gaussian noise of `NOISE_LEVELS` standard deviations (standardised features, the same
    noise draw for every level), alone and fused with the artist prior like the hybrid."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    metric = score_metric(w.f.user_factors)
    back = np.linalg.inv(metric)
    roles = ("train", "valid", "test")
    x = {r: audible_features(w.truth, w.rows[r]) for r in roles}
    scaler = StandardScaler().fit(x["train"])
    rng = np.random.default_rng(0)
    noise = {r: rng.standard_normal(x[r].shape) for r in roles}
    out: dict[str, Scores] = {}
    for level in NOISE_LEVELS:
        noisy = {r: scaler.transform(x[r]) + level * noise[r] for r in roles}
        model = Ridge(alpha=10.0).fit(noisy["train"], w.f.song_factors.astype(np.float64) @ metric)
        valid, test = ((model.predict(noisy[r]) @ back).astype(np.float32) for r in roles[1:])
        _, test_h = fused(w, valid, test, priors)
        out[f"degraded audio, noise {level:g}"] = score(w, test)
        out[f"degraded audio, noise {level:g} + artist prior (fusion)"] = score(w, test_h)
    notes["degraded audio"] = f"ridge alpha 10, noise levels {NOISE_LEVELS}"
    return out


def true_scores(w: World, parts: str) -> np.ndarray:
    """(evaluated users, n_test) each listener's true affinity for each test song:
    "audible", "artist" (+ favourite artists and the artist's popularity) or "all" (+ the
    song's own popularity, i.e. `sample_listens`' whole score)."""
    t = w.truth
    user_rows = np.array([t.user_row[w.f.user_ids[u]] for u in w.users])
    listeners = Listeners(
        **{
            name: (
                [value[r] for r in user_rows]
                if isinstance(value, list)
                else value[user_rows]
                if isinstance(value, np.ndarray)
                else value
            )
            for name, value in vars(t.listeners).items()
        }
    )
    songs = t.songs
    if parts == "artist":
        songs = SongFeatures(**(vars(songs) | {"popularity": t.artist_log_popularity}))
    out = np.empty((user_rows.size, w.rows["test"].size))
    for begin in range(0, user_rows.size, 256):
        chunk = slice(begin, min(begin + 256, user_rows.size))
        score_ = audible_affinity(listeners, songs, chunk)
        if parts != "audible":
            score_ += inaudible_affinity(listeners, songs, chunk)
        out[chunk] = score_[:, w.rows["test"]]
    return out.astype(np.float32)


def analyse(world: Path, run: Path, residual: bool = True, mlp: bool = True) -> dict[str, Any]:
    """Every row's scores on one world, with notes (the models chosen)."""
    started = time.perf_counter()
    _log(f"{run}: load (factorize first if needed)")
    w = load_world(world, run)
    f = w.f
    rows: dict[str, Scores] = {}
    notes: dict[str, str] = {}
    rows["upper_bound"] = score(w, f.test_song_factors)
    if w.report is not None:
        for name in ("cnn", "hybrid"):
            if name in w.report["models"]:
                rows[f"{name} (report)"] = {
                    kind: (table["models"][name]["map"], table["models"][name]["auc"])
                    for kind, table in [("all", w.report), *w.report["kinds"].items()]
                }
        ub = w.report["models"]["upper_bound"]["map"]
        notes["report upper_bound check"] = f"{ub:.4f} vs {rows['upper_bound']['all'][0]:.4f}"
    priors, _ = fit_artist_priors(
        w.artists["train"], f.song_factors, w.artists["valid"], w.valid_map
    )
    rows["artist prior alone"] = score(w, priors.lookup(w.artists["test"])[0])
    for popularity, label in ((False, "oracle audio"), (True, "oracle audio + popularity")):
        fit = fit_regression(w, popularity, out_of_fold=residual and not popularity, mlp=mlp)
        notes[label] = fit.note
        rows[label] = score(w, fit.test)
        valid_h, test_h = fused(w, fit.valid, fit.test, priors)
        notes[f"{label}, fused with the artist prior"] = f"valid mAP {w.valid_map(valid_h):.4f}"
        rows[f"{label} + artist prior (fusion)"] = score(w, test_h)
        if fit.train_out_of_fold is not None:
            # the artist's part the audio does not explain: its training songs' residuals
            residuals = w.f.song_factors - fit.train_out_of_fold
            residual_priors, _ = fit_artist_priors(
                w.artists["train"],
                residuals,
                w.artists["valid"],
                lambda v, base=fit.valid: w.valid_map(base + v),
            )
            valid_r, test_r = fused(w, fit.valid, fit.test, residual_priors)
            notes[f"{label}, fused with the residual prior"] = (
                f"valid mAP {w.valid_map(valid_r):.4f}, shrinkage {residual_priors.shrinkage:g}"
            )
            rows[f"{label} + artist residual prior (fusion)"] = score(w, test_r)
    rows |= degraded_audio(w, priors, notes)
    identity = np.eye(f.test_song_factors.shape[0], dtype=np.float32)
    for parts, label in (
        ("audible", "true taste: audible"),
        ("artist", "true taste: audible + artist"),
        ("all", "true taste: + song popularity"),
    ):
        _log(f"  {label}")
        rows[label] = score(w, identity, true_scores(w, parts))
    notes["seconds"] = f"{time.perf_counter() - started:.0f}"
    expected = {kind: random_map(w, kind) for kind in ("all", *KINDS)}
    counts = {kind: int(np.count_nonzero(w.kinds == kind)) for kind in KINDS}
    return {"rows": rows, "notes": notes, "random_map": expected, "counts": counts}


def _log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _share(value: float, floor: float, ceiling: float) -> float:
    return (value - floor) / (ceiling - floor)


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown: per row and world, cold-track mAP@500 with its share of the cnn ->
    upper_bound gap (when the run has a cnn) and of the random -> upper_bound gap, and the
    all-song AUC with its share of the random -> upper_bound gap."""
    names = list(dict.fromkeys(n for r in results.values() for n in r["rows"]))
    names.sort(key=lambda n: (n != "upper_bound", "(report)" not in n))
    header = ["row"]
    for world in results:
        header += [f"{world} cold-track mAP", "cnn→ub", "rnd→ub", "all AUC", "rnd→ub"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for name in names:
        cells = [name]
        for r in results.values():
            if name not in r["rows"]:
                cells += ["—"] * 5
                continue
            m, auc = r["rows"][name]["cold_track"][0], r["rows"][name]["all"][1]
            ub = r["rows"]["upper_bound"]
            cnn = r["rows"].get("cnn (report)")
            cells += [
                f"{m:.4f}",
                f"{_share(m, cnn['cold_track'][0], ub['cold_track'][0]):.1%}" if cnn else "—",
                f"{_share(m, r['random_map']['cold_track'], ub['cold_track'][0]):.1%}",
                f"{auc:.4f}",
                f"{_share(auc, 0.5, ub['all'][1]):.1%}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", type=Path, help="WORLD RUN [WORLD RUN ...]")
    parser.add_argument("--listens-world", type=Path, help="write a stand-in world here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--songs", type=int, default=3000)
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument(
        "--no-residual",
        action="store_true",
        help="skip the residual prior row (its 5 out-of-fold fits: minutes on a busy machine)",
    )
    parser.add_argument(
        "--ridge-only", action="store_true", help="oracles by ridge alone (no MLP: seconds)"
    )
    parser.add_argument(
        "--figures",
        nargs=4,
        action="append",
        default=[],
        metavar=("RUN", "MODEL", "COLD_TRACK_MAP", "ALL_AUC"),
        help="a model's figures measured elsewhere on the same world and split (a run"
        " without report.json): its row, and for MODEL cnn the cnn -> upper_bound shares",
    )
    args = parser.parse_args()
    if args.listens_world is not None:
        listens_world(args.listens_world, args.seed, args.songs, args.users)
        return
    if not args.pairs or len(args.pairs) % 2:
        parser.error("give WORLD RUN pairs")
    results = {
        f"{run.name}": analyse(world, run, residual=not args.no_residual, mlp=not args.ridge_only)
        for world, run in zip(args.pairs[::2], args.pairs[1::2], strict=True)
    }
    for run, model, cold_track_map, all_auc in args.figures:
        results[Path(run).name]["rows"][f"{model} (report)"] = {
            "cold_track": (float(cold_track_map), float("nan")),
            "all": (float("nan"), float(all_auc)),
        }
    for name, r in results.items():
        print(f"{name}: test songs {r['counts']}, random mAP {r['random_map']}")
        for note, text in r["notes"].items():
            print(f"  {note}: {text}")
        for row, by_kind in r["rows"].items():
            cells = "  ".join(f"{k} {m:.4f}/{a:.4f}" for k, (m, a) in by_kind.items())
            print(f"  {row:44s} {cells}")
    print("\n".join(table(results)))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
