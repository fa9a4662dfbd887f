"""Artist names as the cold-start split, the artist prior and the service compare them.

The one place where an artist string becomes the key that says "same artist": a catalogue
writes "Nina Holm", "nina holm ", "Nina Holm feat. Sam Eriksen" and "NINA HOLM ft. Uma"
for one artist's songs, and all of them must reach the same training songs. The rule:

1. Unicode NFKC (full-width letters, ligatures, composed accents become one spelling);
2. a featured-artist suffix is cut: from the first " feat." / " feat " / " ft." / " ft " /
   " featuring " (also "(feat. ...)" and "[ft. ...]"), case-insensitive;
3. whitespace runs become one space, surrounding whitespace goes;
4. `str.casefold()` (case-insensitive, also for "ß" and other non-ASCII letters).

A missing artist (None, NaN, empty or only whitespace after the rule) is `UNKNOWN_ARTIST`,
the empty string: such a song has no artist to learn from, i.e. it is a cold artist, and
it is never grouped with other unknown ones.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

UNKNOWN_ARTIST = ""
MAX_ARTIST_CHARS = 1000
"""Longer names are cut to this many characters after normalising (a real artist name is
far shorter; this bounds what a request can make the service hash and store)."""

# Only after some name: "Ft. Knox" alone is a name, "Knox ft. Uma" is Knox.
_FEATURING = re.compile(
    r"(?<=\S)[\s(\[]+(?:feat\.?|ft\.?|featuring)(?=\s|$).*\Z", re.IGNORECASE | re.DOTALL
)
_SPACES = re.compile(r"\s+")


def normalise_artist(name: object) -> str:
    """The comparison key of one artist string (module docstring); `UNKNOWN_ARTIST` for a
    missing one. Never raises: anything that is not a string is unknown."""
    if not isinstance(name, str):
        return UNKNOWN_ARTIST
    text = unicodedata.normalize("NFKC", name)
    text = _FEATURING.sub("", text)
    text = _SPACES.sub(" ", text).strip().casefold()
    return text[:MAX_ARTIST_CHARS]


def normalise_artists(names: Iterable[object]) -> list[str]:
    """`normalise_artist` of each name, in order (e.g. songs.csv's artist column)."""
    return [normalise_artist(name) for name in names]
