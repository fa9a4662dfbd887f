"""Artist names: one normalisation, so every spelling of an artist reaches its songs."""

from __future__ import annotations

import pytest

from corpus.artists import MAX_ARTIST_CHARS, UNKNOWN_ARTIST, normalise_artist


@pytest.mark.parametrize(
    "spelling",
    [
        "Nina Holm",
        "  nina   holm\t",
        "NINA HOLM",
        "Nina Holm feat. Sam Eriksen",
        "Nina Holm ft. Uma",
        "Nina Holm ft Uma",
        "Nina Holm featuring Uma & Kai",
        "Nina Holm (feat. Uma)",
        "Nina Holm [ft. Uma]",
        "Nina Holm FEAT. Uma",
        "Ｎｉｎａ Ｈｏｌｍ",  # full-width letters
    ],
)
def test_spellings_of_one_artist_agree(spelling: str) -> None:
    assert normalise_artist(spelling) == "nina holm"


@pytest.mark.parametrize("missing", [None, float("nan"), "", "   ", "\n\t", 3])
def test_a_missing_artist_is_unknown(missing: object) -> None:
    assert normalise_artist(missing) == UNKNOWN_ARTIST


def test_names_that_only_look_like_a_suffix_stay() -> None:
    assert normalise_artist("Ft. Knox") == "ft. knox"
    assert normalise_artist("Daft Punk") == "daft punk"
    assert normalise_artist("Feat") == "feat"
    assert normalise_artist("Straße") == "strasse"  # casefold, not lower
    assert normalise_artist("Björk") == normalise_artist("Bjo\u0308rk")  # composed or not


def test_long_names_are_bounded() -> None:
    assert len(normalise_artist("x" * 10_000)) == MAX_ARTIST_CHARS
