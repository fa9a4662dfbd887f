"""Composition: turn a song's attributes into a score of notes and drum hits.

A song is a form of sections (intro, verse, chorus, bridge, solo, drop...) cut short so
that a clip holds several of them: each section changes which parts play, the energy
(drum pattern level, density, velocity), the lead's register and its motif, so the
3-second windows of one song differ the way they do in real music. Harmony follows the
genre's progressions in the song's key and mode, melodies are motifs repeated with
variation and snapped to chord tones, and timing is swung and humanised per genre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from world.catalogue import Artist, Song
from world.style import (
    CHORD_QUALITIES,
    GENRES,
    INSTRUMENTS,
    PATTERNS,
    SCALES,
    SECTION_KINDS,
)

PARTS = ("lead", "solo", "comp", "bass", "pad")
_NUMERALS = {"i": 0, "ii": 2, "iii": 4, "iv": 5, "v": 7, "vi": 9, "vii": 11}
_LEGATO = {"voice": 0.9, "strings": 0.95, "winds": 0.9, "synth": 0.8, "distorted": 0.9}

Slot = tuple[float, float, float]  # bar start (s), first beat, length in beats of one chord


@dataclass(frozen=True)
class Note:
    """One note: start and duration in seconds, MIDI pitch, velocity in [0, 1], sung vowel."""

    start: float
    duration: float
    pitch: float
    velocity: float
    vowel: int = 0


@dataclass(frozen=True)
class Section:
    """A section as heard in the score: kind, start and end in seconds, energy in [0, 1]."""

    kind: str
    start: float
    end: float
    energy: float


@dataclass
class Score:
    """Notes per part, drum hits per voice (time, velocity), sections, and the clip's offset."""

    notes: dict[str, list[Note]] = field(default_factory=lambda: {part: [] for part in PARTS})
    hits: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    offset: float = 0.0
    solo_instrument: str = ""

    def hit(self, voice: str, time: float, velocity: float) -> None:
        self.hits.setdefault(voice, []).append((time, velocity))

    def instrument(self, song: Song, part: str) -> str:
        """The world instrument that plays `part` in `song`."""
        if part == "solo":
            return self.solo_instrument
        return {"lead": song.lead, "comp": song.comp, "bass": song.bass, "pad": song.pad}[part]


def parse_chord(token: str) -> tuple[int, tuple[int, ...]]:
    """A roman-numeral chord ("bVII7", "ii7") as (root in semitones above the key, intervals)."""
    flat = token.startswith("b")
    body = token[1:] if flat else token
    letters = len(body) - len(body.lstrip("IViv"))
    numeral, suffix = body[:letters], body[letters:]
    if numeral.islower() and suffix in ("", "7", "9"):
        suffix = "m" + suffix
    return _NUMERALS[numeral.lower()] - int(flat), CHORD_QUALITIES[suffix]


def _swung(beats: np.ndarray, ratio: float, unit: float) -> np.ndarray:
    """Move off-beat subdivisions of `unit` beats later: a swung pair splits ratio : 1 - ratio."""
    pair = 2.0 * unit
    whole = np.floor(beats / pair + 1e-9)
    x = beats / pair - whole
    swung = np.where(x < 0.5, x * 2.0 * ratio, ratio + (x - 0.5) * 2.0 * (1.0 - ratio))
    return (whole + swung) * pair


def _closed_voicing(root: int, intervals: tuple[int, ...], centre: int) -> list[int]:
    """Chord tones folded into the octave around `centre`, so successive chords voice-lead."""
    low = centre - 6
    return sorted({low + (root + i - low) % 12 for i in intervals})


class _Composer:
    """Writes one song's score; every random choice comes from the song's own seed."""

    def __init__(self, song: Song, artist: Artist, clip_seconds: float) -> None:
        self.song, self.artist = song, artist
        self.genre = GENRES[song.genre]
        self.rng = np.random.default_rng([song.seed, 0])
        self.beat = 60.0 / song.tempo
        self.bar = song.meter * self.beat
        self.clip_seconds = clip_seconds
        self.scale = [(song.key + step) % 12 for step in SCALES[song.scale]]
        self.motifs: dict[str, list[tuple[float, float, int]]] = {}
        self.progress = {"main": 0, "bridge": 0}
        self.chords: list[tuple[float, set[int]]] = []  # (start seconds, pitch classes)
        self.drum_bars = PATTERNS["waltz" if song.meter == 3 else song.pattern]
        self.arp_bounce = bool(self.rng.random() < 0.5)
        self.score = Score()
        solos = [name for name in self.genre.leads if name != "voice"]
        self.score.solo_instrument = (
            song.lead if song.lead != "voice" else (solos or [song.comp])[0]
        )

    def time(self, bar_start: float, beats: np.ndarray | float) -> np.ndarray:
        """Seconds of positions in beats within a bar, swung and humanised."""
        beats = np.atleast_1d(np.asarray(beats, dtype=np.float64))
        swung = _swung(beats, self.artist.swing, self.genre.swing_unit)
        jitter = self.rng.normal(0.0, self.genre.humanize, size=beats.shape)
        return np.maximum(bar_start + swung * self.beat + jitter, 0.0)

    def add(
        self, part: str, times: np.ndarray, duration: float, pitches: list[int], velocity: float
    ) -> None:
        """Notes of `pitches` at each of `times`, velocities jittered."""
        for t in times:
            for pitch in pitches:
                v = float(np.clip(velocity * self.rng.uniform(0.85, 1.05), 0.05, 1.0))
                self.score.notes[part].append(Note(float(t), float(duration), float(pitch), v))

    # -- the form --------------------------------------------------------------------------
    def compose(self) -> Score:
        song, genre = self.song, self.genre
        bars_per_section = int(np.clip(round(self.clip_seconds / 3.0 / self.bar), 1, 4))
        section_seconds = bars_per_section * self.bar
        beats_in = int(self.rng.integers(0, song.meter * bars_per_section // 2 + 1))
        self.score.offset = beats_in * self.beat
        n_sections = math.ceil((self.score.offset + self.clip_seconds) / section_seconds)
        first = min(song.start_section, max(0, len(genre.form) - n_sections))  # no wrap-around
        kinds = [genre.form[(first + i) % len(genre.form)] for i in range(n_sections)]
        for i, kind in enumerate(kinds):
            start = i * section_seconds
            energy = float(
                np.clip(
                    song.energy + 0.8 * SECTION_KINDS[kind].energy + self.rng.normal(0.0, 0.04),
                    0.0,
                    1.0,
                )
            )
            section = Section(kind, start, start + section_seconds, energy)
            self.score.sections.append(section)
            following = kinds[i + 1] if i + 1 < len(kinds) else kind
            self.write_section(section, bars_per_section, SECTION_KINDS[following].crash)
        return self.score

    def write_section(self, section: Section, bars: int, into_climax: bool) -> None:
        kind = SECTION_KINDS[section.kind]
        progression = "bridge" if section.kind in ("bridge", "breakdown") else "main"
        tokens = (
            self.song.bridge_progression if progression == "bridge" else self.song.progression
        ).split()
        per_bar = self.genre.chords_per_bar
        slot_beats = self.song.meter / per_bar
        for b in range(bars):
            bar_start = section.start + b * self.bar
            kicks: list[float] = []
            if kind.drums and self.song.has_drums:
                kicks = self.write_drums(
                    bar_start, section, b == 0 and kind.crash, b == bars - 1 and into_climax
                )
            for c in range(per_bar):
                position = self.progress[progression]
                self.progress[progression] += 1
                root, intervals = parse_chord(tokens[position % len(tokens)])
                root = (self.song.key + root) % 12
                next_root = (
                    self.song.key + parse_chord(tokens[(position + 1) % len(tokens)])[0]
                ) % 12
                slot = (bar_start, c * slot_beats, slot_beats)
                self.chords.append(
                    (bar_start + c * slot_beats * self.beat, {(root + i) % 12 for i in intervals})
                )
                if kind.comp:
                    self.write_comp(slot, root, intervals, section.energy)
                if kind.pad:
                    self.write_pad(slot, root, intervals, section.energy)
                if kind.bass:
                    self.write_bass(slot, root, intervals, section.energy, kicks, next_root)
            if kind.lead:
                self.write_lead(section, b, bars, bar_start)

    # -- drums -----------------------------------------------------------------------------
    def write_drums(
        self, bar_start: float, section: Section, crash: bool, fill: bool
    ) -> list[float]:
        """Hits of one bar at the pattern level the energy calls for; returns the kicks' beats."""
        level = (
            0
            if section.energy < 0.45 or section.kind == "build"
            else (1 if section.energy < 0.72 else 2)
        )
        meter = self.song.meter
        fill = fill and section.energy > 0.45
        kicks: list[float] = []
        for voice, steps in self.drum_bars[level].items():
            positions = np.array([i for i, ch in enumerate(steps) if ch != "."], dtype=np.float64)
            velocities = np.array([int(ch) / 9.0 for ch in steps if ch != "."])
            beats = positions * meter / len(steps)
            if fill and voice in ("snare", "clap"):
                keep = beats < meter - 1
                beats, velocities = beats[keep], velocities[keep]
            triplets = meter == 4 and len(steps) % 3 == 0
            times = bar_start + beats * self.beat if triplets else self.time(bar_start, beats)
            for t, v in zip(times, velocities, strict=True):
                self.score.hit(voice, float(t), float(v * self.rng.uniform(0.85, 1.0)))
            if voice == "kick":
                kicks = [float(b) for b in beats]
        if crash and self.song.pattern not in ("ambient", "folk"):
            self.score.hit("crash", bar_start, 0.9)
        if fill:
            roll = meter - 1 + np.arange(4) * 0.25
            for t, v in zip(self.time(bar_start, roll), np.linspace(0.5, 0.95, 4), strict=True):
                self.score.hit("snare", float(t), float(v))
        if self.song.pattern == "trap" and self.rng.random() < 0.35:
            beat = float(self.rng.integers(meter))
            for t in bar_start + (beat + np.arange(4) * 0.125) * self.beat:
                self.score.hit("hat", float(t), 0.55)
        return kicks

    # -- harmony ---------------------------------------------------------------------------
    def write_comp(self, slot: Slot, root: int, intervals: tuple[int, ...], energy: float) -> None:
        bar_start, first, beats = slot
        style = self.song.comp_style
        centre = 12 * INSTRUMENTS[self.song.comp].octave + 14
        velocity = 0.45 + 0.4 * energy
        chord = _closed_voicing(root, intervals, centre)
        low_root = centre - 12 + (root - centre) % 12
        if style == "block":
            step = 2.0 if energy < 0.4 else 1.0 if energy < 0.7 else 0.5
            grid = np.arange(0.0, beats, step)
            self.add(
                "comp", self.time(bar_start, first + grid), 0.9 * step * self.beat, chord, velocity
            )
        elif style == "offbeat":
            grid = np.arange(0.5, beats, 1.0)
            self.add("comp", self.time(bar_start, first + grid), 0.3 * self.beat, chord, velocity)
        elif style == "jazz":
            options = np.arange(0.0, beats, 0.5)
            grid = np.sort(self.rng.choice(options, size=min(len(options), 2), replace=False))
            rootless = _closed_voicing(root, (*intervals[1:], 14), centre)
            self.add(
                "comp", self.time(bar_start, first + grid), 0.4 * self.beat, rootless, velocity
            )
        elif style == "shuffle":
            grid = np.arange(0.0, beats, 0.5)
            for i, t in enumerate(self.time(bar_start, first + grid)):
                upper = low_root + (9 if i % 2 else 7)
                self.add("comp", np.array([t]), 0.45 * self.beat, [low_root, upper], velocity)
        elif style == "strum":
            strokes = "D...D..." if energy < 0.35 else "D.D.D.DU" if energy < 0.65 else "D.DU.UDU"
            guitar = [low_root, *chord]
            strokes = strokes[: int(beats * 2)]
            onsets = [i for i, stroke in enumerate(strokes) if stroke != "."]
            for i, until in zip(onsets, [*onsets[1:], len(strokes) + 1], strict=True):
                stroke = strokes[i]
                start = self.time(bar_start, first + 0.5 * i)[0]
                strings = guitar if stroke == "D" else guitar[::-1][:3]
                spread = np.arange(len(strings)) * self.rng.uniform(0.008, 0.018)
                ring = 0.5 * (until - i) * self.beat  # until the next stroke damps the strings
                loud = velocity * (1.0 if stroke == "D" else 0.7)
                for pitch, delay in zip(strings, spread, strict=True):
                    self.add("comp", np.array([start + delay]), ring, [pitch], loud)
        elif style == "arp":
            step = 0.25 if energy > 0.6 or self.genre.name == "electronic" else 0.5
            tones = chord + [p + 12 for p in chord]
            order = tones + tones[-2:0:-1] if self.arp_bounce else tones
            grid = np.arange(0.0, beats, step)
            for i, t in enumerate(self.time(bar_start, first + grid)):
                accent = 1.0 if i % 2 == 0 else 0.8
                self.add(
                    "comp",
                    np.array([t]),
                    1.6 * step * self.beat,
                    [order[i % len(order)]],
                    velocity * accent,
                )
        elif style == "power":
            low = 40 + (root - 4) % 12
            power = [low, low + 7, low + 12]
            if energy > 0.8:
                grid = np.arange(0.0, beats, 0.5)
                self.add(
                    "comp", self.time(bar_start, first + grid), 0.2 * self.beat, power, velocity
                )
            else:
                self.add(
                    "comp", self.time(bar_start, first), 0.95 * beats * self.beat, power, velocity
                )
        else:  # "pad": the chord held
            self.add("comp", self.time(bar_start, first), beats * self.beat, chord, 0.8 * velocity)

    def write_pad(self, slot: Slot, root: int, intervals: tuple[int, ...], energy: float) -> None:
        bar_start, first, beats = slot
        centre = 12 * INSTRUMENTS[self.song.pad].octave + 17
        chord = _closed_voicing(root, intervals, centre)
        self.add(
            "pad", self.time(bar_start, first), 1.02 * beats * self.beat, chord, 0.35 + 0.3 * energy
        )

    def write_bass(
        self,
        slot: Slot,
        root: int,
        intervals: tuple[int, ...],
        energy: float,
        kicks: list[float],
        next_root: int,
    ) -> None:
        bar_start, first, beats = slot
        low = 12 * INSTRUMENTS[self.song.bass].octave + 16
        tonic = low + (root - 4) % 12
        fifth = tonic + 7 if tonic + 7 < low + 14 else tonic - 5
        velocity = 0.6 + 0.35 * energy
        style = self.song.bass_style
        if style == "808" and not kicks:
            style = "pedal"
        if style == "pedal":
            self.add("bass", self.time(bar_start, first), beats * self.beat, [tonic], velocity)
        elif style == "root":
            grid = np.arange(0.0, beats, 2.0 if self.song.meter == 4 else 3.0)
            for i, t in enumerate(self.time(bar_start, first + grid)):
                self.add(
                    "bass",
                    np.array([t]),
                    1.6 * self.beat,
                    [tonic if i % 2 == 0 else fifth],
                    velocity,
                )
        elif style in ("root8", "root16", "offbeat"):
            step = {"root8": 0.5, "root16": 0.25, "offbeat": 1.0}[style]
            grid = np.arange(0.5 if style == "offbeat" else 0.0, beats, step)
            self.add("bass", self.time(bar_start, first + grid), 0.4 * self.beat, [tonic], velocity)
        elif style == "synco":
            line = (
                (0.0, tonic),
                (0.75, tonic),
                (1.5, tonic + 12),
                (2.0, tonic),
                (2.75, fifth),
                (3.5, tonic),
            )
            for beat, pitch in line:
                if beat < beats:
                    self.add(
                        "bass",
                        self.time(bar_start, first + beat),
                        0.4 * self.beat,
                        [pitch],
                        velocity,
                    )
        elif style == "walking":
            approach = low + (next_root - 4) % 12 + (1 if self.rng.random() < 0.5 else -1)
            line = [tonic, tonic + intervals[1], tonic + intervals[2], approach][: int(beats)]
            for t, pitch in zip(
                self.time(bar_start, first + np.arange(len(line))), line, strict=True
            ):
                self.add("bass", np.array([t]), 0.9 * self.beat, [pitch], velocity)
        elif style == "boogie":
            third = 4 if 4 in intervals else 3
            steps = (0, third, 7, 9, 10, 9, 7, third)
            grid = np.arange(0.0, beats, 0.5)
            for t, step in zip(self.time(bar_start, first + grid), steps, strict=False):
                self.add("bass", np.array([t]), 0.45 * self.beat, [tonic + step], velocity)
        else:  # "808": long notes on the kicks
            hits = [k for k in kicks if first <= k < first + beats]
            for k, end in zip(hits, [*hits[1:], first + beats], strict=True):
                self.add(
                    "bass", self.time(bar_start, k), 0.95 * (end - k) * self.beat, [tonic], velocity
                )

    # -- melody ----------------------------------------------------------------------------
    def motif(self, kind: str) -> list[tuple[float, float, int]]:
        """The (onset beats, length beats, scale degree) motif of a section kind, two bars long."""
        if kind in self.motifs:
            return self.motifs[kind]
        rng = self.rng
        density = self.genre.lead_density * SECTION_KINDS[kind].density
        length = 2 * self.song.meter
        grid = np.arange(0.0, length, 0.25 if density >= 2.0 else 0.5)
        weight = np.where(grid % 1.0 == 0.0, 3.0, np.where(grid % 0.5 == 0.0, 1.5, 1.0))
        n = int(np.clip(round(density * length * rng.uniform(0.75, 1.25)), 2, len(grid)))
        onsets = np.sort(rng.choice(grid, size=n, replace=False, p=weight / weight.sum()))
        if self.genre.name == "hiphop":  # rapped: short notes close in pitch
            moves, odds = np.array([-1, 0, 1]), np.array([0.3, 0.4, 0.3])
        else:
            moves = np.array([-3, -2, -1, 0, 1, 2, 3, 4])
            odds = np.array([0.05, 0.15, 0.25, 0.1, 0.25, 0.12, 0.05, 0.03])
        degrees = np.clip(np.cumsum(rng.choice(moves, size=n, p=odds)), -5, 7)
        lengths = np.diff(np.append(onsets, length))
        motif = [
            (float(o), float(d), int(g)) for o, d, g in zip(onsets, lengths, degrees, strict=True)
        ]
        self.motifs[kind] = motif
        return motif

    def write_lead(self, section: Section, b: int, bars: int, bar_start: float) -> None:
        """One bar of the section's motif: varied on repeats, resolved to the tonic at the end."""
        kind = SECTION_KINDS[section.kind]
        part = "solo" if section.kind == "solo" else "lead"
        instrument = INSTRUMENTS[self.score.solo_instrument if part == "solo" else self.song.lead]
        base = 12 * instrument.octave + 12 + kind.register
        if instrument.family == "voice":
            base = (67 if self.artist.formant_scale > 1.0 else 57) + kind.register
        legato = _LEGATO.get(instrument.family, 0.6) * (0.6 if self.genre.name == "hiphop" else 1.0)
        meter = self.song.meter
        motif = self.motif(section.kind)
        half = (b % 2) * meter
        n_scale = len(self.scale)
        for onset, length, degree in motif:
            if not half <= onset < half + meter:
                continue
            if b >= 2 and self.rng.random() < 0.15:
                degree += int(self.rng.choice([-1, 1]))
            if b == bars - 1 and onset == motif[-1][0]:
                degree = 0
            pitch = base + (self.scale[degree % n_scale] - base) % 12 + 12 * (degree // n_scale)
            beats = onset - half
            if beats % 2.0 == 0.0:
                pitch = self.nearest_chord_tone(pitch, bar_start + beats * self.beat)
            velocity = (0.55 + 0.35 * section.energy) * (1.1 if beats % 1.0 == 0.0 else 0.95)
            vowel = self.artist.vowels[int(self.rng.integers(len(self.artist.vowels)))]
            start = self.time(bar_start, beats)[0]
            self.score.notes[part].append(
                Note(
                    float(start),
                    float(length * self.beat * legato),
                    float(pitch),
                    float(np.clip(velocity, 0.05, 1.0)),
                    vowel,
                )
            )

    def nearest_chord_tone(self, pitch: float, time: float) -> float:
        """Snap a strong-beat melody note to the closest tone of the chord sounding at `time`."""
        classes = next((c for start, c in reversed(self.chords) if start <= time + 1e-6), set())
        return min(
            (pitch + d for d in range(-2, 3) if int(pitch + d) % 12 in classes),
            key=lambda p: (abs(p - pitch), p),
            default=pitch,
        )


def compose(song: Song, artist: Artist, clip_seconds: float) -> Score:
    """The score of a song's clip: sections covering `offset + clip_seconds` seconds."""
    return _Composer(song, artist, clip_seconds).compose()
