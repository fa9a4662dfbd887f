"""Names and ids of the synthetic world: artist names, song titles, song and user ids.

Ids follow the Million Song Dataset Taste Profile (`SO` + 16 characters for songs,
40 hex digits for users). Names are drawn per genre and now and then carry commas,
quotes, ampersands and accents, so that the catalogue file exercises CSV quoting and
UTF-8 the way a real one does.
"""

from __future__ import annotations

import numpy as np

_ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
_HEX = np.array(list("0123456789abcdef"))

_FIRST = (
    "Ada",
    "Ben",
    "Clara",
    "Dmitri",
    "Elena",
    "Felix",
    "Greta",
    "Hugo",
    "Iris",
    "Jonas",
    "Kai",
    "Lena",
    "Marco",
    "Nina",
    "Oscar",
    "Paula",
    "Quinn",
    "Rosa",
    "Sam",
    "Tomás",
    "Uma",
    "Víctor",
    "Wren",
    "Yara",
    "Zoë",
    "Amélie",
    "Bjørn",
    "Chloé",
    "Darius",
    "Eli",
)
_LAST = (
    "Abbott",
    "Brandt",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fontaine",
    "García",
    "Holm",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "O'Brien",
    "Petrov",
    "Quiroga",
    "Rossi",
    "Sørensen",
    "Takahashi",
    "Umeh",
    "Vasquez",
    "Weber",
    "Young",
    "Zieliński",
    "Baker",
    "Hart",
    "Stone",
    "Rivers",
    "Black",
)
_ADJECTIVES = (
    "Velvet",
    "Electric",
    "Silent",
    "Golden",
    "Broken",
    "Neon",
    "Wild",
    "Blue",
    "Crimson",
    "Hollow",
    "Midnight",
    "Paper",
    "Lonely",
    "Burning",
    "Frozen",
    "Lucky",
    "Distant",
    "Gentle",
    "Savage",
    "Quiet",
    "Restless",
    "Silver",
    "Sunday",
    "Wooden",
)
_NOUNS = (
    "River",
    "Heart",
    "Owl",
    "Engine",
    "Garden",
    "Signal",
    "Harbour",
    "Mirror",
    "Wolf",
    "Lantern",
    "Storm",
    "Satellite",
    "Shadow",
    "Horizon",
    "Ember",
    "Canyon",
    "Echo",
    "Orchard",
    "Circuit",
    "Tide",
    "Comet",
    "Meadow",
    "Thunder",
    "Window",
    "Feather",
)
_PLURALS = (
    "Owls",
    "Engines",
    "Wolves",
    "Lanterns",
    "Satellites",
    "Shadows",
    "Rivers",
    "Strangers",
    "Saints",
    "Ghosts",
    "Foxes",
    "Kings",
    "Machines",
    "Sparrows",
    "Tides",
)
_DARK = (
    "Abyss",
    "Obsidian",
    "Wrath",
    "Carrion",
    "Dread",
    "Pyre",
    "Void",
    "Gallows",
    "Ruin",
    "Tyrant",
    "Sepulchre",
    "Blight",
)
_PLACES = ("Vienna", "Lisbon", "Prague", "Kyoto", "Oslo", "Seville", "Dublin", "Riga")
_SLANG = ("Flow", "Cash", "Ghost", "Saint", "Blaze", "Nova", "Vinyl", "Kane", "Smoke", "Ace")
_VERBS = (
    "Running",
    "Falling",
    "Dancing",
    "Waiting",
    "Burning",
    "Dreaming",
    "Drifting",
    "Calling",
    "Fading",
    "Rising",
    "Breaking",
    "Shining",
)
_TAILS = (" (Remix)", " (Live)", " (Acoustic)", " (Radio Edit)", " - Remastered", " (Demo)")


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def artist_name(rng: np.random.Generator, genre: str) -> str:
    """A plausible artist name for `genre` (may hold commas, quotes, '&' and accents)."""
    first, last = _pick(rng, _FIRST), _pick(rng, _LAST)
    adjective, noun, plural = _pick(rng, _ADJECTIVES), _pick(rng, _NOUNS), _pick(rng, _PLURALS)
    by_genre = {
        "classical": (
            f"{last}, {first}",
            f"{_pick(rng, _PLACES)} Chamber Orchestra",
            f"{_pick(rng, _PLACES)} {_pick(rng, ('String Quartet', 'Philharmonic'))}",
        ),
        "jazz": (f"{first} {last} Trio", f"{first} {last} Quartet", f"The {last} Quintet"),
        "metal": (
            f"{_pick(rng, _DARK)}",
            f"{_pick(rng, _DARK)} of {_pick(rng, _DARK)}",
            f"{adjective} {_pick(rng, _DARK)}",
        ),
        "hiphop": (
            f"MC {_pick(rng, _SLANG)}",
            f"Lil {_pick(rng, _SLANG)}",
            f"{_pick(rng, _SLANG)} {last}",
            f"Young {_pick(rng, _SLANG)}",
        ),
        "electronic": (
            f"DJ {noun}",
            f"{noun.upper()}{int(rng.integers(2, 99))}",
            f"{adjective} {noun}",
            f"{noun}{_pick(rng, ('wave', 'tronic', 'lab'))}",
        ),
        "blues": (
            f"{_pick(rng, ('Blind', 'Muddy', 'Big', 'Little'))} {first} {last}",
            f"{first} {last} & the {plural}",
        ),
    }
    generic = (
        f"The {adjective} {plural}",
        f"{first} {last}",
        f"{adjective} {noun}",
        f"{first} & the {plural}",
        f'{first} "{noun}" {last}',
        f"{noun} {noun}s",
    )
    return _pick(rng, by_genre.get(genre, generic) + generic[:2])


def song_title(rng: np.random.Generator) -> str:
    """A plausible song title (sometimes with quotes, commas or a version tail)."""
    adjective, noun, verb = _pick(rng, _ADJECTIVES), _pick(rng, _NOUNS), _pick(rng, _VERBS)
    forms = (
        f"{adjective} {noun}",
        f"{noun} of the {_pick(rng, _NOUNS)}",
        f"The {noun}",
        f"{verb} {noun}",
        f"{verb}",
        f'Don\'t Say "{noun}"',
        f"{noun}, {noun}",
        f"{adjective} {noun} No. {int(rng.integers(1, 10))}",
        f"{verb} in {_pick(rng, _PLACES)}",
    )
    title = _pick(rng, forms)
    if rng.random() < 0.08:
        title += _pick(rng, _TAILS)
    return title


def song_ids(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct Taste-Profile-style song ids, `SO` + 16 upper-case letters and digits."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        for row in _ID_CHARS[rng.integers(len(_ID_CHARS), size=(n - len(ids), 16))]:
            song_id = "SO" + "".join(row)
            if song_id not in seen:
                seen.add(song_id)
                ids.append(song_id)
    return ids


def user_ids(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct 40-hex-digit user ids (the Taste Profile's sha1-like ids)."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        for row in _HEX[rng.integers(16, size=(n - len(ids), 40))]:
            user_id = "".join(row)
            if user_id not in seen:
                seen.add(user_id)
                ids.append(user_id)
    return ids
