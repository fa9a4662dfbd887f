"""A warm night's factorize with last night's regularization reused, beside the same night
searching it again (`coldstart pipeline --regularization auto`).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.warm_factorize --fraction 0.01 0.1

For each fraction, a listens file of Taste Profile shape scaled by it (48,373,586 listens at
1.0; `bench.load_listens.generate`, kept under `--data` and reused) gets a first night's
factorize (`factorization.run.factorize_run`, the nightly run's step: the regularization
searched, a cold start), then the second night's, warm-started from the first night's
factors and on its test songs as the nightly run does, `--repeat` times each way, taking
turns: "searched" (`"auto"`: four values x 5 iterations, then the fit) and "reused" (the
first night's chosen lambda, only the fit); `--reused-only`: the reused ones alone (at 1.0,
where a searched night costs some 20 minutes and the rehearsal measured one). Prints the
seconds, the ratio reused / searched, and that ratio applied to `--full-searched-s`, a warm
night's searched factorize measured at 100% (default: BENCHMARKS.md's 1,260.2 s, the third
100% rehearsal's second night).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.load_listens import TASTE_PROFILE_LISTENS, generated

FULL_SEARCHED_S = 1260.2  # BENCHMARKS.md: the 100% second night's factorize, searched
# Held-out shares of the songs: the rehearsal holds out only songs with audio (2,000 of 386k),
# so nearly every listen trains WMF; these keep it so without audio files.
HELD_OUT_FRACTION = 0.002


def factorize_seconds(
    dataset: Path, run: Path, regularization: float | Literal["auto"], warm_from: Path | None
) -> tuple[float, dict[str, Any]]:
    """One nightly factorize of `dataset` into `run` (emptied first), warm-started from the
    factorization in `warm_from` on its test songs: (seconds, the manifest)."""
    from factorization.run import factorize_run, load_factorization
    from factorization.warm_start import WarmStart
    from factorization.wmf import WMFParams

    shutil.rmtree(run, ignore_errors=True)
    warm, test_songs = None, None
    if warm_from is not None:
        previous = load_factorization(warm_from)
        roles = (previous.song_factors, previous.valid_song_factors, previous.test_song_factors)
        warm = WarmStart(
            "first-night",
            previous.user_ids,
            previous.user_factors,
            previous.song_ids + previous.valid_song_ids + previous.test_song_ids,
            np.concatenate(roles),
        )
        run.mkdir(parents=True)
        test_songs = run / "test_songs.txt"
        test_songs.write_text("".join(f"{song}\n" for song in previous.test_song_ids))
    params = WMFParams(regularization=regularization)
    started = time.perf_counter()
    manifest = factorize_run(
        dataset,
        run,
        params,
        test_songs_file=test_songs,
        test_fraction=HELD_OUT_FRACTION,
        valid_fraction=HELD_OUT_FRACTION,
        cold_artist_fraction=HELD_OUT_FRACTION,
        progress=False,
        warm_start=warm,
    )
    return time.perf_counter() - started, manifest


def measure_fraction(fraction: float, args: argparse.Namespace) -> dict[str, Any]:
    rows = round(TASTE_PROFILE_LISTENS * fraction)
    dataset = generated(Path(args.data) / f"listens-{rows}", rows, args.seed)
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory(dir=args.data) as scratch:
        first = Path(scratch) / "first"
        first_s, first_manifest = factorize_seconds(dataset, first, "auto", None)
        chosen = first_manifest["parameters"]["regularization"]
        print(f"  {rows:,} listens: first night {first_s:.1f} s, lambda {chosen:g}", flush=True)
        seconds: dict[str, list[float]] = {"searched": [], "reused": []}
        if args.reused_only:
            del seconds["searched"]
        for _ in range(args.repeat):
            for name in seconds:
                regularization = chosen if name == "reused" else "auto"
                spent, manifest = factorize_seconds(
                    dataset, Path(scratch) / "second", regularization, first
                )
                if (manifest["regularization_search"] is None) != (name == "reused"):
                    raise SystemExit(f"the {name} night did not do what it says")
                seconds[name].append(round(spent, 2))
                print(f"    second night, {name}: {spent:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    ratio = medians["reused"] / medians["searched"] if "searched" in medians else None
    return {
        "fraction": fraction,
        "listens": first_manifest["counts"]["train_listens"],
        "first_night_s": round(first_s, 2),
        "lambda": chosen,
        "seconds": seconds,
        "median_s": {name: round(value, 2) for name, value in medians.items()},
        "reused_over_searched": None if ratio is None else round(ratio, 3),
        "projected_full_reused_s": None
        if ratio is None
        else round(ratio * args.full_searched_s, 1),
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
    }


def table(results: list[dict[str, Any]], full_searched_s: float) -> str:
    lines = [
        "| fraction | training listens | searched s | reused s | reused / searched |"
        f" 100% reused, from {full_searched_s:,.0f} s searched | load before, after |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in results:
        searched = ", ".join(f"{s:.1f}" for s in size["seconds"].get("searched", [])) or "-"
        reused = ", ".join(f"{s:.1f}" for s in size["seconds"]["reused"])
        ratio, projected = size["reused_over_searched"], size["projected_full_reused_s"]
        lines.append(
            f"| {size['fraction']} | {size['listens']:,} | {searched} | {reused} |"
            f" {'-' if ratio is None else f'{ratio:.2f}'} |"
            f" {'-' if projected is None else f'{projected:,.0f} s'} |"
            f" {size['load_before'][0]:.1f}, {size['load_after'][0]:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, nargs="+", default=[0.01])
    parser.add_argument("--repeat", type=int, default=2, help="second nights each way")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-searched-s", type=float, default=FULL_SEARCHED_S)
    parser.add_argument(
        "--reused-only",
        action="store_true",
        help="only the reused second nights: at 100%% the searched one is the rehearsal's",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "coldstart-bench",
        help="folder of the generated listens (kept, reused)",
    )
    args = parser.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    results = [measure_fraction(fraction, args) for fraction in args.fraction]
    (args.data / "warm-factorize-results.json").write_text(json.dumps(results, indent=2))
    print(table(results, args.full_searched_s))
    return results


if __name__ == "__main__":
    main()
