"""Where the synthetic world's time goes, and the format mix before and after issue #28.

Two measurements in one run, on the same songs (the SoundFont world of `--seed`):
1. per song, serially, on the first `--profile-songs` songs: rendering (composition,
   tinysoundfont stems, pedalboard room and master) and encoding the rendered clip in the
   format each song draws, with the format mix before #28 (mostly Vorbis and MP3) and now
   (mostly FLAC and WAV);
2. `generate_world` for `--songs` songs, wall seconds, with the mix before and now (every
   core by default, as `coldstart world`).

    .venv/bin/python -m bench.world_generation --songs 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

import world.encode
from world import DEFAULT_CLIP_SECONDS
from world.catalogue import draw_catalogue
from world.encode import draw_format, encode
from world.general_midi import draw_production
from world.generate import _CATALOGUE, _FORMATS, _PRODUCTION, generate_world
from world.soundfont import render_song_soundfont

# world.encode._FORMATS before #28 (share, ext, container, codec, sample format, rates,
# channel counts, bitrates or Vorbis quality levels).
BEFORE = (
    (0.34, "ogg", "ogg", "vorbis", "fltp", (22050, 22050, 32000, 44100), (2,), (3, 4, 5)),
    (0.16, "flac", "flac", "flac", "s16", (16000, 22050, 22050, 32000), (1, 1, 2), (0,)),
    (0.22, "mp3", "mp3", "libmp3lame", "fltp", (22050, 32000, 44100), (1, 2), (96000, 128000)),
    (0.16, "opus", "opus", "libopus", "flt", (48000, 24000, 16000), (1, 2), (48000, 64000)),
    (0.04, "wav", "wav", "pcm_s16le", "s16", (16000, 22050, 44100), (1, 1, 2), (0,)),
    (0.08, "m4a", "ipod", "aac", "fltp", (22050, 44100, 48000), (2,), (96000, 128000)),
)
MIXES = {"before #28": BEFORE, "now": world.encode._FORMATS}


def per_song(n_songs: int, seed: int, clip_seconds: float) -> None:
    """Serial seconds per song: rendering, then encoding with each format mix."""
    artists, songs = draw_catalogue(np.random.default_rng([seed, _CATALOGUE]), n_songs)
    rng = np.random.default_rng([seed, _PRODUCTION])
    productions = [draw_production(rng, artist) for artist in artists]
    first = songs[0]
    render_song_soundfont(first, artists[first.artist], productions[first.artist], 3.0)  # the sf2
    started = time.perf_counter()
    clips = [
        render_song_soundfont(song, artists[song.artist], productions[song.artist], clip_seconds)[0]
        for song in songs
    ]
    render = (time.perf_counter() - started) / n_songs
    print(f"per song, serial, {n_songs} songs x {clip_seconds:g} s:")
    print(f"  render (compose, tinysoundfont, pedalboard)   {render:6.3f} s")
    for name, table in MIXES.items():
        with mock.patch.object(world.encode, "_FORMATS", table):
            format_rng = np.random.default_rng([seed, _FORMATS])
            formats = [draw_format(format_rng) for _ in songs]
        started = time.perf_counter()
        size = sum(len(encode(clip, f, "t", "a")) for clip, f in zip(clips, formats, strict=True))
        seconds = (time.perf_counter() - started) / n_songs
        print(
            f"  encode, mix {name:<11s}                    {seconds:6.3f} s"
            f"  ({size / n_songs / 1e3:,.0f} kB a song; render + encode {render + seconds:.3f} s)"
        )


def whole_world(n_songs: int, n_users: int, seed: int, clip_seconds: float, workers: int) -> None:
    """Wall seconds of `generate_world` with each format mix."""
    print(f"generate_world, {n_songs} songs, {n_users} users, {workers} workers (wall s):")
    results = {}
    for name, table in MIXES.items():
        out = Path(tempfile.mkdtemp(prefix="world-generation-"))
        try:
            with mock.patch.object(world.encode, "_FORMATS", table):
                started = time.perf_counter()
                summary = generate_world(
                    out / "w",
                    n_songs=n_songs,
                    n_users=n_users,
                    clip_seconds=clip_seconds,
                    seed=seed,
                    workers=workers,
                )
            results[name] = time.perf_counter() - started
        finally:
            shutil.rmtree(out)
        print(
            f"  mix {name:<11s} {results[name]:7.1f} s  {summary.audio_bytes / 1e6:,.0f} MB audio"
        )
    before, now = results.values()
    print(f"  before / now: {before / now:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=200)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--profile-songs", type=int, default=40)
    parser.add_argument("--clip-seconds", type=float, default=DEFAULT_CLIP_SECONDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")
    per_song(args.profile_songs, args.seed, args.clip_seconds)
    whole_world(args.songs, args.users, args.seed, args.clip_seconds, args.workers)
    print(f"load average {os.getloadavg()[0]:.1f} (1 min)")


if __name__ == "__main__":
    main()
