"""Throughput of the audio front end (PyAV decode + LogMel) beside librosa, one process.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/frontend.py [--audio-dir DIR] [--repeats N]

Both pipelines read the real clips of `tests/assets/audio/`, in one run, interleaved, with
one thread each: ours is `audio.frontend.log_mel` (decode, resample to 22050 Hz mono,
checks, 128-band log-mel, n_fft 1024, hop 512); librosa's is `librosa.load(sr=22050,
mono=True)` + `librosa.feature.melspectrogram` with the same parameters + `np.log`.
Decoding alone (each side's floor) is timed too. A clip is timed `--repeats` times and
the fastest pass counts, so that other work on a shared machine weighs less. Files that
either side cannot turn into a mel are left out of the comparison and named.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from audio.config import FRONT_END
from audio.decode import decode_audio
from audio.frontend import log_mel

REPO_ROOT = Path(__file__).resolve().parents[1]


def librosa_load(path: Path) -> np.ndarray:
    samples, _ = librosa.load(path, sr=FRONT_END.sample_rate, mono=True)
    return samples


def librosa_log_mel(path: Path) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=librosa_load(path),
        sr=FRONT_END.sample_rate,
        n_fft=FRONT_END.n_fft,
        hop_length=FRONT_END.hop_length,
        n_mels=FRONT_END.n_mels,
    )
    return np.log(mel + FRONT_END.log_offset)


PIPELINES: dict[str, Callable[[Path], object]] = {
    "ours: decode (PyAV)": decode_audio,
    "ours: decode + log-mel": log_mel,
    "librosa: load": librosa_load,
    "librosa: load + melspectrogram": librosa_log_mel,
}


def usable(files: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """The files both full pipelines turn into a mel; the others with why (a warm-up too)."""
    kept, left_out = [], {}
    for path in files:
        try:
            with warnings.catch_warnings():  # librosa warns as it falls back to audioread
                warnings.simplefilter("ignore")
                log_mel(path)
                librosa_log_mel(path)
        except Exception as error:  # either library's refusal, reported, not fatal
            left_out[path.name] = f"{type(error).__name__} {error}".strip()
        else:
            kept.append(path)
    return kept, left_out


def time_pipelines(files: list[Path], repeats: int) -> dict[str, float]:
    """Seconds per pipeline for all `files`: per file the fastest of `repeats`, summed."""
    best = {name: np.full(len(files), np.inf) for name in PIPELINES}
    for _ in range(repeats):
        for index, path in enumerate(files):
            for name, pipeline in PIPELINES.items():
                started = time.perf_counter()
                pipeline(path)
                best[name][index] = min(best[name][index], time.perf_counter() - started)
    return {name: float(seconds.sum()) for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-dir", type=Path, default=REPO_ROOT / "tests" / "assets" / "audio")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    console = Console()

    files = sorted(p for p in args.audio_dir.iterdir() if p.suffix != ".md" and p.is_file())
    files, left_out = usable(files)
    audio_seconds = sum(decode_audio(path).seconds for path in files)
    console.print(
        f"{len(files)} clips, {audio_seconds:.1f} s of audio, best of {args.repeats},"
        f" 1 thread (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}),"
        f" {os.cpu_count()} cores"
    )
    for name, why in left_out.items():
        console.print(f"  left out {name}: {why}")
    seconds = time_pipelines(files, args.repeats)

    table = Table("pipeline", "seconds", "files/s", "audio s/s", "ours faster by")
    pairs = {
        "ours: decode (PyAV)": "librosa: load",
        "ours: decode + log-mel": "librosa: load + melspectrogram",
    }
    for name, total in seconds.items():
        ratio = f"{seconds[pairs[name]] / total:.2f}x" if name in pairs else ""
        table.add_row(
            name,
            f"{total:.3f}",
            f"{len(files) / total:.1f}",
            f"{audio_seconds / total:,.0f}",
            ratio,
        )
    console.print(table)


if __name__ == "__main__":
    main()
