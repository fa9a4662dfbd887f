"""Compare CNN training variants and a CNN + linear ensemble on finished runs (issue #16).

    python -m bench.cnn_variants RUN [RUN ...]

For each run (factorized, trained with cnn, linear and hybrid, evaluated) prints the
report's mAP@500 / AUC of cnn, linear and hybrid on all test songs and per kind, and the
AUC gap closed by the cnn; then the post-hoc ensemble `w * cnn + (1 - w) * linear`, `w`
chosen on the validation songs' mAP (grid 0, 0.1, ..., 1), scored on the test songs the
report's way. A variant is a run trained with other settings on the same factorization:
compare its line with the baseline's, on both world seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from corpus.split import load_split
from evaluation.report import load_predictions
from ranking.metrics import ranking_metrics
from training.baseline import LinearBaseline
from training.checkpoint import load_encoder
from training.inference import predict_cached
from training.run_data import load_run_data, ranking_scorer

WEIGHTS = np.round(np.linspace(0.0, 1.0, 11), 2)


def _report_lines(run: Path) -> list[str]:
    report = json.loads((run / "report.json").read_text())
    lines = []
    for kind, table in [("all", report), *report.get("kinds", {}).items()]:
        models = table["models"]
        cells = "  ".join(
            f"{name} {models[name]['map']:.4f}/{models[name]['auc']:.4f}"
            for name in ("upper_bound", "hybrid", "cnn", "artist", "linear")
            if name in models
        )
        gap = table["gap_closed"]["cnn"]["auc"]
        lines.append(f"  {kind:11s} {cells}  cnn AUC gap closed {gap:.1%}")
    return lines


def _ensemble(run: Path) -> str:
    data = load_run_data(run)
    f = data.factorization
    valid_ids, valid_rows = data.cached(f.valid_song_ids)
    encoder = load_encoder(run / "models" / "cnn", data.cache.config)
    linear = LinearBaseline.load(run / "models" / "linear", data.cache.config)
    valid_cnn = predict_cached(encoder, data.cache, valid_ids)
    valid_linear = linear.predict([data.cache.load(song) for song in valid_ids])
    score = ranking_scorer(data, valid_rows)
    by_weight = {w: score(w * valid_cnn + (1 - w) * valid_linear) for w in WEIGHTS}
    best = max(by_weight, key=by_weight.__getitem__)

    predictions = load_predictions(run)
    blend = best * predictions["models"]["cnn"] + (1 - best) * predictions["models"]["linear"]
    kinds = np.array(load_split(run).test_kinds or ["all"] * blend.shape[0])
    cells = []
    for kind in ("all", "cold_track", "cold_artist"):
        columns = np.arange(blend.shape[0]) if kind == "all" else np.flatnonzero(kinds == kind)
        relevance = sp.csr_array(predictions["relevance"][:, columns])
        users = np.flatnonzero(np.diff(relevance.indptr) > 0)
        if columns.size < 2 or users.size == 0:
            continue
        metrics = ranking_metrics(
            predictions["user_factors"][users], blend[columns], relevance[users], k=500
        )
        cells.append(f"{kind} {metrics.map:.4f}/{metrics.auc:.4f}")
    return f"  ensemble w_cnn={best:g} (valid mAP {by_weight[best]:.4f}): " + "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--no-ensemble", action="store_true", help="only the report's rows")
    args = parser.parse_args()
    for run in args.runs:
        print(f"{run}  (mAP@500/AUC)")
        print("\n".join(_report_lines(run)))
        if not args.no_ensemble:
            print(_ensemble(run))


if __name__ == "__main__":
    main()
