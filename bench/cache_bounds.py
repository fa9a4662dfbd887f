"""What bounding the mel cache costs: bytes a song against cold-track mAP@500 (issue #30).

    python -m bench.cache_bounds WORLD [WORLD ...] [--out DIR] [--epochs N] [--max-minutes M]

A 30-s clip's log-mel at 128 bands is 330 kB in float16: 127 GB for a catalogue of 385k
songs with previews. Two bounds keep the `dieleman` CNN and change only what it hears:
a centred excerpt of each recording (`FrontEndConfig.excerpt_seconds`, in training,
evaluation and serving alike) and fewer mel bands. For each world (a folder made by
`coldstart world --clip-seconds 30`; give two seeds) the world is factorized once, then
each front end below is featurized (seconds, bytes a song on disk) and its CNN trained
and evaluated on that one factorization (`bench.encoders.measure`: same split, epochs and
crops, and the pipeline's 4-minute budget: on a busy machine a variant whose crops cost
less gets more epochs, as it would in a night). Prints a row per world and front end,
with the ratio of its mAP to the full cache's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from audio.cache import MelCache, default_cache_dir, featurize_dataset
from audio.config import FRONT_END, FrontEndConfig
from bench.encoders import measure
from factorization.run import factorize_run
from factorization.wmf import WMFParams
from training.encoder_fit import CNNSettings
from training.encoders import ARCHITECTURES
from training.encoders.dieleman import DielemanEncoder


class Excerpt15(DielemanEncoder):
    name = "dieleman-excerpt15"
    summary = "dieleman hearing the centred 15 s of each recording"
    default_front_end = dataclasses.replace(FRONT_END, excerpt_seconds=15.0)


class Excerpt6(DielemanEncoder):
    name = "dieleman-excerpt6"
    summary = "dieleman hearing the centred 6 s (two windows) of each recording"
    default_front_end = dataclasses.replace(FRONT_END, excerpt_seconds=6.0)


class Bands64(DielemanEncoder):
    name = "dieleman-64bands"
    summary = "dieleman behind 64 mel bands"
    default_front_end = dataclasses.replace(FRONT_END, n_mels=64)


VARIANTS: dict[str, type[DielemanEncoder] | None] = {
    "dieleman": None,  # the full cache: the default encoder as it is
    Excerpt15.name: Excerpt15,
    Excerpt6.name: Excerpt6,
    Bands64.name: Bands64,
}


def register() -> None:
    """Add the variants to the architecture table (this process only)."""
    for name, variant in VARIANTS.items():
        if variant is not None:
            ARCHITECTURES[name] = f"{__name__}:{variant.__name__}"


def cache_row(world: Path, config: FrontEndConfig) -> dict[str, Any]:
    """Featurize `world` behind `config`: seconds, songs, MiB and kB a song on disk."""
    started = time.perf_counter()
    featurize_dataset(world, config=config, workers=2, progress=False)
    seconds = time.perf_counter() - started
    cache = MelCache.open(default_cache_dir(world, config))
    n_bytes = sum(path.stat().st_size for path in cache.cache_dir.glob("*.npy"))
    return {
        "featurize_s": round(seconds, 1),
        "songs": len(cache),
        "cache_mib": round(n_bytes / 2**20, 1),
        "kb_per_song": round(n_bytes / max(1, len(cache)) / 1e3, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("worlds", type=Path, nargs="+", help="Worlds with 30-s clips.")
    parser.add_argument("--out", type=Path, default=None, help="Default: WORLD/../bench-cache.")
    parser.add_argument("--epochs", type=int, default=CNNSettings.epochs)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=CNNSettings.max_minutes,
        help="Each CNN's training budget (the pipeline's by default; 0: none).",
    )
    args = parser.parse_args()
    register()
    settings = dataclasses.replace(
        CNNSettings(), epochs=args.epochs, max_minutes=args.max_minutes or None
    )
    rows: list[dict[str, Any]] = []
    for world in args.worlds:
        out = args.out or world.parent / "bench-cache"
        run = out / world.name / "run"
        factorize_run(world, run, WMFParams(), seed=0, progress=False)
        for name, variant in VARIANTS.items():
            config = FRONT_END if variant is None else variant.default_front_end
            row = {"world": world.name, "front_end": name, **cache_row(world, config)}
            measured = measure(run, out / world.name, name, settings)
            if isinstance(measured, str):
                raise SystemExit(f"{name}: {measured}")
            row |= {
                "train_s": round(measured["train_s"], 1),
                **{
                    f"{kind}_{metric}": round(scores[metric], 4)
                    for kind, scores in measured["scores"].items()
                    for metric in ("map", "auc")
                },
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        "\n| world | front end | kB a song | cache MiB | featurize s | train s"
        " | cold-track mAP@500 | cold-track AUC | all mAP@500 | mAP vs full |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        full = next(r for r in rows if r["world"] == row["world"] and r["front_end"] == "dieleman")
        cold = "cold_track_map" if "cold_track_map" in row else "all_map"
        print(
            f"| {row['world']} | {row['front_end']} | {row['kb_per_song']:,.0f}"
            f" | {row['cache_mib']:,.0f} | {row['featurize_s']:.0f} | {row['train_s']:.0f}"
            f" | {row[cold]:.4f} | {row[cold.replace('map', 'auc')]:.4f}"
            f" | {row['all_map']:.4f} | {row[cold] / full[cold]:.2f}x |"
        )


if __name__ == "__main__":
    main()
