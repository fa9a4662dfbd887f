"""Post-hoc comparison of artist priors and CNN + artist fusions on finished runs (issue #16).

    python -m bench.hybrid_variants RUN [RUN ...]

For each run (factorized, trained with cnn and hybrid, evaluated) rebuilds from the run's
own files several artist priors and fusions, fits each fusion on the validation songs (as
`training.hybrid` does: their folded-in factors, the CNN's whole-clip predictions) and
scores the test songs the report's way, on all test songs and per kind. Nothing is
retrained; the CNN's predictions of the training and validation songs are computed once
and kept in `RUN/bench_hybrid_cnn.npz`.

Priors (per artist, from its training songs): `mean` (the shipped one: mean factors shrunk
with the run's shrinkage), `mean0` (unshrunk), `unitmean` (mean direction times mean
length), `foldin` / `foldin_mean` (the artist's listens summed / averaged into one song and
folded in), `artist_knn` (the artist's songs weighted by softmax(cosine of CNN predictions
/ 0.1): the ones that sound like the new song count more), `knn5` / `knn20` (mean factors of
the nearest training songs of any artist by CNN prediction).
Fusions: `ls` (per-bucket least squares on factors, the fusion before this bench), `ls_score`
(the same on the users' scores: `training.fusion.score_metric`), `+res` (a third
regressor, the artist's mean CNN prediction), `renorm` (the fused vector rescaled to the
artist's mean song length), `map-fit` (one CNN share `w` of length-matched vectors, chosen
on validation mAP). `oracle-*` rows read the test songs' folded-in factors: diagnostics of
what a fusion could reach, not models.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from corpus.artists import UNKNOWN_ARTIST
from corpus.dataset import LISTENS_FILE, read_listens
from corpus.split import load_split
from evaluation.report import load_predictions
from factorization.matrices import confidence_matrix
from factorization.wmf import ImplicitALSEngine
from ranking.metrics import ranking_metrics
from training.artist_prior import artist_priors
from training.checkpoint import load_encoder
from training.fusion import COUNT_EDGES, MIN_BUCKET_SONGS, score_metric
from training.inference import predict_cached
from training.run_data import RunData, load_run_data, song_artists

CACHE_FILE = "bench_hybrid_cnn.npz"
ROLES = ("valid", "test")
Scores = dict[str, tuple[float, float]]


@dataclass
class Context:
    """One run's arrays: `keys[role]` artists, `cnn[role]` CNN vectors, `counts[role]`
    artist training song counts, for role in train / valid / test."""

    data: RunData
    predictions: dict[str, Any]
    kinds: np.ndarray
    keys: dict[str, np.ndarray]
    cnn: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    names: np.ndarray  # artists with training songs, sorted
    named: np.ndarray  # training songs with an artist
    has_mel: np.ndarray  # training songs with a mel
    valid_ok: np.ndarray  # validation songs with a mel

    def lookup(self, table: np.ndarray, role: str) -> np.ndarray:
        """Rows of a per-artist `table` (rows follow `names`) for a role's songs, 0 if none."""
        keys = self.keys[role].astype(str)
        rows = np.minimum(np.searchsorted(self.names, keys), self.names.size - 1)
        found = self.names[rows] == keys
        out = np.zeros((keys.size, table.shape[1]), np.float32)
        out[found] = table[rows[found]]
        return out

    def per_artist(self, values: np.ndarray, songs: np.ndarray | None = None) -> np.ndarray:
        """Per artist the mean of training song `values` rows (only `songs`, if given)."""
        mask = self.named if songs is None else self.named & songs
        codes = np.searchsorted(self.names, self.keys["train"][mask].astype(str))
        sums = np.zeros((self.names.size, values.shape[1]))
        np.add.at(sums, codes, values[mask])
        return sums / np.maximum(np.bincount(codes, minlength=self.names.size), 1)[:, None]


def _context(run: Path) -> Context:
    data = load_run_data(run)
    f = data.factorization
    predictions = load_predictions(run)
    artist_of = song_artists(data.dataset_root)
    ids = {"train": f.song_ids, "valid": f.valid_song_ids, "test": f.test_song_ids}
    keys = {
        role: np.array([artist_of.get(s, UNKNOWN_ARTIST) for s in songs], dtype=object)
        for role, songs in ids.items()
    }
    named = keys["train"] != UNKNOWN_ARTIST
    names = np.unique(keys["train"][named].astype(str))
    fitted = _cnn_predictions(run, data, [*f.song_ids, *f.valid_song_ids])
    cnn = {
        "train": fitted[: len(f.song_ids)],
        "valid": fitted[len(f.song_ids) :],
        "test": predictions["models"]["cnn"],
    }
    shipped = artist_priors(keys["train"], f.song_factors, 1.0)
    counts = {role: shipped.lookup(keys[role].tolist())[1] for role in ROLES}
    valid_ok = np.isin(f.valid_song_ids, data.cache.song_ids)
    counts["valid"] = np.where(valid_ok, counts["valid"], 0)
    return Context(
        data,
        predictions,
        np.array(load_split(run).test_kinds),
        keys,
        cnn,
        counts,
        names,
        named,
        np.isin(f.song_ids, data.cache.song_ids),
        valid_ok,
    )


def _cnn_predictions(run: Path, data: RunData, song_ids: list[str]) -> np.ndarray:
    """Whole-clip CNN predictions `(len(song_ids), F)` (zeros without a mel), cached."""
    path = run / CACHE_FILE
    if path.is_file():
        with np.load(path) as cached:
            if cached["ids"].tolist() == song_ids:
                return cached["vectors"]
    ids, rows = data.cached(song_ids)
    encoder = load_encoder(run / "models" / "cnn", data.cache.config)
    vectors = np.zeros((len(song_ids), data.factorization.n_factors), np.float32)
    vectors[rows] = predict_cached(encoder, data.cache, ids)
    np.savez(path, ids=np.array(song_ids), vectors=vectors)
    return vectors


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _folded_artists(c: Context, mean: bool) -> np.ndarray:
    """Each artist's training songs' listens as one song (confidence above 1 summed, or
    averaged), folded in against the users: `(n_artists, F)`."""
    f = c.data.factorization
    params = f.manifest["parameters"]
    listens = read_listens(c.data.dataset_root / LISTENS_FILE)
    conf = confidence_matrix(
        listens, f.user_ids, f.song_ids, alpha=params["alpha"], eps=params["eps"]
    )
    extra = sp.csr_matrix(conf.T)
    extra.data -= 1.0
    codes = np.searchsorted(c.names, c.keys["train"][c.named].astype(str))
    members = sp.csr_matrix(
        (np.ones(codes.size), (codes, np.flatnonzero(c.named))),
        shape=(c.names.size, len(f.song_ids)),
    )
    if mean:
        members = sp.diags(1 / members.sum(axis=1).A1) @ members
    pseudo = sp.csr_matrix(members @ extra)
    pseudo.data += 1.0
    engine = ImplicitALSEngine(f.n_factors, params["regularization"], 1, 0, 0)
    return engine.fold_in_songs(f.user_factors, pseudo)


def _knn_mean(query: np.ndarray, base: np.ndarray, factors: np.ndarray, k: int) -> np.ndarray:
    """Mean factors of each query's `k` most cosine-similar base rows."""
    nearest = np.argsort(-(query @ base.T), axis=1)[:, :k]
    return factors[nearest].mean(axis=1).astype(np.float32)


def _artist_knn(c: Context, role: str, fallback: np.ndarray, temperature: float) -> np.ndarray:
    """Per song the softmax(cos / temperature)-weighted factors of its artist's songs."""
    usable = c.named & c.has_mel
    base, base_keys = _unit(c.cnn["train"][usable]), c.keys["train"][usable]
    factors = c.data.factorization.song_factors[usable]
    query = _unit(c.cnn[role])
    out = fallback.copy()
    for i, key in enumerate(c.keys[role]):
        rows = np.flatnonzero(base_keys == key)
        if rows.size:
            logits = base[rows] @ query[i] / temperature
            w = np.exp(logits - logits.max())
            out[i] = (w / w.sum()) @ factors[rows]
    return out


def _priors(c: Context) -> dict[str, dict[str, np.ndarray]]:
    """Every prior's vectors of the validation and test songs."""
    f = c.data.factorization
    shrinkage = json.loads((c.data.run_dir / "models/artist/manifest.json").read_text())
    tables = {
        "mean": artist_priors(
            c.keys["train"], f.song_factors, shrinkage["parameters"]["shrinkage"]
        ),
        "mean0": artist_priors(c.keys["train"], f.song_factors, 1e-6),
    }
    out = {
        name: {role: table.lookup(c.keys[role].tolist())[0] for role in ROLES}
        for name, table in tables.items()
    }
    lengths = c.per_artist(np.linalg.norm(f.song_factors, axis=1, keepdims=True))
    per_artist = {
        "unitmean": _unit(c.per_artist(_unit(f.song_factors))) * lengths,
        "foldin": _folded_artists(c, mean=False),
        "foldin_mean": _folded_artists(c, mean=True),
    }
    for name, table in per_artist.items():
        out[name] = {role: c.lookup(table, role) for role in ROLES}
    base = _unit(c.cnn["train"][c.has_mel])
    for k in (5, 20):
        out[f"knn{k}"] = {
            role: _knn_mean(_unit(c.cnn[role]), base, f.song_factors[c.has_mel], k)
            for role in ROLES
        }
    out["artist_knn"] = {role: _artist_knn(c, role, out["mean0"][role], 0.1) for role in ROLES}
    return out


def _fit(regressors: list[np.ndarray], target: np.ndarray, counts: np.ndarray, metric):
    """Per bucket of artist song count the weights `w (k,)` minimising the squares of
    `(X_s w - t_s) metric`, X_s the song's `k` regressors as columns (pooled fit for a
    thin bucket)."""
    x = np.stack([np.asarray(r, np.float64) @ metric for r in regressors], axis=2)
    t = np.asarray(target, np.float64) @ metric

    def solve(rows: np.ndarray) -> np.ndarray:
        lhs = np.einsum("nfk,nfj->kj", x[rows], x[rows])
        lhs += 1e-9 * np.trace(lhs) * np.eye(lhs.shape[0])
        return np.linalg.solve(lhs, np.einsum("nfk,nf->k", x[rows], t[rows]))

    known = counts > 0
    pooled = solve(np.flatnonzero(known))
    bucket = np.searchsorted(np.asarray(COUNT_EDGES), counts, side="right") - 1
    weights = []
    for i in range(len(COUNT_EDGES)):
        rows = np.flatnonzero(known & (bucket == i))
        weights.append(solve(rows) if rows.size >= MIN_BUCKET_SONGS else pooled)
    return weights


def _apply(weights, regressors: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    bucket = np.searchsorted(np.asarray(COUNT_EDGES), counts, side="right") - 1
    x = np.stack(regressors, axis=2).astype(np.float64)
    fused = np.einsum("nfk,nk->nf", x, np.stack(weights)[np.maximum(bucket, 0)])
    fused[counts == 0] = regressors[0][counts == 0]  # cold artist: the CNN
    return fused.astype(np.float32)


def _score(c: Context, vectors: np.ndarray) -> Scores:
    out = {}
    for kind in ("all", "cold_track", "cold_artist"):
        columns = np.arange(vectors.shape[0]) if kind == "all" else np.flatnonzero(c.kinds == kind)
        relevance = sp.csr_array(c.predictions["relevance"][:, columns])
        users = np.flatnonzero(np.diff(relevance.indptr) > 0)
        metrics = ranking_metrics(
            c.predictions["user_factors"][users], vectors[columns], relevance[users], k=500
        )
        out[kind] = (metrics.map, metrics.auc)
    return out


def analyse(run: Path) -> dict[str, Scores]:
    """Every variant's (mAP@500, AUC) per kind of test song."""
    c = _context(run)
    f = c.data.factorization
    priors = _priors(c)
    metrics = {"ls": np.eye(f.n_factors), "ls_score": score_metric(f.user_factors)}
    lengths = c.per_artist(np.linalg.norm(f.song_factors, axis=1, keepdims=True))
    length = {role: c.lookup(lengths, role) for role in ROLES}
    cnn_artist = {role: c.lookup(c.per_artist(c.cnn["train"], c.has_mel), role) for role in ROLES}
    cold = c.counts["test"] == 0

    results = {"cnn": _score(c, c.cnn["test"])}
    for prior_name, prior in priors.items():
        results[f"prior {prior_name}"] = _score(c, prior["test"])
        for fusion_name, metric in metrics.items():
            for residual in (False, True):
                regs = {
                    role: [c.cnn[role], prior[role], *([cnn_artist[role]] if residual else [])]
                    for role in ROLES
                }
                weights = _fit(regs["valid"], f.valid_song_factors, c.counts["valid"], metric)
                fused = _apply(weights, regs["test"], c.counts["test"])
                label = f"{prior_name} {fusion_name}{' +res' if residual else ''}"
                results[label] = _score(c, fused)
                if not residual:
                    renormed = np.where(cold[:, None], fused, _unit(fused) * length["test"])
                    results[f"{label} renorm"] = _score(c, renormed)
    results.update(_map_fits(c, priors, length))

    # diagnostics: the fusion fitted on the test songs themselves; the true lengths
    for prior_name in ("mean0", "knn20"):
        regs = [c.cnn["test"], priors[prior_name]["test"]]
        weights = _fit(regs, f.test_song_factors, c.counts["test"], metrics["ls_score"])
        results[f"oracle-fit {prior_name} ls_score"] = _score(
            c, _apply(weights, regs, c.counts["test"])
        )
    norms = np.linalg.norm(f.test_song_factors, axis=1, keepdims=True)
    hybrid = c.predictions["models"]["hybrid"]
    results["oracle-length report hybrid"] = _score(c, _unit(hybrid) * norms)
    for name in ("hybrid", "artist"):
        results[f"report {name}"] = _score(c, c.predictions["models"][name])
    results["upper_bound"] = _score(c, f.test_song_factors)
    return results


def _map_fits(
    c: Context, priors: dict[str, dict[str, np.ndarray]], length: dict[str, np.ndarray]
) -> dict[str, Scores]:
    """`(1 - w) prior / mean|prior| + w cnn / mean|cnn|`, `w` in 0, 0.1, ..., 1 chosen by
    validation mAP, optionally rescaled to the artist's mean song length."""
    f = c.data.factorization
    relevance = c.data.valid_relevance[:, np.flatnonzero(c.valid_ok)].tocsr()
    candidates = {
        "unitmean": priors["unitmean"],
        "mean0": priors["mean0"],
        **{
            f"artist_knn t={t:g}": {
                role: _artist_knn(c, role, priors["mean0"][role], t) for role in ROLES
            }
            for t in (0.1, 0.3)
        },
    }
    out = {}
    for name, prior in candidates.items():
        for renorm in (False, True):

            def fuse(role: str, w: float, prior=prior, renorm=renorm) -> np.ndarray:
                fused = (1 - w) * prior[role] / np.linalg.norm(prior["valid"], axis=1).mean()
                fused += w * c.cnn[role] / np.linalg.norm(c.cnn["valid"], axis=1).mean()
                if renorm:
                    fused = _unit(fused) * length[role]
                cold = c.counts[role] == 0
                fused[cold] = c.cnn[role][cold]
                return fused.astype(np.float32)

            by_w = {
                w: ranking_metrics(f.user_factors, fuse("valid", w)[c.valid_ok], relevance).map
                for w in np.round(np.linspace(0, 1, 11), 2)
            }
            best = max(by_w, key=by_w.__getitem__)
            label = f"map-fit {name}{' renorm' if renorm else ''} (w {best:g})"
            out[label] = _score(c, fuse("test", best))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    for run in args.runs:
        results = analyse(run)
        cnn, upper = results["cnn"]["cold_track"][0], results["upper_bound"]["cold_track"][0]
        print(f"{run}  mAP@500/AUC; gap: share of the cnn -> upper_bound mAP on cold tracks")
        for name, by_kind in results.items():
            cells = "  ".join(f"{k} {m:.4f}/{a:.4f}" for k, (m, a) in by_kind.items())
            gap = (by_kind["cold_track"][0] - cnn) / (upper - cnn)
            print(f"  {name:36s} {cells}  gap {gap:+.1%}")


if __name__ == "__main__":
    main()
