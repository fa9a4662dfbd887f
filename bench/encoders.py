"""Every content encoder side by side on one world (issue #26).

    python -m bench.encoders RUN [--out DIR] [--encoder NAME ...] [--epochs N]
        [--crops-per-song N] [--max-minutes M]

`RUN` holds a factorization of a world (`coldstart factorize WORLD --run RUN`). For each
encoder of `training.encoders.available_encoders()` (or those named), in one process on the
same factorization and split: cache the world's mels for its front end, train it into
`DIR/<name>/` (CNN only; the same epochs and crops for all), evaluate it, and time the
embedding of a 30-s clip through its front end and `embed_mel` (median of 5, torch's
threads as set).
Prints, per encoder, its mAP@500 / AUC on all test songs, cold tracks and cold artists,
its weights (trainable ones in brackets), training seconds and embedding milliseconds,
each beside the ratio to the first encoder's. An encoder whose trained weights cannot be
had (`EncoderWeightsError`: offline, no cache) is reported as skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from artifacts.run_layout import FACTORIZATION_DIR, SPLIT_DIR
from audio.cache import featurize_dataset
from evaluation.report import evaluate_run
from factorization.run import dataset_root_of, load_factorization
from training.checkpoint import load_encoder
from training.encoder_fit import CNNSettings
from training.encoders import available_encoders, default_front_end
from training.encoders.base import ContentEncoder, EncoderWeightsError
from training.run import train_run
from training.run_data import TrainingError

CLIP_SECONDS = 30.0
# The report's tables: all test songs, then each kind the split records (when it has songs).
KINDS = ("all", "cold_track", "cold_artist")


def embed_ms(encoder: ContentEncoder, seconds: float = CLIP_SECONDS, repeats: int = 5) -> float:
    """Median milliseconds from a `seconds`-long waveform to its factors and content
    embedding (front end and one `embed_mel` pass; no decoding)."""
    generator = torch.Generator().manual_seed(0)
    clip = 0.1 * torch.randn(int(seconds * encoder.config.sample_rate), generator=generator)
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            encoder.embed_mel(encoder.front_end(clip))
            times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def measure(run: Path, out: Path, name: str, settings: CNNSettings) -> dict[str, Any] | str:
    """Train, evaluate and time `name` on `run`'s factorization in `out/name`; the row, or
    why it was skipped."""
    dataset = dataset_root_of(load_factorization(run), None)
    featurize_dataset(dataset, config=default_front_end(name), progress=False)
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    for part in (FACTORIZATION_DIR, SPLIT_DIR):  # the split names each test song's kind
        if (run / part).is_dir():
            shutil.copytree(run / part, folder / part)
    started = time.perf_counter()
    try:
        train_run(
            folder,
            dataset_root=dataset,
            cnn=settings.for_encoder(name),
            linear=None,
            kmeans=None,
            hybrid=False,
            progress=False,
        )
    except TrainingError as error:
        if isinstance(error.__cause__, EncoderWeightsError):
            return f"skipped: {error}"
        raise
    seconds = time.perf_counter() - started
    report = evaluate_run(folder, progress=False, dataset_root=dataset)
    tables = {"all": report, **report.get("kinds", {})}
    encoder = load_encoder(folder / "models" / "cnn")
    return {
        "scores": {kind: tables[kind]["models"]["cnn"] for kind in KINDS if kind in tables},
        "weights": sum(p.numel() for p in encoder.parameters()),
        "trainable": sum(p.numel() for p in encoder.parameters() if p.requires_grad),
        "train_s": seconds,
        "embed_ms": embed_ms(encoder),
    }


def table(rows: dict[str, dict[str, Any] | str]) -> list[str]:
    """The rows as printed lines; ratios to the first measured encoder."""
    measured = {name: row for name, row in rows.items() if isinstance(row, dict)}
    base = next(iter(measured.values()), None)
    titles = "".join(f"{kind.replace('_', '-') + ' mAP/AUC':>20s} " for kind in KINDS)
    lines = [
        f"{'encoder':12s} {titles}{'weights (trainable)':>22s} {'train s':>14s}"
        f" {'embed 30 s, ms':>16s}"
    ]
    for name, row in rows.items():
        if not isinstance(row, dict) or base is None:
            lines.append(f"{name:12s} {row}")
            continue
        scores = row["scores"]
        cells = [
            (f"{scores[k]['map']:.4f}/{scores[k]['auc']:.4f}" if k in scores else "-").rjust(20)
            for k in KINDS
        ]
        weights = f"{row['weights']:,} ({row['trainable']:,})".rjust(22)
        train = f"{row['train_s']:.0f} ({row['train_s'] / base['train_s']:.1f}x)".rjust(14)
        embed = f"{row['embed_ms']:.0f} ({row['embed_ms'] / base['embed_ms']:.1f}x)".rjust(16)
        lines.append(f"{name:12s} {' '.join(cells)} {weights} {train} {embed}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="A run folder holding a factorization.")
    parser.add_argument("--out", type=Path, default=None, help="Default: RUN/bench-encoders.")
    parser.add_argument("--encoder", action="append", choices=available_encoders())
    parser.add_argument("--epochs", type=int, default=CNNSettings.epochs)
    parser.add_argument("--crops-per-song", type=int, default=CNNSettings.crops_per_song)
    parser.add_argument("--max-minutes", type=float, default=CNNSettings.max_minutes)
    args = parser.parse_args()
    out = args.out or args.run / "bench-encoders"
    settings = dataclasses.replace(
        CNNSettings(),
        epochs=args.epochs,
        crops_per_song=args.crops_per_song,
        max_minutes=args.max_minutes,
    )
    rows: dict[str, dict[str, Any] | str] = {}
    for name in args.encoder or available_encoders():
        rows[name] = measure(args.run, out, name, settings)
        print(f"{name}: {json.dumps(rows[name])}", flush=True)
    print(f"\n{args.run}: {args.epochs} epochs x {args.crops_per_song} crops a song")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
