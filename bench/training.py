"""Benchmark: encoder training throughput, and inference per clip split into decode / mel / CNN.

On the real recordings in `tests/assets/audio/` (mel-cached into a temporary dataset folder,
behind the encoder's own front end):

- training: windows/s of a full step (forward, MSE, backward, Adam) of an encoder at its
  default sizes (`--encoder`, default the default encoder) on 3-second crops, beside
  windows/s of the crop loader alone (memmapped float16 cache -> float32 batch, in
  process), on a first pass (opening every song's memmap) and a later one, i.e. how much
  a step's time the data loading adds (`--cache` crops from another mel cache, e.g. the
  demo world's);
- inference: per clip, median seconds of decode (the floor: what any model must pay),
  log-mel (the encoder's front end), and the CNN on the whole clip, with the end-to-end
  serving path (decode -> `encoder.forward(waveform)`) and its ratio to decode alone.

    .venv/bin/python -m bench.training --steps 30 --repeats 5 [--encoder NAME]
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: its folder would shadow the `training` package
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from audio.cache import MelCache, default_cache_dir, featurize_dataset  # noqa: E402
from audio.config import FrontEndConfig  # noqa: E402
from audio.decode import decode_audio  # noqa: E402
from training.datamodule import CropDataset, CropSampler, stacked  # noqa: E402
from training.encoders import (  # noqa: E402
    DEFAULT_ENCODER,
    available_encoders,
    build_encoder,
    default_front_end,
)


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of `repeats` calls of `action` (after one warm-up call)."""
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cached_clips(audio_dir: Path, workdir: Path, config: FrontEndConfig) -> MelCache:
    """Mel-cache the recordings of `audio_dir` for the front end `config`, through a dataset
    folder of symlinks."""
    (workdir / "audio").mkdir()
    for file in sorted(audio_dir.iterdir()):
        if file.suffix[1:] in ("wav", "flac", "ogg", "opus", "mp3", "m4a"):
            (workdir / "audio" / file.name).symlink_to(file)
    featurize_dataset(workdir, config=config, workers=1, progress=False)
    return MelCache.open(default_cache_dir(workdir, config))


def bench_training(cache: MelCache, name: str, batch_size: int, steps: int) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name).train()
    cache.config.require_same(encoder.config, what=f"{name}'s front end")
    songs = cache.song_ids
    window = cache.config.window_frames
    n_frames = np.array([cache.n_frames(song) for song in songs])
    factors = np.random.default_rng(0).normal(size=(len(songs), encoder.dims.n_factors))
    dataset = CropDataset(cache, songs, factors.astype(np.float32), window)
    crops_per_song = max(1, -(-steps * batch_size // len(songs)))
    sampler = CropSampler(n_frames, window, crops_per_song, seed=0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=stacked)

    def load_pass() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], float]:
        start = time.perf_counter()
        batches = list(itertools.islice(iter(loader), steps))
        return batches, steps * batch_size / (time.perf_counter() - start)

    loaded, cold_rate = load_pass()  # opens each song's memmap
    _, warm_rate = load_pass()  # memmaps already open, as in every later epoch

    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)

    def step(mel: torch.Tensor, target: torch.Tensor) -> None:
        loss = torch.nn.functional.mse_loss(encoder.forward_mel(mel), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for mel, target in loaded[:3]:  # warm-up: kernels, allocator
        step(mel, target)
    start = time.perf_counter()
    for mel, target in loaded:
        step(mel, target)
    step_rate = steps * batch_size / (time.perf_counter() - start)
    weights = sum(p.numel() for p in encoder.parameters())
    print(
        f"training: {name} ({weights:,} weights), batch {batch_size}, {steps} steps,"
        f" crops of {len(songs):,} cached songs"
    )
    print(f"  training step (fwd+bwd+Adam)  {step_rate:8.0f} windows/s")
    for name, rate in (("first pass", cold_rate), ("later passes", warm_rate)):
        print(
            f"  crop loading, {name:14} {rate:8.0f} windows/s"
            f"  (in process: +{100 * step_rate / rate:.0f}% on a step's time)"
        )


def bench_inference(audio_dir: Path, name: str, repeats: int) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name).eval()
    config = encoder.config
    print(f"inference per clip (median of {repeats}, ms):")
    print(f"  {'clip':32}{'s':>6}{'decode':>9}{'mel':>8}{'cnn':>8}{'serve':>9}{'serve/decode':>14}")
    for file in sorted(audio_dir.iterdir()):
        if file.suffix == ".md":
            continue
        samples = torch.from_numpy(decode_audio(file, config).samples)
        if samples.numel() < config.min_samples:
            continue
        mel = encoder.front_end(samples)
        with torch.inference_mode():
            decode = median_seconds(lambda f=file: decode_audio(f, config), repeats)
            log_mel = median_seconds(lambda s=samples: encoder.front_end(s), repeats)
            cnn = median_seconds(lambda m=mel: encoder.forward_mel(m), repeats)
            serve = median_seconds(
                lambda f=file: encoder(torch.from_numpy(decode_audio(f, config).samples)), repeats
            )
        seconds = samples.numel() / config.sample_rate
        print(
            f"  {file.name:32}{seconds:6.1f}{1e3 * decode:9.1f}{1e3 * log_mel:8.1f}"
            f"{1e3 * cnn:8.1f}{1e3 * serve:9.1f}{serve / decode:14.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, default=REPO_ROOT / "tests" / "assets" / "audio")
    parser.add_argument(
        "--cache", type=Path, help="mel cache to crop from (default: one made of --audio)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--encoder", choices=available_encoders(), default=DEFAULT_ENCODER)
    args = parser.parse_args()
    print(
        f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads, no GPU,"
        f" load average {os.getloadavg()[0]:.1f}"
        if not torch.cuda.is_available()
        else f"GPU {torch.cuda.get_device_name()}"
    )
    with tempfile.TemporaryDirectory() as workdir:
        cache = (
            MelCache.open(args.cache)
            if args.cache
            else cached_clips(args.audio, Path(workdir), default_front_end(args.encoder))
        )
        bench_training(cache, args.encoder, args.batch_size, args.steps)
    bench_inference(args.audio, args.encoder, args.repeats)


if __name__ == "__main__":
    main()
