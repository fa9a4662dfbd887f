"""The catalogue of the synthetic world: artists with a sound of their own, and their songs.

An artist belongs to a genre and has a sound within it (tempo, key and mode tendencies,
signature instruments, a singer's vocal tract, timbre, reverb, swing, drum tuning) and a
popularity that cannot be heard (power law). A song draws its attributes from its artist's
tendencies; `Song` holds everything `world.synth` needs to render it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from world.names import artist_name, song_ids, song_title
from world.style import GENRES, INSTRUMENTS, VOWELS

SONGS_PER_ARTIST = 8
ARTIST_POPULARITY_EXPONENT = 1.1  # Pareto tail of artist popularity


@dataclass(frozen=True)
class Artist:
    """An artist: genre, inaudible popularity, and the tendencies that make up its sound."""

    index: int
    name: str
    genre: int
    popularity: float
    tempo: float
    key: int
    p_major: float
    energy: float
    brightness: float
    lead: str
    comp: str
    bass: str
    pad: str
    comp_style: str
    bass_style: str
    pattern: str
    formant_scale: float  # the singer's vocal tract: < 1 deeper, > 1 higher voice
    vowels: tuple[int, ...]
    vibrato: float  # multiplies the instruments' vibrato depth
    tilt: float  # added to every instrument's spectral tilt (darker > 0)
    reverb: float
    swing: float
    drum_tune: float  # multiplies the kit's pitches
    width: float  # stereo spread of accompaniment


@dataclass(frozen=True)
class Song:
    """A song's generative attributes; `seed` drives everything left to chance in rendering."""

    index: int
    song_id: str
    title: str
    artist: int
    genre: int
    tempo: float
    key: int
    major: bool
    scale: str
    meter: int
    progression: str
    bridge_progression: str
    energy: float
    brightness: float
    lead: str
    comp: str
    bass: str
    pad: str
    comp_style: str
    bass_style: str
    pattern: str
    has_drums: bool
    start_section: int
    popularity: float
    seed: int

    def groove(self) -> str:
        """The drum groove heard: the pattern, "waltz" in 3/4, "none" without drums."""
        if not self.has_drums:
            return "none"
        return "waltz" if self.meter == 3 else self.pattern

    def families(self) -> tuple[str, ...]:
        """Instrument families heard in the song (lead, accompaniment and pad)."""
        return tuple(
            sorted({INSTRUMENTS[name].family for name in (self.lead, self.comp, self.pad)})
        )


def _within(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _choose(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _draw_artist(
    rng: np.random.Generator, index: int, genre_index: int, name: str, popularity: float
) -> Artist:
    genre = GENRES[genre_index]
    low, high = np.log(genre.tempo[0] * 1.05), np.log(genre.tempo[1] / 1.05)
    return Artist(
        index=index,
        name=name,
        genre=genre_index,
        popularity=popularity,
        tempo=float(np.exp(rng.uniform(low, high))),
        key=int(rng.integers(12)),
        p_major=float(np.clip(genre.p_major + rng.normal(0.0, 0.2), 0.05, 0.95)),
        energy=_within(rng, genre.energy),
        brightness=_within(rng, genre.brightness),
        lead=_choose(rng, genre.leads),
        comp=_choose(rng, genre.comps),
        bass=_choose(rng, genre.basses),
        pad=_choose(rng, genre.pads),
        comp_style=_choose(rng, genre.comp_styles),
        bass_style=_choose(rng, genre.bass_styles),
        pattern=_choose(rng, genre.patterns),
        formant_scale=float(rng.choice([0.88, 1.12]) * np.exp(rng.normal(0.0, 0.04))),
        vowels=tuple(int(v) for v in np.sort(rng.choice(len(VOWELS), size=3, replace=False))),
        vibrato=float(np.exp(rng.normal(0.0, 0.35))),
        tilt=float(rng.normal(0.0, 0.25)),
        reverb=_within(rng, genre.reverb),
        swing=_within(rng, genre.swing),
        drum_tune=float(np.exp(rng.normal(0.0, 0.1))),
        width=float(rng.uniform(0.2, 0.8)),
    )


def _draw_song(rng: np.random.Generator, index: int, song_id: str, artist: Artist) -> Song:
    genre = GENRES[artist.genre]
    major = bool(rng.random() < artist.p_major)
    progressions = genre.major if major else genre.minor
    progression = _choose(rng, progressions)
    signature = rng.random(4) < 0.75
    tempo = artist.tempo * np.exp(rng.normal(0.0, 0.06))
    return Song(
        index=index,
        song_id=song_id,
        title=song_title(rng),
        artist=artist.index,
        genre=artist.genre,
        tempo=float(np.clip(tempo, genre.tempo[0], genre.tempo[1])),
        key=artist.key if rng.random() < 0.4 else int(rng.integers(12)),
        major=major,
        scale=genre.scales[0 if major else 1],
        meter=3 if rng.random() < genre.p_triple else 4,
        progression=progression,
        bridge_progression=_choose(rng, progressions),
        energy=float(np.clip(artist.energy + rng.normal(0.0, 0.1), 0.0, 1.0)),
        brightness=float(np.clip(artist.brightness + rng.normal(0.0, 0.08), 0.0, 1.0)),
        lead=artist.lead if signature[0] else _choose(rng, genre.leads),
        comp=artist.comp if signature[1] else _choose(rng, genre.comps),
        bass=artist.bass if signature[2] else _choose(rng, genre.basses),
        pad=artist.pad if signature[3] else _choose(rng, genre.pads),
        comp_style=artist.comp_style if rng.random() < 0.7 else _choose(rng, genre.comp_styles),
        bass_style=artist.bass_style if rng.random() < 0.7 else _choose(rng, genre.bass_styles),
        pattern=artist.pattern,
        has_drums=bool(rng.random() < genre.p_drums),
        start_section=int(rng.integers(len(genre.form))),
        popularity=float(artist.popularity * np.exp(rng.normal(0.0, 0.8))),
        seed=int(rng.integers(2**62)),
    )


def draw_catalogue(rng: np.random.Generator, n_songs: int) -> tuple[list[Artist], list[Song]]:
    """Draw about n_songs / 8 artists (at least one song each) and `n_songs` songs.

    Songs are returned in song-id order, so that an artist's songs are spread over the
    catalogue file as in a real one.
    """
    n_artists = max(1, round(n_songs / SONGS_PER_ARTIST))
    shares = np.array([genre.share for genre in GENRES])
    genres = rng.choice(len(GENRES), size=n_artists, p=shares / shares.sum())
    popularity = (1.0 - rng.random(n_artists)) ** (-1.0 / ARTIST_POPULARITY_EXPONENT)
    artists: list[Artist] = []
    names: set[str] = set()
    for index in range(n_artists):
        genre_name = GENRES[int(genres[index])].name
        name = artist_name(rng, genre_name)
        while name in names:
            name = artist_name(rng, genre_name)
        names.add(name)
        artists.append(_draw_artist(rng, index, int(genres[index]), name, float(popularity[index])))
    # Prolific artists tend to be the popular ones: every artist gets one song, the rest
    # are shared out in proportion to sqrt(popularity).
    weights = np.sqrt(popularity)
    extra = rng.multinomial(n_songs - n_artists, weights / weights.sum())
    song_artists = np.repeat(np.arange(n_artists), 1 + extra)
    rng.shuffle(song_artists)
    ids = sorted(song_ids(rng, n_songs))
    songs = [_draw_song(rng, i, ids[i], artists[int(a)]) for i, a in enumerate(song_artists)]
    return artists, songs


def artist_truth(artist: Artist) -> dict[str, Any]:
    """The artist's attributes for truth.json (genre by name, floats rounded)."""
    return _rounded(asdict(artist) | {"genre": GENRES[artist.genre].name})


def song_truth(song: Song) -> dict[str, Any]:
    """The song's attributes for truth.json (genre by name, mode, instrument families)."""
    fields = asdict(song)
    del fields["seed"]
    fields |= {
        "genre": GENRES[song.genre].name,
        "mode": "major" if song.major else "minor",
        "families": list(song.families()),
        "groove": song.groove(),
    }
    return _rounded(fields)


def _rounded(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in fields.items()}
