"""Listeners of the synthetic world: their taste, their habits, and the listens they leave.

A listener's affinity for a song is mostly audible and partly not:
- audible: a position on a map of genres with a breadth (eclectic or focused), a
  preferred tempo, energy and brightness with how much each matters, a leaning to major
  or minor, and likes and dislikes of instrument families and drum grooves; optionally
  (`production_taste` > 0, sampled instruments only) likes and dislikes of the axes of an
  artist's production (`general_midi.SOUND_AXES`: room, compression, EQ, touch, register), so
  that telling one artist's sound from another's helps predict listening;
- inaudible: loyalty to a few favourite artists (chosen among popular artists of the
  genres they like) and a taste for what is popular.
Each listener samples as many distinct songs as their activity (power law) without
replacement, in proportion to exp(affinity) (Gumbel top-k), and plays each one a
heavy-tailed number of times that grows with the affinity. Everything is vectorised over
chunks of (users, songs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from world.catalogue import Artist, Song
from world.names import user_ids
from world.style import FAMILIES, GENRES, GROOVES

MIN_ACTIVITY = 8  # fewest distinct songs a listener plays (the Taste Profile kept users with >= 10)
ACTIVITY_EXPONENT = 1.2  # Pareto tail of the number of songs per listener
GENRE_WEIGHT = 0.3  # how much the distance on the genre map matters
_CHUNK = 256  # users per block of the (users, songs) affinity matrix


@dataclass(frozen=True)
class SongFeatures:
    """What listeners react to, one row per song (n_songs,) or (n_songs, n_families)."""

    genre: np.ndarray  # int
    log_tempo: np.ndarray
    energy: np.ndarray
    brightness: np.ndarray
    major: np.ndarray  # +1 major, -1 minor
    families: np.ndarray  # (n_songs, n_families) 0/1
    groove: np.ndarray  # int, index in GROOVES
    artist: np.ndarray  # int
    popularity: np.ndarray  # standardised log popularity
    sound: np.ndarray | None = None  # (n_songs, n_axes) the artist's production, standardised

    @classmethod
    def of(cls, songs: list[Song], artist_sound: np.ndarray | None = None) -> SongFeatures:
        """Features of `songs`; `artist_sound` (n_artists, n_axes) adds each song's
        artist's production (`general_midi.production_sound`)."""
        families = np.zeros((len(songs), len(FAMILIES)), dtype=np.float32)
        for i, song in enumerate(songs):
            for family in song.families():
                if family in FAMILIES:
                    families[i, FAMILIES.index(family)] = 1.0
        log_popularity = np.log([song.popularity for song in songs])
        return cls(
            genre=np.array([song.genre for song in songs]),
            log_tempo=np.log([song.tempo for song in songs]),
            energy=np.array([song.energy for song in songs]),
            brightness=np.array([song.brightness for song in songs]),
            major=np.where([song.major for song in songs], 1.0, -1.0),
            families=families,
            groove=np.array([GROOVES.index(song.groove()) for song in songs]),
            artist=np.array([song.artist for song in songs]),
            popularity=(log_popularity - log_popularity.mean()) / (log_popularity.std() + 1e-9),
            sound=None if artist_sound is None else artist_sound[[song.artist for song in songs]],
        )


@dataclass(frozen=True)
class Listeners:
    """Every listener's taste and habits; arrays have one row per user."""

    user_ids: list[str]
    anchor: np.ndarray  # (n_users,) the genre their taste grew from
    genre_affinity: np.ndarray  # (n_users, n_genres) log-weights
    tempo: np.ndarray  # preferred log bpm
    tempo_width: np.ndarray
    tempo_weight: np.ndarray
    energy: np.ndarray
    energy_weight: np.ndarray
    brightness: np.ndarray
    brightness_weight: np.ndarray
    mode: np.ndarray  # > 0 likes major, < 0 likes minor
    families: np.ndarray  # (n_users, n_families) likes (> 0) and dislikes
    grooves: np.ndarray  # (n_users, n_grooves) likes and dislikes of drum grooves
    favourites: list[np.ndarray]  # artist indices per user
    loyalty: np.ndarray  # affinity added to a favourite artist's songs
    mainstream: np.ndarray  # weight of song popularity
    activity: np.ndarray  # distinct songs to listen to
    repeat: np.ndarray  # scale of the play counts
    sound: np.ndarray | None = None  # (n_users, n_axes) likes and dislikes of production axes

    def truth(self, artists: list[Artist]) -> list[dict[str, Any]]:
        """One dict per user for truth.json (genre names, bpm, artist names)."""
        rows = []
        for u, user_id in enumerate(self.user_ids):
            rows.append(
                {
                    "user_id": user_id,
                    "anchor_genre": GENRES[int(self.anchor[u])].name,
                    "genre_affinity": {
                        g.name: round(float(self.genre_affinity[u, i]), 3)
                        for i, g in enumerate(GENRES)
                    },
                    "tempo_bpm": round(float(np.exp(self.tempo[u])), 1),
                    "tempo_width": round(float(self.tempo_width[u]), 3),
                    "tempo_weight": round(float(self.tempo_weight[u]), 3),
                    "energy": round(float(self.energy[u]), 3),
                    "energy_weight": round(float(self.energy_weight[u]), 3),
                    "brightness": round(float(self.brightness[u]), 3),
                    "brightness_weight": round(float(self.brightness_weight[u]), 3),
                    "major_preference": round(float(self.mode[u]), 3),
                    "families": {
                        f: round(float(self.families[u, i]), 3) for i, f in enumerate(FAMILIES)
                    },
                    "grooves": {
                        g: round(float(self.grooves[u, i]), 3) for i, g in enumerate(GROOVES)
                    },
                    "favourite_artists": [artists[int(a)].name for a in self.favourites[u]],
                    "loyalty": round(float(self.loyalty[u]), 3),
                    "mainstream": round(float(self.mainstream[u]), 3),
                    "activity": int(self.activity[u]),
                    "repeat": round(float(self.repeat[u]), 3),
                }
                | (
                    {}
                    if self.sound is None
                    else {"production_taste": [round(float(w), 3) for w in self.sound[u]]}
                )
            )
        return rows


def draw_listeners(
    rng: np.random.Generator, n_users: int, artists: list[Artist], n_songs: int
) -> Listeners:
    """Draw `n_users` listeners; activity is capped at half the catalogue."""
    n_genres = len(GENRES)
    appeal = np.array([g.appeal for g in GENRES])
    anchor = rng.choice(n_genres, size=n_users, p=appeal / appeal.sum())
    genre_map = np.array([g.map_xy for g in GENRES])
    centre = genre_map[anchor] + rng.normal(0.0, 0.3, size=(n_users, 2))
    breadth = np.exp(rng.normal(np.log(0.55), 0.35, size=n_users))
    distance2 = ((centre[:, None, :] - genre_map[None, :, :]) ** 2).sum(axis=2)
    genre_affinity = np.maximum(
        -GENRE_WEIGHT * distance2 / (2.0 * breadth[:, None] ** 2)
        + rng.normal(0.0, 0.4, size=(n_users, n_genres)),
        -6.0,
    )

    tempo_mid = np.log([np.sqrt(g.tempo[0] * g.tempo[1]) for g in GENRES])
    energy_mid = np.array([np.mean(g.energy) for g in GENRES])
    brightness_mid = np.array([np.mean(g.brightness) for g in GENRES])

    artist_genre = np.array([a.genre for a in artists])
    artist_popularity = np.array([a.popularity for a in artists])
    n_favourites = np.minimum(1 + rng.poisson(2.5, size=n_users), len(artists))
    favourites = []
    for u in range(n_users):
        weight = artist_popularity**0.7 * np.exp(genre_affinity[u, artist_genre])
        favourites.append(
            np.sort(
                rng.choice(
                    len(artists), size=int(n_favourites[u]), replace=False, p=weight / weight.sum()
                )
            )
        )

    cap = max(MIN_ACTIVITY, n_songs // 2)
    activity = np.floor(MIN_ACTIVITY * (1.0 - rng.random(n_users)) ** (-1.0 / ACTIVITY_EXPONENT))
    return Listeners(
        user_ids=user_ids(rng, n_users),
        anchor=anchor,
        genre_affinity=genre_affinity,
        tempo=tempo_mid[anchor] + rng.normal(0.0, 0.2, size=n_users),
        tempo_width=rng.uniform(0.12, 0.3, size=n_users),
        tempo_weight=rng.uniform(0.5, 2.5, size=n_users),
        energy=np.clip(energy_mid[anchor] + rng.normal(0.0, 0.2, size=n_users), 0.0, 1.0),
        energy_weight=rng.uniform(1.0, 4.0, size=n_users),
        brightness=np.clip(brightness_mid[anchor] + rng.normal(0.0, 0.15, size=n_users), 0.0, 1.0),
        brightness_weight=rng.uniform(0.3, 1.5, size=n_users),
        mode=rng.normal(0.0, 1.2, size=n_users),
        families=rng.normal(0.0, 0.8, size=(n_users, len(FAMILIES))),
        grooves=rng.normal(0.0, 1.0, size=(n_users, len(GROOVES))),
        favourites=favourites,
        loyalty=rng.uniform(1.5, 3.5, size=n_users),
        mainstream=rng.uniform(0.2, 1.0, size=n_users),
        activity=np.minimum(activity, min(cap, n_songs)).astype(np.int64),
        repeat=np.exp(rng.normal(np.log(0.8), 0.5, size=n_users)),
    )


def draw_sound_taste(
    rng: np.random.Generator, n_users: int, n_axes: int, weight: float
) -> np.ndarray:
    """(n_users, n_axes) each listener's likes (> 0) and dislikes of the production axes,
    N(0, weight): with standardised axes, `weight` is the spread this part adds to affinity
    per axis (the instrument families' is 0.8 per family heard)."""
    return rng.normal(0.0, weight, size=(n_users, n_axes))


def audible_affinity(listeners: Listeners, songs: SongFeatures, users: slice) -> np.ndarray:
    """(n_chunk_users, n_songs) the part of affinity that can be heard in the songs."""
    u = users
    score = listeners.genre_affinity[u][:, songs.genre]
    score -= (
        listeners.tempo_weight[u, None]
        * 0.5
        * ((songs.log_tempo[None, :] - listeners.tempo[u, None]) / listeners.tempo_width[u, None])
        ** 2
    )
    score -= (
        listeners.energy_weight[u, None]
        * 4.0
        * (songs.energy[None, :] - listeners.energy[u, None]) ** 2
    )
    score -= (
        listeners.brightness_weight[u, None]
        * 4.0
        * (songs.brightness[None, :] - listeners.brightness[u, None]) ** 2
    )
    score += listeners.mode[u, None] * songs.major[None, :]
    score += listeners.families[u] @ songs.families.T.astype(np.float64)
    score += listeners.grooves[u][:, songs.groove]
    if listeners.sound is not None and songs.sound is not None:
        score += listeners.sound[u] @ songs.sound.T
    return score


def inaudible_affinity(listeners: Listeners, songs: SongFeatures, users: slice) -> np.ndarray:
    """(n_chunk_users, n_songs) the part no recording reveals: favourite artists, popularity."""
    rows = range(*users.indices(len(listeners.user_ids)))
    favourite = np.zeros((len(rows), int(songs.artist.max()) + 1))
    for i, u in enumerate(rows):
        favourite[i, listeners.favourites[u]] = listeners.loyalty[u]
    return (
        favourite[:, songs.artist] + listeners.mainstream[users, None] * songs.popularity[None, :]
    )


def sample_listens(
    rng: np.random.Generator, listeners: Listeners, songs: SongFeatures
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Listens as (user index, song index, play count) int arrays, by user then song.

    Songs are drawn without replacement with probability proportional to exp(affinity)
    (Gumbel top-k); plays = 1 + Poisson(repeat * exp(0.4 z + N(0, 0.8))) where z is the
    song's affinity relative to the user's mean over their songs: mostly 1 to 3, with a
    heavy tail of dozens.
    """
    n_users = len(listeners.user_ids)
    users, items, plays = [], [], []
    for begin in range(0, n_users, _CHUNK):
        chunk = slice(begin, min(begin + _CHUNK, n_users))
        score = audible_affinity(listeners, songs, chunk) + inaudible_affinity(
            listeners, songs, chunk
        )
        order = np.argsort(-(score + rng.gumbel(size=score.shape)), axis=1, kind="stable")
        k = listeners.activity[chunk]
        row = np.repeat(np.arange(len(k)), k)
        col = order[row, np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)]
        by_song = np.lexsort((col, row))
        row, col = row[by_song], col[by_song]
        picked = score[row, col]
        mean = np.bincount(row, weights=picked, minlength=len(k)) / k
        rate = listeners.repeat[chunk][row] * np.exp(
            0.4 * (picked - mean[row]) + rng.normal(0.0, 0.8, size=len(row))
        )
        users.append(row + begin)
        items.append(col)
        plays.append(1 + rng.poisson(rate))
    return np.concatenate(users), np.concatenate(items), np.concatenate(plays)
