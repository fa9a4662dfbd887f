"""The synthetic music world: a seeded catalogue with audio, listeners, and their listens.

`generate_world` writes a dataset folder in the contract of `corpus.dataset` (listens.tsv,
songs.csv, audio/) plus `truth.json`, every generative attribute, for diagnostics and
plots only (models never read it). The same seed gives the same bytes in every file,
whatever the number of workers: each song is rendered from its own seed, and the
catalogue, the formats and the listeners come from separate streams of the world's seed.

The parts, one job each: `style` (genres, instruments, drums), `catalogue`
(artists and songs), `score` (composition), `synth` (synthesis),
`encode` (file formats), `taste` (listeners and listens). The notes are played
either on sampled General MIDI instruments (`general_midi` picks each artist's programs, kit and
production, `soundfont` renders them; the default) or, chosen explicitly, on the
additive synthesizer of `synth`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from corpus.dataset import AUDIO_DIR, AUDIO_EXTENSIONS, LISTENS_FILE, SONGS_FILE
from world import DEFAULT_CLIP_SECONDS, DEFAULT_SONGS, DEFAULT_USERS
from world.catalogue import Artist, Song, artist_truth, draw_catalogue, song_truth
from world.encode import AudioFormat, draw_format, encode
from world.general_midi import SOUND_AXES, Production, draw_production, production_sound
from world.soundfont import SoundFontMissing, render_song_soundfont, soundfont_path
from world.style import GENRES
from world.synth import render_song
from world.taste import SongFeatures, draw_listeners, draw_sound_taste, sample_listens

TRUTH_FILE = "truth.json"
TRUTH_VERSION = 1
# Independent random streams of one seed, so that e.g. more users leave the songs unchanged.
_CATALOGUE, _FORMATS, _LISTENERS, _LISTENS, _PRODUCTION, _SOUND_TASTE = 1, 2, 3, 4, 5, 6
INSTRUMENTS = ("soundfont", "synth")  # sampled GM instruments (default), additive synthesis


class WorldError(ValueError):
    """The world cannot be generated as asked (bad sizes, a folder that is not a world)."""


@dataclass(frozen=True)
class WorldSummary:
    """Counts of a generated world."""

    out: Path
    n_songs: int
    n_artists: int
    n_users: int
    n_listens: int
    total_plays: int
    unlistened_songs: int
    audio_bytes: int
    formats: dict[str, int] = field(default_factory=dict)  # "ogg/vorbis 44100 Hz stereo" -> songs

    @property
    def density(self) -> float:
        """Share of (user, song) pairs with a listen."""
        return self.n_listens / (self.n_users * self.n_songs)


@dataclass(frozen=True)
class _Job:
    song: Song
    artist: Artist
    clip_seconds: float
    audio_format: AudioFormat
    path: Path
    production: Production | None  # None: the additive synthesizer


_Rendered = tuple[int, int, list[dict[str, Any]]]  # song index, bytes written, sections


def _render(job: _Job) -> _Rendered:
    """Render, encode and write one song; returns (song index, bytes written, sections)."""
    if job.production is None:
        clip, score = render_song(job.song, job.artist, job.clip_seconds)
    else:
        clip, score = render_song_soundfont(job.song, job.artist, job.production, job.clip_seconds)
    data = encode(clip, job.audio_format, job.song.title, job.artist.name)
    job.path.write_bytes(data)
    sections = [
        {
            "kind": s.kind,
            "start": round(max(s.start - score.offset, 0.0), 3),
            "end": round(min(s.end - score.offset, job.clip_seconds), 3),
            "energy": round(s.energy, 3),
        }
        for s in score.sections
        if s.end > score.offset and s.start < score.offset + job.clip_seconds
    ]
    return job.song.index, len(data), sections


@contextlib.contextmanager
def _rendered(jobs: list[_Job], workers: int) -> Iterator[Iterator[_Rendered]]:
    """Results of the jobs in order, from this process or from a pool of `workers`.

    The pool forks its workers before anything else starts a thread (the progress bar),
    and forking needs no `if __name__ == "__main__"` guard in the caller's script.
    """
    if workers <= 1 or len(jobs) <= 1:
        yield map(_render, jobs)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    chunksize = max(1, min(8, len(jobs) // (4 * workers)))
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        yield pool.map(_render, jobs, chunksize=chunksize)


def _prepare(out: Path) -> None:
    """Create `out`, or clear a previous world in it; refuse a folder holding anything else.

    A folder is a previous world when it has truth.json, or holds nothing but world files
    (a run that stopped part-way). Only files the world writes are removed.
    """
    ours = {AUDIO_DIR, LISTENS_FILE, SONGS_FILE, TRUTH_FILE}
    if out.exists() and not out.is_dir():
        raise WorldError(f"{out}: is a file, not a folder")
    if out.exists() and not (out / TRUTH_FILE).is_file():
        strangers = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if strangers:
            raise WorldError(f"{out}: holds {strangers[0]!r}, not a world; choose another --out")
    audio = out / AUDIO_DIR
    audio.mkdir(parents=True, exist_ok=True)
    for name in (TRUTH_FILE, LISTENS_FILE, SONGS_FILE):
        (out / name).unlink(missing_ok=True)
    for file in audio.iterdir():
        if file.is_file() and file.suffix[1:] in AUDIO_EXTENSIONS:
            file.unlink()


def _format_name(audio_format: AudioFormat) -> str:
    layout = "stereo" if audio_format.channels == 2 else "mono"
    return f"{audio_format.ext}/{audio_format.codec} {audio_format.sample_rate} Hz {layout}"


def generate_world(
    out: Path,
    n_songs: int = DEFAULT_SONGS,
    n_users: int = DEFAULT_USERS,
    clip_seconds: float = DEFAULT_CLIP_SECONDS,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
    instruments: str = "soundfont",
    production_taste: float = 0.0,
) -> WorldSummary:
    """Generate a world of `n_songs` songs (clips of `clip_seconds`) and `n_users` listeners.

    `instruments` plays the notes on sampled General MIDI instruments ("soundfont", which
    needs Debian's fluid-soundfont-gm) or on the additive synthesizer ("synth"); the
    catalogue, listeners and listens are the same either way. `production_taste` > 0
    (sampled instruments only) gives listeners likes and dislikes, of that spread, of the
    artists' audible production (`general_midi.SOUND_AXES`); 0 leaves the listens as without
    it, byte for byte. `workers` processes render
    the audio (default: the CPUs this process may use); the output does not depend on it.
    Returns the world's counts.
    """
    if n_songs < 1 or n_users < 1:
        raise WorldError(f"need at least one song and one user (got {n_songs}, {n_users})")
    if clip_seconds < 3.0:
        raise WorldError(f"clips must last at least 3 s, one model window (got {clip_seconds})")
    if instruments not in INSTRUMENTS:
        raise WorldError(
            f"instruments must be one of {', '.join(INSTRUMENTS)} (got {instruments!r})"
        )
    if production_taste < 0.0 or (production_taste > 0.0 and instruments != "soundfont"):
        raise WorldError(
            "production taste must be >= 0, and > 0 only with sampled instruments (the"
            f" synthesizer renders no production; got {production_taste} with {instruments})"
        )
    if instruments == "soundfont":
        try:
            soundfont_path()
        except SoundFontMissing as error:
            raise WorldError(str(error)) from error
    out = Path(out)
    _prepare(out)
    workers = workers or len(os.sched_getaffinity(0))

    artists, songs = draw_catalogue(np.random.default_rng([seed, _CATALOGUE]), n_songs)
    format_rng = np.random.default_rng([seed, _FORMATS])
    formats = [draw_format(format_rng) for _ in songs]
    production_rng = np.random.default_rng([seed, _PRODUCTION])
    productions = [draw_production(production_rng, artist) for artist in artists]
    jobs = [
        _Job(
            song,
            artists[song.artist],
            clip_seconds,
            fmt,
            out / AUDIO_DIR / f"{song.song_id}.{fmt.ext}",
            productions[song.artist] if instruments == "soundfont" else None,
        )
        for song, fmt in zip(songs, formats, strict=True)
    ]
    sizes = [0] * n_songs
    sections: list[list[dict[str, Any]]] = [[] for _ in songs]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with _rendered(jobs, workers) as results, Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("rendering songs", total=n_songs)
        for index, size, song_sections in results:
            sizes[index], sections[index] = size, song_sections
            bar.advance(task)
        listen_task = bar.add_task("sampling listens", total=1)
        listeners = draw_listeners(
            np.random.default_rng([seed, _LISTENERS]), n_users, artists, n_songs
        )
        features = SongFeatures.of(songs)
        if production_taste > 0.0:
            taste_rng = np.random.default_rng([seed, _SOUND_TASTE])
            sound = draw_sound_taste(taste_rng, n_users, len(SOUND_AXES), production_taste)
            listeners = dataclasses.replace(listeners, sound=sound)
            features = SongFeatures.of(songs, production_sound(productions))
        users, items, plays = sample_listens(
            np.random.default_rng([seed, _LISTENS]), listeners, features
        )
        bar.advance(listen_task)

    listeners_per_song = write_listens_and_songs(
        out, listeners.user_ids, songs, artists, users, items, plays
    )
    truth = {
        "version": TRUTH_VERSION,
        "seed": seed,
        "clip_seconds": clip_seconds,
        "instruments": instruments,
        **(
            {"production_taste": production_taste, "sound_axes": list(SOUND_AXES)}
            if production_taste > 0.0
            else {}
        ),
        "genres": [g.name for g in GENRES],
        "artists": [
            artist_truth(a) | ({"production": p.truth()} if instruments == "soundfont" else {})
            for a, p in zip(artists, productions, strict=True)
        ],
        "songs": [
            song_truth(song)
            | {
                "artist_name": artists[song.artist].name,
                "file": f"{AUDIO_DIR}/{song.song_id}.{fmt.ext}",
                "format": _format_name(fmt),
                "sections": song_sections,
                "listeners": int(listeners_per_song[song.index]),
            }
            for song, fmt, song_sections in zip(songs, formats, sections, strict=True)
        ],
        "users": listeners.truth(artists),
    }
    (out / TRUTH_FILE).write_text(
        json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return WorldSummary(
        out=out,
        n_songs=n_songs,
        n_artists=len(artists),
        n_users=n_users,
        n_listens=len(users),
        total_plays=int(plays.sum()),
        unlistened_songs=int(np.sum(listeners_per_song == 0)),
        audio_bytes=sum(sizes),
        formats=dict(Counter(_format_name(f) for f in formats).most_common()),
    )


def write_listens_and_songs(
    out: Path,
    user_ids: list[str],
    songs: list[Song],
    artists: list[Artist],
    users: np.ndarray,
    items: np.ndarray,
    plays: np.ndarray,
) -> np.ndarray:
    """Write listens.tsv and songs.csv into `out`; returns the listeners of each song."""
    _write_listens(out / LISTENS_FILE, user_ids, songs, users, items, plays)
    _write_songs(out / SONGS_FILE, songs, artists)
    return np.bincount(items, minlength=len(songs))


def _write_listens(
    path: Path,
    user_ids: list[str],
    songs: list[Song],
    users: np.ndarray,
    items: np.ndarray,
    plays: np.ndarray,
) -> None:
    """listens.tsv: user_id, song_id, play_count; no header, grouped by user."""
    song_ids = np.array([song.song_id for song in songs])
    lines = [
        f"{u}\t{s}\t{p}\n"
        for u, s, p in zip(np.array(user_ids)[users], song_ids[items], plays.tolist(), strict=True)
    ]
    path.write_text("".join(lines), encoding="utf-8")


def _write_songs(path: Path, songs: list[Song], artists: list[Artist]) -> None:
    """songs.csv: song_id, title, artist with a header, quoted where the text needs it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["song_id", "title", "artist"])
    writer.writerows([song.song_id, song.title, artists[song.artist].name] for song in songs)
    path.write_text(buffer.getvalue(), encoding="utf-8")
