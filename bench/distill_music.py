"""Real music a student may distil its teacher on: freely licensed Debian game soundtracks.

A `student` (`training.encoders.student`) learns to hear like its teacher from audio alone
(the teacher needs no listens), so it may distil on any audio that may be used freely, not
only the world's synthetic songs. This fetches, at run time, the soundtracks of Debian
packages (section games, in main) that are neither those of the real-music check
(`bench.real_music.PACKAGES`) nor the ten kept for an independent check (`KEPT`), as that
check does (`apt-get download` + `dpkg-deb -x` into an ignored folder, never committed),
and cuts each track of at least `MIN_TRACK_SECONDS` into `EXCERPTS_PER_TRACK` excerpts of
`EXCERPT_SECONDS` (the world's clip length), at 1/4, 1/2 and 3/4 of it, written as a
dataset folder's `audio/<package>-<index of the file in the package>-<part>.wav` (22.05
kHz mono), which `coldstart featurize` caches and `coldstart train --encoder student
--distill-audio FOLDER` distils on. (BENCHMARKS.md: 279 excerpts from 93 tracks.)

    python -m bench.distill_music --folder data/distill_music
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audio.decode import decode_audio
from bench.real_music import EXTENSIONS, unpack, write_excerpt

# Kept for an independent check of the real-music result (issue #26): never distilled on.
KEPT = (
    "asc-music",
    "drascula-music",
    "fretsonfire-songs-muldjord",
    "fretsonfire-songs-sectoid",
    "hyperrogue-music",
    "planetblupi-music-ogg",
    "pushover-data",
    "singularity-music",
    "warzone2100-music",
    "wesnoth-1.16-music",
)
PACKAGES = (
    "neverball-data",
    "lincity-ng-data",
    "starfighter-data",
    "lugaru-data",
    "pingus-data",
    "alienblaster-data",
    "flare-game",
    "freedroidrpg-data",
    "torus-trooper-data",
    "rrootage-data",
    "tumiki-fighters-data",
    "gunroar-data",
    "parsec47-data",
    "titanion-data",
    "mu-cade-data",
    "noiz2sa-data",
)
EXCERPT_SECONDS = 12.0
MIN_TRACK_SECONDS = 20.0
TRACKS_PER_PACKAGE = 25
EXCERPTS_PER_TRACK = 3


def fetch(folder: Path) -> list[Path]:
    """The excerpts under `folder/audio/` (made once), up to `TRACKS_PER_PACKAGE` a package."""
    made = []
    for package in PACKAGES:
        files = sorted(p for p in unpack(package, folder).rglob("*") if p.suffix in EXTENSIONS)
        count = 0
        for index, track in enumerate(files):
            outs = [
                folder / "audio" / f"{package}-{index:03d}-{part}.wav"
                for part in range(EXCERPTS_PER_TRACK)
            ]
            if not all(out.is_file() for out in outs):
                decoded = decode_audio(track)
                if decoded.seconds < MIN_TRACK_SECONDS:
                    continue
                for part, out in enumerate(outs):
                    write_excerpt(
                        decoded, out, EXCERPT_SECONDS, (part + 1) / (EXCERPTS_PER_TRACK + 1)
                    )
            made += outs
            count += 1
            if count == TRACKS_PER_PACKAGE:
                break
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("data/distill_music"))
    args = parser.parse_args()
    excerpts = fetch(args.folder)
    print(f"{len(excerpts)} excerpts of {EXCERPT_SECONDS:g} s in {args.folder / 'audio'}")


if __name__ == "__main__":
    main()
