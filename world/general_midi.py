"""General MIDI for the synthetic world: the programs, drum kits and production of each artist.

Pure data plus one draw. Every world instrument (`style.INSTRUMENTS`) has one or more
General MIDI programs (0-based, bank 0) and every world kit one or more GM drum kits
(bank 128, played on MIDI channel 10); an artist picks its own program for each
instrument and its own kit, so two artists of a genre with the same instruments still
sound different, as two bands with different gear do. The artist's production adds a
velocity curve, a register shift of the accompaniment and its room and mix: reverb size
and level, compression, EQ shelves and stereo width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from world.catalogue import Artist
from world.style import GENRES

# World instrument -> GM programs an artist may pick from (names as in FluidR3_GM).
GM_PROGRAMS: dict[str, tuple[int, ...]] = {
    "piano": (0, 1),  # Yamaha Grand, Bright Yamaha Grand
    "epiano": (4, 5, 2),  # Rhodes EP, Legend EP 2, Electric Piano
    "organ": (16, 17, 18),  # Drawbar, Percussive, Rock Organ
    "nylon": (24,),
    "steel": (25,),
    "clean_guitar": (27, 26),  # Clean Guitar, Jazz Guitar
    "dist_guitar": (30, 29),  # Distortion, Overdrive Guitar
    "lead_guitar": (29, 30),
    "strings": (48, 49),  # Strings, Slow Strings
    "violin": (40, 41),  # Violin, Viola
    "flute": (73, 72),  # Flute, Piccolo
    "clarinet": (71,),
    "sax": (65, 66, 64),  # Alto, Tenor, Soprano Sax
    "brass": (61, 56, 57),  # Brass Section, Trumpet, Trombone
    "saw_lead": (81, 86),  # Saw Wave, Fifth Sawtooth Wave
    "square_lead": (80, 82),  # Square Lead, Calliope Lead
    "supersaw": (90, 62),  # Polysynth, Synth Brass 1
    "synth_pad": (89, 94, 95, 88),  # Warm, Halo, Sweep Pad, Fantasia
    "pluck_synth": (84, 98, 6),  # Charang, Crystal, Harpsichord
    "vibraphone": (11,),
    "marimba": (12, 13),  # Marimba, Xylophone
    "bells": (14, 9, 10),  # Tubular Bells, Glockenspiel, Music Box
    "voice": (85, 53, 54),  # Solo Vox, Ohh Voices, Synth Voice (no words: see README)
    "choir": (52, 53),  # Ahh Choir, Ohh Voices
    "upright_bass": (32,),
    "finger_bass": (33,),
    "pick_bass": (34,),
    "synth_bass": (38, 39),
    "sub_808": (38, 87),  # Synth Bass 1, Bass & Lead
}

# World kit -> GM drum kits (bank 128 presets of FluidR3_GM).
GM_KITS: dict[str, tuple[int, ...]] = {
    "acoustic": (0, 8),  # Standard, Room
    "rock": (16, 8, 0),  # Power, Room, Standard
    "metal": (16, 0),
    "electronic": (24, 25),  # Electronic, TR-808
    "808": (25,),
    "jazz": (32, 40),  # Jazz, Brush
    "soft": (40, 8),
}
DRUM_BANK = 128
DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0

# World drum voice -> GM percussion key, and how long the hit rings before its note-off (s).
GM_DRUM_KEYS: dict[str, tuple[int, float]] = {
    "kick": (36, 0.5),
    "snare": (38, 0.5),
    "clap": (39, 0.5),
    "hat": (42, 0.3),
    "open": (46, 0.8),
    "ride": (51, 1.5),
    "crash": (49, 2.0),
    "shaker": (82, 0.3),
    "tambourine": (54, 0.5),
}

# Genre -> (reverb wet level range, compressor ratio range): a classical hall is wet and
# barely compressed, a metal or electronic master dry and squashed.
GENRE_ROOM: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "ambient": ((0.35, 0.55), (1.5, 2.5)),
    "classical": ((0.3, 0.45), (1.2, 2.0)),
    "folk": ((0.15, 0.3), (2.0, 3.0)),
    "jazz": ((0.12, 0.25), (1.5, 2.5)),
    "blues": ((0.12, 0.25), (2.0, 3.5)),
    "rock": ((0.1, 0.22), (3.0, 5.0)),
    "metal": ((0.06, 0.15), (4.0, 8.0)),
    "pop": ((0.12, 0.25), (3.0, 6.0)),
    "electronic": ((0.15, 0.3), (4.0, 8.0)),
    "hiphop": ((0.06, 0.15), (3.0, 6.0)),
}


@dataclass(frozen=True)
class Production:
    """One artist's gear and studio: GM programs, drum kit, playing and mix."""

    programs: dict[str, int]  # world instrument -> GM program
    kit: int  # GM drum kit (bank 128 preset)
    velocity_floor: float  # MIDI velocity of the softest note, as a share of 127
    velocity_curve: float  # exponent on the score's velocity (< 1 harder, > 1 softer playing)
    register: int  # semitones added to the accompaniment (comp and pad)
    reverb_wet: float
    reverb_damping: float
    compressor_ratio: float
    compressor_threshold_db: float
    low_shelf_db: float  # at 120 Hz
    high_shelf_db: float  # at 5 kHz
    width: float  # stereo width of the reverb

    def truth(self) -> dict[str, Any]:
        """For truth.json, floats rounded."""
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def draw_production(rng: np.random.Generator, artist: Artist) -> Production:
    """The artist's production, drawn within its genre's conventions."""
    genre = GENRES[artist.genre]
    kit_name = genre.kit
    wet, ratio = GENRE_ROOM[genre.name]
    return Production(
        programs={name: int(rng.choice(options)) for name, options in GM_PROGRAMS.items()},
        kit=int(rng.choice(GM_KITS[kit_name])),
        velocity_floor=float(rng.uniform(0.15, 0.4)),
        velocity_curve=float(np.exp(rng.normal(0.0, 0.3))),
        register=int(rng.choice([-12, 0, 0, 12])),
        reverb_wet=float(rng.uniform(*wet)),
        reverb_damping=float(rng.uniform(0.2, 0.8)),
        compressor_ratio=float(rng.uniform(*ratio)),
        compressor_threshold_db=float(rng.uniform(-24.0, -10.0)),
        low_shelf_db=float(rng.normal(0.0, 2.5)),
        high_shelf_db=float(rng.normal(0.0, 2.5)),
        width=float(rng.uniform(0.5, 1.0)),
    )


# What of an artist's production a listener hears as its "sound", one axis each.
SOUND_AXES = ("reverb", "compression", "low_shelf", "high_shelf", "touch", "register")


def production_sound(productions: list[Production]) -> np.ndarray:
    """(n_artists, len(SOUND_AXES)) the audible production of each artist, standardised over
    the artists: room (reverb level), squash (log compressor ratio), bass and treble
    shelves, touch (log velocity curve) and accompaniment register."""
    raw = np.array(
        [
            [
                p.reverb_wet,
                np.log(p.compressor_ratio),
                p.low_shelf_db,
                p.high_shelf_db,
                np.log(p.velocity_curve),
                p.register / 12.0,
            ]
            for p in productions
        ]
    )
    return (raw - raw.mean(axis=0)) / (raw.std(axis=0) + 1e-9)
