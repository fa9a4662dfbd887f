"""Cost of the teacher (MSD_musicnn in PyTorch) beside today's CNN, on 1 and 2 threads.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.musicnn_teacher [--repeats N]

In one process, the fastest of `--repeats` passes counting, wall time and this process's
CPU time (on a shared machine the CPU time is the figure that carries over):

- the network alone per 3-s patch (187 frames), in batches of 1, 4, 16 and 64;
- a 30-s clip (16 kHz; 1,876 frames, 10 patches): its musicnn log-mel, the network over the
  whole clip in one pass, over its 10 patches in one batch, and patch by patch; beside it
  today's CNN (`dieleman` with its default sizes) on the same 30 s
  at its own front end (22.05 kHz log-mel + the network, one pass);
- what teacher features for distillation would cost `make demo`'s world (3,000 songs of
  12 s: 4 patches a song) in CPU seconds at the cheapest batch size, for 1, 2 and 4
  patches a song.

The weights are the converted MSD_musicnn when cached (`coldstart teacher fetch`), else
random ones of the same shapes (the same cost).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from rich.console import Console
from rich.table import Table

from audio.config import FRONT_END
from audio.mel import LogMel
from training.encoders import build_encoder
from training.encoders.musicnn import MUSICNN_FRONT_END, Musicnn, clip_patches
from training.encoders.musicnn_weights import MusicnnWeightsError, load_weights

THREADS = (1, 2)
BATCHES = (1, 4, 16, 64)
CLIP_SECONDS = 30
DEMO_SONGS = 3000


@dataclass(frozen=True)
class Cost:
    """Seconds of one call: `wall`, and `cpu`, this process's CPU time (all its threads),
    which a shared machine's other work inflates far less than the wall time."""

    wall: float
    cpu: float


def best_cost(run: Callable[[], object], repeats: int) -> Cost:
    """The fastest wall and CPU time, each over `repeats` calls of `run` after a warm-up."""
    run()
    wall = cpu = float("inf")
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return Cost(wall, cpu)


def teacher() -> tuple[Musicnn, str]:
    try:
        return load_weights(fetch=False).network(), "MSD_musicnn weights"
    except MusicnnWeightsError:
        torch.manual_seed(0)
        return Musicnn(tuple(f"tag{i}" for i in range(50))).eval(), "random weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    console = Console()
    network, weights = teacher()
    front_end = LogMel(MUSICNN_FRONT_END)
    today = build_encoder("dieleman").eval()
    generator = torch.Generator().manual_seed(0)
    clip = torch.randn(CLIP_SECONDS * MUSICNN_FRONT_END.sample_rate, generator=generator) * 0.1
    clip_today = torch.randn(CLIP_SECONDS * FRONT_END.sample_rate, generator=generator) * 0.1
    patch_batches = {b: torch.rand(b, 96, 187, generator=generator) * 4 for b in BATCHES}
    with torch.inference_mode():
        mel = front_end(clip)
        patches = clip_patches(mel[0])
    console.print(
        f"{weights}; best of {args.repeats}; load {os.getloadavg()[0]:.2f} "
        f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on {os.cpu_count()} cores; "
        f"30-s clip: {mel.shape[2]} frames, {patches.shape[0]} patches"
    )
    patch_table = Table("threads", "batch", "wall ms/patch", "CPU ms/patch")
    clip_table = Table("threads", "30-s clip", "wall ms", "CPU ms", "CPU vs today's CNN")
    cheapest: dict[int, float] = {}  # CPU seconds a patch at the best batch size
    for threads in THREADS:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            per_batch = {
                b: best_cost(partial(network, patch_batches[b]), args.repeats) for b in BATCHES
            }
            rows = {
                "musicnn log-mel": best_cost(lambda: front_end(clip), args.repeats),
                "teacher, whole clip (1 pass)": best_cost(lambda: network(mel), args.repeats),
                "teacher, 10 patches batched": best_cost(lambda: network(patches), args.repeats),
                "teacher, patch by patch": best_cost(
                    lambda: [network(patch[None]) for patch in patches], args.repeats
                ),
                "today's CNN (log-mel + network)": best_cost(
                    lambda: today.embed_mel(today.front_end(clip_today)), args.repeats
                ),
            }
        for b, cost in per_batch.items():
            patch_table.add_row(
                str(threads), str(b), f"{1000 * cost.wall / b:.1f}", f"{1000 * cost.cpu / b:.1f}"
            )
        cheapest[threads] = min(cost.cpu / b for b, cost in per_batch.items())
        reference = rows["today's CNN (log-mel + network)"].cpu
        for name, cost in rows.items():
            clip_table.add_row(
                str(threads),
                name,
                f"{1000 * cost.wall:.0f}",
                f"{1000 * cost.cpu:.0f}",
                f"{cost.cpu / reference:.1f}x",
            )
    console.print(patch_table)
    console.print(clip_table)
    demo = Table("threads", "patches a song", f"teacher on {DEMO_SONGS:,} songs: CPU s")
    for threads, seconds in cheapest.items():
        for n_patches in (1, 2, 4):
            demo.add_row(str(threads), str(n_patches), f"{DEMO_SONGS * n_patches * seconds:.0f}")
    console.print(demo)


if __name__ == "__main__":
    main()
