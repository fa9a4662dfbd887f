"""Sampled instruments: render a song's score with a General MIDI SoundFont and a studio chain.

Each part of the score (lead, solo, comp, bass, pad) is played on the GM program its artist
picked for the part's instrument, the drums on the artist's GM kit (channel 10), through
`tinysoundfont` at 22.05 kHz: one stereo stem per part, so stems can be balanced as in the
additive synthesizer (`world.synth`). The mix then goes through the artist's room
and master chain with Spotify's `pedalboard`: a Freeverb send, low and high shelves, the
song's brightness as a low-pass, a compressor and the song's energy as saturation.

Deterministic: the synthesizer is reset and flushed before every stem, so a stem's samples
do not depend on what the process rendered before (tested byte for byte).
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from world.catalogue import Artist, Song
from world.general_midi import DRUM_BANK, DRUM_CHANNEL, GM_DRUM_KEYS, Production
from world.score import PARTS, Note, Score, compose
from world.style import GENRES
from world.synth import PAN, SAMPLE_RATE, balance, finish_clip, pan_gains, pump

DEBIAN_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SOUNDFONT_PACKAGE = "fluid-soundfont-gm"
SOUNDFONT_ENV = "COLDSTART_SOUNDFONT"  # another GM SoundFont (.sf2) instead of Debian's
_FLUSH = SAMPLE_RATE // 4  # samples rendered after a reset, so released voices end
_REGISTER_PARTS = ("comp", "pad")
_MIN_KEY, _MAX_KEY = 21, 108  # a piano's range, where every GM program has samples


class SoundFontMissing(RuntimeError):
    """No General MIDI SoundFont (or no synthesizer to play it) on this machine."""


# The sampled instruments' packages, installed by the `world` extra (the image leaves them out).
WORLD_EXTRA_PACKAGES = ("tinysoundfont", "pedalboard")
WORLD_EXTRA_INSTALL = "pip install '.[world]'"


def soundfont_path() -> Path:
    """The GM SoundFont to render with: $COLDSTART_SOUNDFONT, or Debian's FluidR3_GM.

    Raises `SoundFontMissing`, naming what to install (the world extra, or Debian's package),
    when either is absent.
    """
    for package in WORLD_EXTRA_PACKAGES:
        try:
            importlib.import_module(package)
        except ImportError as error:
            raise SoundFontMissing(
                f"the sampled instruments need the world extra ({package} is missing):"
                f" `{WORLD_EXTRA_INSTALL}`, or choose --instruments synth"
            ) from error
    path = Path(os.environ.get(SOUNDFONT_ENV) or DEBIAN_SOUNDFONT)
    if not path.is_file():
        raise SoundFontMissing(
            f"no General MIDI SoundFont at {path}: install Debian's {SOUNDFONT_PACKAGE}"
            f" (`apt-get install {SOUNDFONT_PACKAGE}`, or `make soundfont`), set"
            f" ${SOUNDFONT_ENV} to a .sf2 file, or choose --instruments synth"
        )
    return path


@functools.lru_cache(maxsize=2)
def _synth(path: Path) -> tuple[Any, int]:
    """A tinysoundfont synthesizer with the SoundFont loaded (once per process), and its id."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    return synth, synth.sfload(str(path), max_voices=256)


def _velocity(velocity: np.ndarray, production: Production) -> np.ndarray:
    """MIDI velocities (1..127) of score velocities in [0, 1], through the artist's curve."""
    floor = production.velocity_floor
    curved = floor + (1.0 - floor) * np.clip(velocity, 0.0, 1.0) ** production.velocity_curve
    return np.clip(np.round(127.0 * curved), 1, 127).astype(np.int64)


def _play(
    channel: int,
    bank: int,
    preset: int,
    events: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n: int,
    tuning: float = 0.0,
) -> np.ndarray:
    """(n, 2) float32: one stem played from note events (start, end sample, key, velocity)."""
    synth, sfid = _synth(soundfont_path())
    synth.soundfonts[sfid].reset()
    synth.generate_simple(_FLUSH)
    synth.program_select(channel, sfid, bank, preset, is_drums=channel == DRUM_CHANNEL)
    if tuning:
        synth.set_tuning(channel, tuning)
    starts, ends, keys, velocities = events
    times = np.concatenate([starts, ends])
    on = np.concatenate([np.ones(len(starts), bool), np.zeros(len(ends), bool)])
    order = np.lexsort((on, times))  # at one instant, note-offs before note-ons
    out = np.zeros((n, 2), dtype=np.float32)
    now = 0
    all_keys, all_velocities = np.concatenate([keys, keys]), np.concatenate([velocities] * 2)
    for i in order:
        at = min(int(times[i]), n)
        if at > now:
            out[now:at] = np.frombuffer(synth.generate_simple(at - now), np.float32).reshape(-1, 2)
            now = at
        if at >= n:
            break
        if on[i]:
            synth.noteon(channel, int(all_keys[i]), int(all_velocities[i]))
        else:
            synth.noteoff(channel, int(all_keys[i]))
    if now < n:
        out[now:] = np.frombuffer(synth.generate_simple(n - now), np.float32).reshape(-1, 2)
    return out


def _note_events(
    notes: list[Note], production: Production, shift: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start and end samples, MIDI keys and velocities of a part's notes."""
    starts = np.round(np.array([note.start for note in notes]) * SAMPLE_RATE).astype(np.int64)
    ends = starts + np.maximum(
        1, np.round(np.array([note.duration for note in notes]) * SAMPLE_RATE).astype(np.int64)
    )
    keys = np.array([round(note.pitch) + shift for note in notes], dtype=np.int64)
    keys = np.where(keys < _MIN_KEY, keys + 12, np.where(keys > _MAX_KEY, keys - 12, keys))
    velocity = _velocity(np.array([note.velocity for note in notes]), production)
    return starts, ends, keys, velocity


class _Studio:
    """Plays one song's score on its artist's GM programs and mixes it."""

    def __init__(self, song: Song, artist: Artist, production: Production, score: Score, n: int):
        self.song, self.artist, self.production = song, artist, production
        self.score, self.n = score, n
        self.genre = GENRES[song.genre]

    def stem(self, part: str) -> np.ndarray:
        """(n, 2) one part on its GM program."""
        shift = self.production.register if part in _REGISTER_PARTS else 0
        events = _note_events(self.score.notes[part], self.production, shift)
        program = self.production.programs[self.score.instrument(self.song, part)]
        return _play(PARTS.index(part), 0, program, events, self.n)

    def drums(self) -> tuple[np.ndarray, np.ndarray]:
        """(n, 2) the drum stem on the artist's GM kit, tuned by the artist, and the kick's
        hit samples (for the pump)."""
        starts, ends, keys, velocities, kicks = [], [], [], [], np.zeros(0, dtype=np.int64)
        for voice, hits in sorted(self.score.hits.items()):
            key, ring = GM_DRUM_KEYS[voice]
            at = np.round(np.array([time for time, _ in hits]) * SAMPLE_RATE).astype(np.int64)
            starts.append(at)
            ends.append(at + int(ring * SAMPLE_RATE))
            keys.append(np.full(len(hits), key, dtype=np.int64))
            velocities.append(_velocity(np.array([v for _, v in hits]), self.production))
            if voice == "kick":
                kicks = np.sort(at)
        events = (
            np.concatenate(starts),
            np.concatenate(ends),
            np.concatenate(keys),
            np.concatenate(velocities),
        )
        tuning = 12.0 * float(np.log2(self.artist.drum_tune))
        stem = _play(DRUM_CHANNEL, DRUM_BANK, self.production.kit, events, self.n, tuning)
        return stem, kicks

    def mix(self) -> np.ndarray:
        """(n, 2) float32: balanced, panned and pumped stems, the room, the master chain."""
        energy, width = self.song.energy, self.artist.width
        dry = np.zeros((self.n, 2), dtype=np.float32)
        send = np.zeros((self.n, 2), dtype=np.float32)
        duck = None
        if self.score.hits:
            drums, kicks = self.drums()
            level = np.float32(0.2 * (0.7 + 0.6 * energy) / (np.sqrt(np.mean(drums**2)) + 1e-9))
            dry += level * drums
            send += np.float32(0.15) * level * drums
            if self.genre.sidechain and len(kicks):
                duck = pump(self.n, kicks, self.genre.sidechain)[:, None]
        for part in PARTS:
            if not self.score.notes[part]:
                continue
            stem = balance(self.stem(part), part, duck)
            gain_left, gain_right = pan_gains(PAN[part] * width)
            stem[:, 0] *= gain_left
            stem[:, 1] *= gain_right
            dry += stem
            send += np.float32(0.5 if part == "pad" else 0.3) * stem
        return self.master(dry + self.room(send))

    def room(self, send: np.ndarray) -> np.ndarray:
        """(n, 2) the reverb's return: a room as large as the artist's reverb time."""
        import pedalboard  # the world extra (checked by `soundfont_path`)

        reverb = pedalboard.Reverb(
            room_size=float(np.clip(self.artist.reverb / 5.0, 0.2, 0.95)),
            damping=self.production.reverb_damping,
            wet_level=1.0,
            dry_level=0.0,
            width=self.production.width,
        )
        return np.float32(2.0 * self.production.reverb_wet) * reverb(send.T.copy(), SAMPLE_RATE).T

    def master(self, mix: np.ndarray) -> np.ndarray:
        """(n, 2) float32: EQ shelves, brightness low-pass, compressor, energy saturation."""
        import pedalboard

        production = self.production
        cutoff = min(2500.0 * 4.0**self.song.brightness, 0.47 * SAMPLE_RATE)
        board = pedalboard.Pedalboard(
            [
                pedalboard.LowShelfFilter(
                    cutoff_frequency_hz=120.0, gain_db=production.low_shelf_db
                ),
                pedalboard.HighShelfFilter(
                    cutoff_frequency_hz=5000.0, gain_db=production.high_shelf_db
                ),
                pedalboard.LowpassFilter(cutoff_frequency_hz=cutoff),
                pedalboard.Compressor(
                    threshold_db=production.compressor_threshold_db,
                    ratio=production.compressor_ratio,
                    attack_ms=10.0,
                    release_ms=150.0,
                ),
            ]
        )
        out = board((mix / (np.max(np.abs(mix)) + 1e-9)).T.copy(), SAMPLE_RATE).T
        drive = 1.0 + 2.5 * self.song.energy
        out = np.tanh(np.float32(drive) / (np.max(np.abs(out)) + 1e-9) * out) / np.tanh(drive)
        return out.astype(np.float32)


def render_song_soundfont(
    song: Song, artist: Artist, production: Production, clip_seconds: float
) -> tuple[np.ndarray, Score]:
    """Render a song's clip on sampled GM instruments: (round(clip_seconds * 22050), 2)
    float32 in [-1, 1] (cut as `synth.finish_clip` cuts it), and its score."""
    score = compose(song, artist, clip_seconds)
    begin = int(round(score.offset * SAMPLE_RATE))
    n_clip = int(round(clip_seconds * SAMPLE_RATE))
    mix = _Studio(song, artist, production, score, begin + n_clip).mix()
    return finish_clip(mix, begin, np.random.default_rng([song.seed, 1])), score
