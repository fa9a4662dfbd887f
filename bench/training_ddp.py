"""Benchmark: CNN training throughput on one process beside DDP over several.

Each run is a real Lightning fit of the default `ContentEncoder` on 3-second crops of a mel
cache (the real recordings of `tests/assets/audio/`, or `--cache`), placed by the same
`training.encoder_fit.trainer_placement` as `coldstart train`, with the same total batch
split across the processes as `train_encoder` splits it. Windows/s count the crops of every process
over the timed steps (after `--warmup` steps), measured on rank 0. Runs are given as
`N` (one process: a plain single-device fit; more: DDP) or `ddpN` (DDP even for N = 1,
the cost of the DDP machinery alone):

    .venv/bin/python -m bench.training_ddp                                  # CPU: 1 vs ddp2
    .venv/bin/python -m bench.training_ddp --accelerator gpu --runs 1 ddp1  # one GPU
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: its folder would shadow the `training` package
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from audio.cache import MelCache  # noqa: E402
from bench.training import cached_clips  # noqa: E402
from training.datamodule import MelDataModule  # noqa: E402
from training.encoder_fit import CNNSettings, quiet_lightning, trainer_placement  # noqa: E402
from training.encoders import DEFAULT_ENCODER, build_encoder, default_front_end  # noqa: E402
from training.lightning_module import ContentModel  # noqa: E402

RESULT_TAG = "training_ddp:"


class StepClock(pl.Callback):
    """Seconds from the start of training step `warmup` to the end of the fit (this rank)."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.started = 0.0
        self.seconds = 0.0

    @staticmethod
    def _settle(pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, batch_idx: int
    ) -> None:
        if batch_idx == self.warmup:
            self._settle(pl_module)
            self.started = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._settle(pl_module)
        self.seconds = time.perf_counter() - self.started


def worker(args: argparse.Namespace) -> None:
    """One run (every process of it runs this; Lightning starts the others): rank 0 prints
    a tagged JSON line with the windows/s of all processes together."""
    settings = CNNSettings(
        accelerator=args.accelerator, devices=args.processes, strategy=args.strategy
    )
    clock = StepClock(args.warmup)
    quiet_lightning()
    trainer = pl.Trainer(
        **trainer_placement(settings),
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        logger=False,
        callbacks=[clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    processes = trainer.world_size
    cache = MelCache.open(args.cache)
    window = cache.config.window_frames
    songs = [song for song in cache.song_ids if cache.n_frames(song) >= window]
    steps = args.warmup + args.steps
    # Enough crops that one epoch holds every step, on every rank.
    crops_per_song = -(-steps * args.batch_size // len(songs)) + processes
    pl.seed_everything(0, verbose=False)
    encoder = build_encoder(DEFAULT_ENCODER, config=cache.config)
    factors = np.random.default_rng(0).normal(size=(len(songs), encoder.dims.n_factors))
    datamodule = MelDataModule(
        cache,
        songs,
        factors.astype(np.float32),
        [],
        window_frames=window,
        crops_per_song=crops_per_song,
        batch_size=args.batch_size // processes,
    )
    trainer.fit(ContentModel(encoder), datamodule=datamodule)
    if trainer.is_global_zero:
        rate = args.steps * args.batch_size / clock.seconds
        result = {"processes": processes, "threads": torch.get_num_threads(), "windows_per_s": rate}
        print(RESULT_TAG, json.dumps(result), flush=True)


def run(spec: str, cache: Path, args: argparse.Namespace) -> dict[str, float]:
    """Run `spec` ("N" or "ddpN") in fresh processes; its rank 0's result."""
    strategy = "ddp" if spec.startswith("ddp") else "auto"
    processes = int(spec.removeprefix("ddp"))
    command = [sys.executable, "-m", "bench.training_ddp", "--worker", "--cache", str(cache)]
    command += ["--processes", str(processes), "--strategy", strategy]
    command += ["--accelerator", args.accelerator, "--batch-size", str(args.batch_size)]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    # As `coldstart train` runs: OpenMP threads that wait asleep (see cli/train.py).
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"run {spec} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[0].removeprefix(RESULT_TAG))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=REPO_ROOT / "tests" / "assets" / "audio")
    parser.add_argument("--cache", type=Path, help="mel cache to crop from (default: --audio's)")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--runs", nargs="+", default=["1", "2"], help="N or ddpN, in order")
    parser.add_argument("--batch-size", type=int, default=64, help="total, over all processes")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(
        f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" {gpu}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"default encoder, accelerator {args.accelerator}, total batch {args.batch_size},"
        f" {args.steps} timed steps after {args.warmup}"
    )
    with tempfile.TemporaryDirectory() as workdir:
        cache = (
            args.cache
            or cached_clips(args.audio, Path(workdir), default_front_end(DEFAULT_ENCODER)).cache_dir
        )
        results = [(spec, run(spec, cache, args)) for spec in args.runs]
    print(
        f"  {'run':8}{'processes':>10}{'threads each':>14}{'crops each':>12}"
        f"{'windows/s':>11}{'ratio':>8}"
    )
    first = results[0][1]["windows_per_s"]
    for spec, result in results:
        processes = int(result["processes"])
        rate = result["windows_per_s"]
        print(
            f"  {spec:8}{processes:>10}{int(result['threads']):>14}"
            f"{args.batch_size // processes:>12}{rate:>11.0f}{rate / first:>7.2f}x"
        )


if __name__ == "__main__":
    main()
