"""The style book of the synthetic world: instruments, drum kits and patterns, genres.

Pure data. Genres differ the way real ones do: in instruments (harmonic spectra and
envelopes), tempo range, mode and scale, chord progressions, drum patterns and kits,
note density, brightness, swing and song form. Several instruments are shared between
genres (voice, piano, synths), so timbre alone does not give the genre away: rhythm,
tempo and harmony have to be heard too.
"""

from __future__ import annotations

from dataclasses import dataclass

# Families of lead/accompaniment instruments that listeners can like or dislike.
FAMILIES = ("piano", "guitar", "distorted", "strings", "winds", "synth", "voice", "mallets")


@dataclass(frozen=True)
class Instrument:
    """A synthesized instrument: a harmonic (or inharmonic) spectrum with envelopes.

    Partial n of a note at f0 has amplitude n**-tilt (even partials times `even`), times
    the gains of resonances `formants` (centre Hz, width Hz, gain) at n*f0. `pluck` is
    the time constant (s) with which the upper partials die away after the attack
    (0: a steady spectrum); `partials` gives inharmonic frequency ratios instead.
    """

    name: str
    family: str
    tilt: float
    even: float = 1.0
    formants: tuple[tuple[float, float, float], ...] = ()
    partials: tuple[float, ...] = ()
    attack: float = 0.01
    decay: float = 0.5
    sustain: float = 0.0
    release: float = 0.1
    pluck: float = 0.0
    vibrato: float = 0.0
    vibrato_rate: float = 5.0
    tremolo: float = 0.0
    breath: float = 0.0
    drive: float = 0.0
    voices: int = 1
    detune: float = 0.0
    glide: float = 0.0
    octave: int = 4


_BODY = ((250.0, 120.0, 2.0), (1100.0, 500.0, 0.8))
_CAB = ((1500.0, 900.0, 1.5), (3500.0, 800.0, 0.6))

INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument(
            "piano", "piano", 1.3, attack=0.004, decay=1.1, release=0.25, pluck=0.35, breath=0.02
        ),
        Instrument(
            "epiano",
            "piano",
            2.2,
            formants=((1400.0, 400.0, 1.2),),
            attack=0.004,
            decay=1.4,
            sustain=0.1,
            release=0.3,
            pluck=0.25,
            tremolo=0.15,
        ),
        Instrument(
            "organ",
            "piano",
            0.8,
            formants=((700.0, 900.0, 1.0),),
            attack=0.01,
            decay=0.2,
            sustain=0.95,
            release=0.06,
            vibrato=0.003,
            vibrato_rate=6.5,
        ),
        Instrument(
            "nylon",
            "guitar",
            1.5,
            formants=_BODY,
            attack=0.003,
            decay=0.8,
            release=0.12,
            pluck=0.12,
            breath=0.04,
            octave=4,
        ),
        Instrument(
            "steel",
            "guitar",
            1.1,
            formants=_BODY,
            attack=0.002,
            decay=1.3,
            release=0.15,
            pluck=0.25,
            breath=0.05,
        ),
        Instrument(
            "clean_guitar",
            "guitar",
            1.25,
            formants=((1200.0, 600.0, 1.5),),
            attack=0.003,
            decay=1.0,
            sustain=0.15,
            release=0.1,
            pluck=0.2,
            vibrato=0.002,
        ),
        Instrument(
            "dist_guitar",
            "distorted",
            0.9,
            formants=_CAB,
            attack=0.004,
            decay=0.6,
            sustain=0.75,
            release=0.07,
            pluck=0.3,
            drive=7.0,
            octave=3,
        ),
        Instrument(
            "lead_guitar",
            "distorted",
            0.9,
            formants=_CAB,
            attack=0.006,
            decay=0.8,
            sustain=0.8,
            release=0.12,
            vibrato=0.008,
            vibrato_rate=5.5,
            drive=5.0,
            octave=5,
        ),
        Instrument(
            "strings",
            "strings",
            1.0,
            formants=((800.0, 500.0, 1.2), (2600.0, 900.0, 0.8)),
            attack=0.22,
            decay=0.5,
            sustain=0.9,
            release=0.4,
            vibrato=0.005,
            vibrato_rate=5.5,
            breath=0.03,
            voices=2,
            detune=9.0,
        ),
        Instrument(
            "violin",
            "strings",
            0.95,
            formants=((500.0, 300.0, 1.5), (2800.0, 900.0, 1.0)),
            attack=0.08,
            decay=0.5,
            sustain=0.9,
            release=0.2,
            vibrato=0.009,
            vibrato_rate=5.8,
            breath=0.04,
            octave=5,
        ),
        Instrument(
            "flute",
            "winds",
            2.8,
            attack=0.06,
            decay=0.3,
            sustain=0.85,
            release=0.12,
            vibrato=0.006,
            vibrato_rate=5.0,
            breath=0.09,
            octave=5,
        ),
        Instrument(
            "clarinet",
            "winds",
            1.1,
            even=0.12,
            attack=0.04,
            decay=0.4,
            sustain=0.85,
            release=0.1,
            vibrato=0.002,
            breath=0.02,
        ),
        Instrument(
            "sax",
            "winds",
            1.0,
            formants=((600.0, 300.0, 2.5), (1700.0, 500.0, 1.5)),
            attack=0.04,
            decay=0.5,
            sustain=0.8,
            release=0.1,
            pluck=0.0,
            vibrato=0.007,
            vibrato_rate=5.2,
            breath=0.05,
        ),
        Instrument(
            "brass",
            "winds",
            0.85,
            formants=((1200.0, 700.0, 1.8),),
            attack=0.05,
            decay=0.6,
            sustain=0.85,
            release=0.12,
            vibrato=0.004,
            breath=0.02,
            voices=2,
            detune=6.0,
        ),
        Instrument(
            "saw_lead",
            "synth",
            1.0,
            attack=0.01,
            decay=0.4,
            sustain=0.8,
            release=0.1,
            pluck=0.25,
            vibrato=0.004,
            voices=2,
            detune=10.0,
            octave=5,
        ),
        Instrument(
            "square_lead",
            "synth",
            1.0,
            even=0.0,
            attack=0.01,
            decay=0.4,
            sustain=0.75,
            release=0.08,
            vibrato=0.003,
            octave=5,
        ),
        Instrument(
            "supersaw",
            "synth",
            1.0,
            attack=0.05,
            decay=0.6,
            sustain=0.85,
            release=0.35,
            voices=3,
            detune=18.0,
        ),
        Instrument(
            "synth_pad",
            "synth",
            1.6,
            attack=0.7,
            decay=1.0,
            sustain=0.9,
            release=1.0,
            voices=2,
            detune=12.0,
            tremolo=0.1,
        ),
        Instrument(
            "pluck_synth",
            "synth",
            1.0,
            attack=0.003,
            decay=0.25,
            release=0.08,
            pluck=0.07,
            octave=5,
        ),
        Instrument(
            "vibraphone",
            "mallets",
            3.0,
            partials=(1.0, 4.0, 10.0),
            attack=0.003,
            decay=1.6,
            release=0.5,
            tremolo=0.35,
        ),
        Instrument(
            "marimba",
            "mallets",
            3.0,
            partials=(1.0, 3.93, 9.2),
            attack=0.002,
            decay=0.35,
            release=0.1,
        ),
        Instrument(
            "bells",
            "mallets",
            1.5,
            partials=(1.0, 2.76, 5.4, 8.93),
            attack=0.002,
            decay=1.8,
            release=0.6,
            octave=6,
        ),
        Instrument(
            "voice",
            "voice",
            0.9,
            attack=0.05,
            decay=0.6,
            sustain=0.85,
            release=0.12,
            vibrato=0.012,
            vibrato_rate=5.5,
            breath=0.03,
        ),
        Instrument(
            "choir",
            "voice",
            1.0,
            attack=0.5,
            decay=1.0,
            sustain=0.9,
            release=0.7,
            vibrato=0.006,
            voices=2,
            detune=10.0,
        ),
        Instrument(
            "upright_bass",
            "bass",
            1.9,
            formants=((120.0, 80.0, 1.5),),
            attack=0.004,
            decay=0.7,
            release=0.08,
            pluck=0.08,
            octave=2,
        ),
        Instrument(
            "finger_bass",
            "bass",
            1.5,
            attack=0.005,
            decay=0.9,
            sustain=0.35,
            release=0.06,
            pluck=0.12,
            octave=2,
        ),
        Instrument(
            "pick_bass",
            "bass",
            1.2,
            attack=0.003,
            decay=0.7,
            sustain=0.5,
            release=0.05,
            pluck=0.09,
            drive=1.5,
            octave=2,
        ),
        Instrument(
            "synth_bass",
            "bass",
            1.0,
            attack=0.004,
            decay=0.3,
            sustain=0.6,
            release=0.05,
            pluck=0.1,
            drive=1.2,
            octave=2,
        ),
        Instrument(
            "sub_808",
            "bass",
            4.0,
            attack=0.003,
            decay=1.2,
            sustain=0.3,
            release=0.15,
            glide=0.35,
            drive=1.6,
            octave=1,
        ),
    )
}

# Vowel formants (F1, F2, F3 in Hz) a voice moves between; a singer scales them.
VOWELS = (
    (730.0, 1090.0, 2440.0),
    (270.0, 2290.0, 3010.0),
    (300.0, 870.0, 2240.0),
    (530.0, 1840.0, 2480.0),
    (570.0, 840.0, 2410.0),
)

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}


@dataclass(frozen=True)
class Kit:
    """Drum sounds of one style: kick sweep, snare tone + noise, hi-hat and cymbal decays."""

    kick_hz: tuple[float, float]  # start and end of the pitch sweep
    kick_decay: float
    kick_click: float
    snare_hz: float
    snare_decay: float
    snare_band: tuple[float, float]
    clap: bool
    hat_decay: float
    open_decay: float
    metallic: float  # share of square-wave partials (808-style) in hats and cymbals
    brushes: bool = False


KITS: dict[str, Kit] = {
    "acoustic": Kit((150.0, 55.0), 0.28, 0.4, 190.0, 0.16, (1500.0, 8000.0), False, 0.05, 0.3, 0.0),
    "rock": Kit((140.0, 50.0), 0.3, 0.6, 200.0, 0.2, (1200.0, 9000.0), False, 0.05, 0.35, 0.0),
    "metal": Kit((180.0, 60.0), 0.14, 1.0, 230.0, 0.14, (2000.0, 10000.0), False, 0.04, 0.4, 0.0),
    "electronic": Kit(
        (130.0, 45.0), 0.45, 0.25, 180.0, 0.2, (900.0, 6000.0), True, 0.04, 0.25, 0.6
    ),
    "808": Kit((90.0, 40.0), 0.9, 0.15, 170.0, 0.18, (800.0, 7000.0), True, 0.035, 0.25, 0.7),
    "jazz": Kit(
        (110.0, 65.0), 0.25, 0.2, 210.0, 0.12, (700.0, 5000.0), False, 0.04, 0.5, 0.3, brushes=True
    ),
    "soft": Kit((100.0, 50.0), 0.35, 0.05, 160.0, 0.1, (2500.0, 9000.0), False, 0.08, 0.2, 0.0),
}

# Drum patterns: one string per voice and bar; characters are velocities ("." = no hit,
# "1".."9"), evenly spread over the bar (16 = sixteenths, 12 = triplet eighths in 4/4).
# Each pattern has a light, main and big level (chosen by the section's energy).
DrumBar = dict[str, str]
PATTERNS: dict[str, tuple[DrumBar, DrumBar, DrumBar]] = {
    "rock": (
        {"kick": "9.......6.......", "snare": "....7.......7...", "hat": "5.3.5.3.5.3.5.3."},
        {"kick": "9.....6.9.......", "snare": "....9.......9...", "hat": "7.5.7.5.7.5.7.5."},
        {"kick": "9.....7.9.7.....", "snare": "....9.......9..5", "open": "8.6.8.6.8.6.8.6."},
    ),
    "rock_drive": (
        {"kick": "9...5...9...5...", "snare": "....7.......7...", "hat": "5353535353535353"},
        {"kick": "9.5.....9.5.....", "snare": "....9.......9...", "hat": "7575757575757575"},
        {"kick": "9.7.....9.7.7...", "snare": "....9.......9.6.", "open": "8.8.8.8.8.8.8.8."},
    ),
    "metal": (
        {"kick": "9...9...9...9...", "snare": "....9.......9...", "hat": "7.5.7.5.7.5.7.5."},
        {"kick": "9797979797979797", "snare": "....9.......9...", "open": "8.6.8.6.8.6.8.6."},
        {"kick": "9999999999999999", "snare": "..9...9...9...9.", "open": "9.9.9.9.9.9.9.9."},
    ),
    "pop": (
        {"kick": "9.......9.......", "clap": "....7.......7...", "hat": "..5...5...5...5."},
        {"kick": "9.....7.9.......", "clap": "....9.......9...", "hat": "6.4.6.4.6.4.6.4."},
        {"kick": "9.....7.9.6.....", "clap": "....9.......9...", "hat": "7575757575757575"},
    ),
    "four_floor": (
        {"kick": "9...9...9...9...", "hat": "..6...6...6...6."},
        {
            "kick": "9...9...9...9...",
            "clap": "....8.......8...",
            "open": "..7...7...7...7.",
            "hat": "4.4.4.4.4.4.4.4.",
        },
        {
            "kick": "9...9...9...9...",
            "clap": "....9.......9...",
            "open": "..8...8...8...8.",
            "hat": "5555555555555555",
        },
    ),
    "breakbeat": (
        {"kick": "9.........7.....", "snare": "....8.......8...", "hat": "5.5.5.5.5.5.5.5."},
        {"kick": "9.7.......9.....", "snare": "....9..5.5..9...", "hat": "6565656565656565"},
        {"kick": "9.7...7...9.7...", "snare": "....9..6.6..9..6", "open": "7.7.7.7.7.7.7.7."},
    ),
    "boom_bap": (
        {"kick": "9.........8.....", "snare": "....8.......8...", "hat": "5.4.5.4.5.4.5.4."},
        {"kick": "9.....6...9.....", "snare": "....9.......9...", "hat": "6.5.6.5.6.5.6.5."},
        {"kick": "9.....7...9..6..", "snare": "....9.......9...", "hat": "7575757575757575"},
    ),
    "trap": (
        {"kick": "9.........9.....", "clap": "........9.......", "hat": "5.5.5.5.5.5.5.5."},
        {"kick": "9......6..9.....", "clap": "........9.......", "hat": "6565656565656565"},
        {"kick": "9.....7...9..7..", "clap": "........9.......", "hat": "7575756567575777"},
    ),
    "shuffle": (
        {"kick": "9.....6.....", "snare": "...7.....7..", "hat": "5.35.35.35.3"},
        {"kick": "9.....8.....", "snare": "...9.....9..", "hat": "7.57.57.57.5"},
        {"kick": "9..6..8..6..", "snare": "...9.....9.6", "open": "8.68.68.68.6"},
    ),
    "swing": (
        {"ride": "7..5.67..5.6", "hat": "...6.....6..", "kick": "2..2..2..2.."},
        {
            "ride": "8..6.78..6.7",
            "hat": "...7.....7..",
            "kick": "3..3..3..3..",
            "snare": ".....3.....4",
        },
        {
            "ride": "9..7.89..7.8",
            "hat": "...8.....8..",
            "kick": "4..4..6..4..",
            "snare": "..4..5..3..6",
        },
    ),
    "folk": (
        {"shaker": "5353535353535353"},
        {"kick": "8.......7.......", "shaker": "5353535353535353", "snare": "....5.......5..."},
        {"kick": "9.......8.......", "snare": "....8.......8...", "tambourine": "....7.......7..."},
    ),
    "waltz": (
        {"kick": "8...........", "shaker": "5.3.5.3.5.3."},
        {"kick": "8...........", "snare": "....5...5...", "hat": "5.3.5.3.5.3."},
        {"kick": "9.......6...", "snare": "....7...7...", "open": "6.4.6.4.6.4."},
    ),
    "ambient": (
        {"shaker": "..4...4...4...4."},
        {"kick": "7...............", "shaker": "4.3.4.3.4.3.4.3."},
        {"kick": "8.......6.......", "hat": "..5...5...5...5.", "snare": "............6..."},
    ),
}

# What a listener can like in a rhythm: a drum pattern, or no drums at all.
GROOVES = (*PATTERNS, "none")

# Chord progressions: roman numerals relative to the key (lower case = minor, "b" = flat,
# suffixes 7 (m7 on a minor numeral), maj7, 9 (minor numerals only), add9, sus2, sus4,
# 5 = power chord, dim).
CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "dim": (0, 3, 6),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m9": (0, 3, 7, 10, 14),
    "add9": (0, 4, 7, 14),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
    "5": (0, 7, 12),
}


@dataclass(frozen=True)
class SectionKind:
    """How a section of a song changes the arrangement: energy offset and which parts play."""

    energy: float
    drums: bool
    bass: bool
    comp: bool
    lead: bool
    pad: bool
    register: int = 0  # semitones added to the lead
    density: float = 1.0  # multiplies the lead's note density
    crash: bool = False


SECTION_KINDS: dict[str, SectionKind] = {
    "intro": SectionKind(-0.3, False, False, True, False, True, density=0.5),
    "verse": SectionKind(-0.1, True, True, True, True, False),
    "chorus": SectionKind(0.25, True, True, True, True, True, register=5, density=1.3, crash=True),
    "bridge": SectionKind(0.0, True, True, False, True, True, register=2, density=0.7),
    "solo": SectionKind(0.15, True, True, True, True, False, register=7, density=1.8),
    "breakdown": SectionKind(-0.35, False, False, False, True, True, density=0.5),
    "build": SectionKind(0.0, True, True, True, False, True, density=0.8),
    "drop": SectionKind(0.35, True, True, True, True, True, register=0, density=1.2, crash=True),
    "outro": SectionKind(-0.25, True, False, True, False, True, density=0.4),
}


@dataclass(frozen=True)
class Genre:
    """One genre's conventions; the listeners' side (`appeal`, `map_xy`) is used by taste."""

    name: str
    tempo: tuple[float, float]
    p_major: float
    scales: tuple[str, str]  # melody scale in major and in minor songs
    major: tuple[str, ...]  # progressions for major songs
    minor: tuple[str, ...]
    chords_per_bar: int
    p_triple: float  # share of songs in 3/4
    swing: tuple[float, float]  # share of a swung pair taken by its first note (0.5: straight)
    kit: str
    patterns: tuple[str, ...]
    p_drums: float
    leads: tuple[str, ...]
    comps: tuple[str, ...]
    basses: tuple[str, ...]
    pads: tuple[str, ...]
    comp_styles: tuple[str, ...]
    bass_styles: tuple[str, ...]
    lead_density: float  # notes per beat in a verse
    energy: tuple[float, float]
    brightness: tuple[float, float]
    reverb: tuple[float, float]  # reverb decay time range, seconds
    form: tuple[str, ...]
    share: float  # share of the catalogue's artists
    appeal: float  # share of listeners whose taste centres on this genre
    map_xy: tuple[float, float]  # position on the listeners' genre map
    humanize: float = 0.008  # timing jitter, seconds
    sidechain: float = 0.0  # depth of the pumping of pads and bass on the kick
    swing_unit: float = 0.25  # beats of the swung subdivision (0.5: eighths, jazz and blues)


GENRES: tuple[Genre, ...] = (
    Genre(
        name="ambient",
        tempo=(60.0, 90.0),
        p_major=0.5,
        scales=("lydian", "dorian"),
        major=("Imaj7 IVmaj7", "Iadd9 vi7 IVmaj7 Iadd9", "Isus2 IVadd9"),
        minor=("i7 bVImaj7", "isus2 bVIImaj7 bVImaj7 isus2", "i9 iv7"),
        chords_per_bar=1,
        p_triple=0.0,
        swing=(0.5, 0.5),
        kit="soft",
        patterns=("ambient",),
        p_drums=0.35,
        leads=("bells", "epiano", "flute", "vibraphone"),
        comps=("synth_pad", "epiano", "strings"),
        basses=("sub_808", "synth_bass"),
        pads=("synth_pad", "choir", "strings"),
        comp_styles=("pad", "arp"),
        bass_styles=("pedal",),
        lead_density=0.35,
        energy=(0.05, 0.35),
        brightness=(0.1, 0.45),
        reverb=(2.5, 4.5),
        form=("intro", "verse", "bridge", "verse", "outro"),
        share=0.06,
        appeal=0.06,
        map_xy=(-1.0, 1.6),
        humanize=0.0,
    ),
    Genre(
        name="classical",
        tempo=(66.0, 140.0),
        p_major=0.55,
        scales=("major", "harmonic_minor"),
        major=("I IV V I", "I vi ii V", "I V vi iii IV I IV V", "I ii V I"),
        minor=("i iv V i", "i bVI iv V", "i bVII bVI V", "i iv bVII bIII"),
        chords_per_bar=1,
        p_triple=0.3,
        swing=(0.5, 0.5),
        kit="soft",
        patterns=("ambient",),
        p_drums=0.0,
        leads=("violin", "flute", "clarinet", "piano"),
        comps=("piano", "strings"),
        basses=("strings",),
        pads=("strings",),
        comp_styles=("arp", "block", "pad"),
        bass_styles=("pedal", "root"),
        lead_density=0.9,
        energy=(0.1, 0.55),
        brightness=(0.2, 0.55),
        reverb=(1.8, 3.0),
        form=("verse", "bridge", "verse", "chorus", "verse"),
        share=0.08,
        appeal=0.07,
        map_xy=(-1.4, 0.8),
        humanize=0.012,
    ),
    Genre(
        name="folk",
        tempo=(80.0, 130.0),
        p_major=0.7,
        scales=("major_pentatonic", "dorian"),
        major=("I IV I V", "I V vi IV", "I IV vi V", "I I IV I"),
        minor=("i bVII bVI bVII", "i iv i v", "i bIII bVII i"),
        chords_per_bar=1,
        p_triple=0.25,
        swing=(0.5, 0.56),
        kit="acoustic",
        patterns=("folk",),
        p_drums=0.55,
        leads=("voice", "flute", "violin"),
        comps=("steel", "nylon"),
        basses=("upright_bass", "finger_bass"),
        pads=("strings", "organ"),
        comp_styles=("strum", "arp"),
        bass_styles=("root",),
        lead_density=0.9,
        energy=(0.2, 0.55),
        brightness=(0.3, 0.6),
        reverb=(1.0, 2.0),
        form=("intro", "verse", "chorus", "verse", "chorus", "bridge", "outro"),
        share=0.1,
        appeal=0.08,
        map_xy=(-0.6, -0.6),
        humanize=0.012,
    ),
    Genre(
        name="jazz",
        tempo=(96.0, 200.0),
        p_major=0.5,
        scales=("dorian", "dorian"),
        major=("ii7 V7 Imaj7 VI7", "Imaj7 vi7 ii7 V7", "iii7 VI7 ii7 V7", "Imaj7 IVmaj7 iii7 VI7"),
        minor=("i7 iv7 bVII7 bIIImaj7", "i7 i7 iv7 V7", "i9 bVI7 ii7 V7"),
        chords_per_bar=2,
        p_triple=0.1,
        swing=(0.6, 0.68),
        kit="jazz",
        patterns=("swing",),
        p_drums=0.95,
        leads=("sax", "brass", "piano", "vibraphone"),
        comps=("piano", "epiano"),
        basses=("upright_bass",),
        pads=("organ", "strings"),
        comp_styles=("jazz",),
        bass_styles=("walking",),
        lead_density=1.6,
        energy=(0.3, 0.7),
        brightness=(0.3, 0.6),
        reverb=(0.8, 1.6),
        form=("verse", "solo", "solo", "verse"),
        share=0.08,
        appeal=0.07,
        map_xy=(0.6, 1.0),
        humanize=0.012,
        swing_unit=0.5,
    ),
    Genre(
        name="blues",
        tempo=(70.0, 120.0),
        p_major=0.85,
        scales=("blues", "blues"),
        major=("I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7", "I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"),
        minor=("i7 i7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7",),
        chords_per_bar=1,
        p_triple=0.0,
        swing=(0.64, 0.68),
        kit="acoustic",
        patterns=("shuffle",),
        p_drums=0.95,
        leads=("clean_guitar", "voice", "square_lead"),
        comps=("organ", "piano", "clean_guitar"),
        basses=("finger_bass", "upright_bass"),
        pads=("organ",),
        comp_styles=("shuffle",),
        bass_styles=("boogie", "walking"),
        lead_density=1.1,
        energy=(0.4, 0.7),
        brightness=(0.35, 0.6),
        reverb=(0.8, 1.5),
        form=("verse", "verse", "solo", "verse"),
        share=0.07,
        appeal=0.06,
        map_xy=(1.0, 0.2),
        humanize=0.01,
        swing_unit=0.5,
    ),
    Genre(
        name="rock",
        tempo=(100.0, 150.0),
        p_major=0.55,
        scales=("mixolydian", "minor_pentatonic"),
        major=("I5 bVII5 IV5 I5", "I5 IV5 V5 IV5", "I5 V5 VI5 IV5", "I5 bIII5 IV5 I5"),
        minor=("i5 bVII5 bVI5 bVII5", "i5 bVI5 bIII5 bVII5", "i5 iv5 bVII5 i5"),
        chords_per_bar=1,
        p_triple=0.0,
        swing=(0.5, 0.53),
        kit="rock",
        patterns=("rock", "rock_drive"),
        p_drums=1.0,
        leads=("voice", "lead_guitar"),
        comps=("dist_guitar", "clean_guitar"),
        basses=("pick_bass", "finger_bass"),
        pads=("organ", "strings"),
        comp_styles=("power",),
        bass_styles=("root8",),
        lead_density=1.0,
        energy=(0.55, 0.9),
        brightness=(0.5, 0.8),
        reverb=(0.8, 1.5),
        form=("intro", "verse", "chorus", "verse", "chorus", "solo", "chorus", "outro"),
        share=0.16,
        appeal=0.17,
        map_xy=(0.6, -0.2),
        humanize=0.006,
    ),
    Genre(
        name="metal",
        tempo=(140.0, 200.0),
        p_major=0.1,
        scales=("harmonic_minor", "phrygian"),
        major=("I5 bVII5 bVI5 bVII5",),
        minor=("i5 bVI5 bVII5 i5", "i5 bII5 i5 bVII5", "i5 i5 bVI5 V5", "i5 iv5 bVI5 V5"),
        chords_per_bar=1,
        p_triple=0.0,
        swing=(0.5, 0.5),
        kit="metal",
        patterns=("metal",),
        p_drums=1.0,
        leads=("lead_guitar", "voice"),
        comps=("dist_guitar",),
        basses=("pick_bass",),
        pads=("choir", "strings"),
        comp_styles=("power",),
        bass_styles=("root16",),
        lead_density=1.3,
        energy=(0.75, 1.0),
        brightness=(0.6, 0.9),
        reverb=(0.5, 1.0),
        form=("intro", "verse", "chorus", "verse", "solo", "chorus", "breakdown", "chorus"),
        share=0.08,
        appeal=0.06,
        map_xy=(1.1, -0.7),
        humanize=0.002,
    ),
    Genre(
        name="pop",
        tempo=(92.0, 128.0),
        p_major=0.72,
        scales=("major", "minor"),
        major=("I V vi IV", "vi IV I V", "I vi IV V", "IV I V vi", "Iadd9 V vi7 IVmaj7"),
        minor=("i bVI bIII bVII", "i bVII bVI bVII", "i iv bVI bVII"),
        chords_per_bar=1,
        p_triple=0.0,
        swing=(0.5, 0.55),
        kit="acoustic",
        patterns=("pop",),
        p_drums=1.0,
        leads=("voice",),
        comps=("piano", "epiano", "pluck_synth", "clean_guitar"),
        basses=("finger_bass", "synth_bass"),
        pads=("synth_pad", "strings"),
        comp_styles=("block", "offbeat", "strum"),
        bass_styles=("root8", "synco"),
        lead_density=1.1,
        energy=(0.45, 0.8),
        brightness=(0.55, 0.85),
        reverb=(0.9, 1.8),
        form=("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro"),
        share=0.17,
        appeal=0.22,
        map_xy=(-0.1, 0.0),
        humanize=0.003,
        sidechain=0.15,
    ),
    Genre(
        name="electronic",
        tempo=(118.0, 140.0),
        p_major=0.4,
        scales=("minor", "minor"),
        major=("I V vi IV", "IVmaj7 V vi7 I"),
        minor=("i bVI bIII bVII", "i iv bVI bVII", "i7 bVImaj7", "i i bVI bVII"),
        chords_per_bar=1,
        p_triple=0.0,
        swing=(0.5, 0.5),
        kit="electronic",
        patterns=("four_floor", "breakbeat"),
        p_drums=1.0,
        leads=("saw_lead", "pluck_synth", "square_lead"),
        comps=("supersaw", "pluck_synth", "synth_pad"),
        basses=("synth_bass",),
        pads=("synth_pad", "supersaw"),
        comp_styles=("arp", "offbeat", "pad"),
        bass_styles=("offbeat", "root8"),
        lead_density=1.6,
        energy=(0.55, 0.95),
        brightness=(0.5, 0.9),
        reverb=(1.2, 2.5),
        form=("intro", "build", "drop", "breakdown", "build", "drop", "outro"),
        share=0.14,
        appeal=0.15,
        map_xy=(-0.6, 1.2),
        humanize=0.0,
        sidechain=0.6,
    ),
    Genre(
        name="hiphop",
        tempo=(72.0, 98.0),
        p_major=0.3,
        scales=("minor", "dorian"),
        major=("Imaj7 vi7 ii7 V7", "IVmaj7 iii7 ii7 Imaj7"),
        minor=("i7 iv7", "i9 bVImaj7", "i7 bVIImaj7 bVImaj7 V7", "i7 i7 iv7 bVI7"),
        chords_per_bar=1,
        p_triple=0.0,
        swing=(0.54, 0.64),
        kit="808",
        patterns=("boom_bap", "trap"),
        p_drums=1.0,
        leads=("voice",),
        comps=("epiano", "piano", "pluck_synth", "strings"),
        basses=("sub_808",),
        pads=("synth_pad", "strings"),
        comp_styles=("block", "pad"),
        bass_styles=("808",),
        lead_density=2.2,
        energy=(0.4, 0.8),
        brightness=(0.3, 0.65),
        reverb=(0.5, 1.2),
        form=("intro", "verse", "chorus", "verse", "chorus", "outro"),
        share=0.12,
        appeal=0.13,
        map_xy=(0.1, 0.7),
        humanize=0.004,
        sidechain=0.1,
    ),
)

GENRE_INDEX: dict[str, int] = {genre.name: i for i, genre in enumerate(GENRES)}
