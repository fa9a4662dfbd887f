"""The cold-start song split: seeded, popularity-stratified, given test songs, saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artifacts.manifest import ArtifactError
from corpus.split import (
    SongSplit,
    SplitError,
    cold_split,
    listener_counts,
    load_split,
    split_from_file,
    write_split,
)

N_SONGS = 400
N_UNHEARD = 7


@pytest.fixture(scope="module")
def catalogue() -> list[str]:
    return [f"S{i:04d}" for i in range(N_SONGS + N_UNHEARD)]


@pytest.fixture(scope="module")
def listens(catalogue: list[str]) -> pd.DataFrame:
    """Power-law song popularity (1 to ~300 listeners); the last N_UNHEARD songs unheard."""
    rng = np.random.default_rng(3)
    listeners = np.maximum(1, (300 / (1 + rng.permutation(N_SONGS)) ** 0.9).astype(int))
    song_index = np.repeat(np.arange(N_SONGS), listeners)
    user_index = np.concatenate([rng.choice(500, size=n, replace=False) for n in listeners])
    return pd.DataFrame(
        {
            "user_id": pd.Categorical([f"U{i:03d}" for i in user_index]),
            "song_id": pd.Categorical(np.array(catalogue)[song_index]),
            "play_count": np.ones(song_index.size, dtype=np.int32),
        }
    )


def test_split_is_seeded(listens: pd.DataFrame, catalogue: list[str]) -> None:
    first = cold_split(listens, catalogue, seed=1)
    assert cold_split(listens, catalogue, seed=1) == first
    assert cold_split(listens, list(reversed(catalogue)), seed=1) == first  # order-free
    other = cold_split(listens, catalogue, seed=2)
    assert other.test != first.test
    assert other.valid != first.valid


def test_split_partitions_the_catalogue(listens: pd.DataFrame, catalogue: list[str]) -> None:
    split = cold_split(listens, catalogue, test_fraction=0.1, valid_fraction=0.1, seed=0)
    roles = [split.train, split.valid, split.test, split.unlistened]
    assert sorted(sum(roles, [])) == sorted(catalogue)
    assert all(role == sorted(role) for role in roles)
    assert len(split.test) == round(0.1 * N_SONGS)
    assert len(split.valid) == round(0.1 * (N_SONGS - len(split.test)))
    assert split.unlistened == catalogue[N_SONGS:]


def test_test_songs_follow_every_popularity_quantile(
    listens: pd.DataFrame, catalogue: list[str]
) -> None:
    split = cold_split(listens, catalogue, test_fraction=0.1, seed=5)
    counts = listener_counts(listens, catalogue[:N_SONGS])
    test_counts = listener_counts(listens, split.test)
    # For every popularity level c, the test songs with <= c listeners are the expected
    # share of the test set, to within one song: one test song per popularity stratum.
    # (A uniform draw of 40 songs misses this bound at some level almost always.)
    levels = np.unique(counts)
    below = np.searchsorted(np.sort(counts), levels, side="right")
    test_below = np.searchsorted(np.sort(test_counts), levels, side="right")
    expected = below * len(split.test) / N_SONGS
    assert np.abs(test_below - expected).max() <= 1.0
    assert test_counts.min() <= np.quantile(counts, 0.1)
    assert test_counts.max() >= np.quantile(counts, 0.9)
    # the validation songs are stratified too
    valid_counts = listener_counts(listens, split.valid)
    assert valid_counts.min() <= np.quantile(counts, 0.1)
    assert valid_counts.max() >= np.quantile(counts, 0.9)


def test_bad_fractions_are_refused(listens: pd.DataFrame, catalogue: list[str]) -> None:
    with pytest.raises(SplitError, match="test_fraction"):
        cold_split(listens, catalogue, test_fraction=1.0)
    with pytest.raises(SplitError, match="valid_fraction"):
        cold_split(listens, catalogue, valid_fraction=-0.1)
    with pytest.raises(SplitError, match="no training song"):
        cold_split(listens, catalogue, test_fraction=0.999)


def test_given_test_songs(listens: pd.DataFrame, catalogue: list[str], tmp_path: Path) -> None:
    path = tmp_path / "test_songs.txt"
    path.write_text("S0003\n\nS0001\nS0003\n  S0200 \n")
    split = split_from_file(path, listens, catalogue, valid_fraction=0.1, seed=0)
    assert split.test == ["S0001", "S0003", "S0200"]
    assert split.method == "given-test-songs"
    assert not set(split.test) & (set(split.train) | set(split.valid))
    assert len(split.valid) == round(0.1 * (N_SONGS - 3))
    assert split == split_from_file(path, listens, catalogue, valid_fraction=0.1, seed=0)


def test_given_test_songs_must_be_known_and_heard(
    listens: pd.DataFrame, catalogue: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "test_songs.txt"
    path.write_text("S0001\nNOT_A_SONG\n")
    with pytest.raises(SplitError, match="1 song ids not in the catalogue.*NOT_A_SONG"):
        split_from_file(path, listens, catalogue)
    path.write_text(f"S0001\n{catalogue[-1]}\n")
    with pytest.raises(SplitError, match="no listens"):
        split_from_file(path, listens, catalogue)
    with pytest.raises(SplitError, match="missing"):
        split_from_file(tmp_path / "absent.txt", listens, catalogue)


def test_split_round_trip_and_tamper(
    listens: pd.DataFrame, catalogue: list[str], tmp_path: Path
) -> None:
    split = cold_split(listens, catalogue, seed=0)
    manifest = write_split(split, tmp_path, parameters={"test_fraction": 0.1})
    assert manifest["kind"] == "split"
    assert manifest["parameters"]["seed"] == 0
    assert load_split(tmp_path) == split
    path = tmp_path / "split" / "split.json"
    path.write_text(path.read_text().replace(split.test[0], split.train[0], 1))
    with pytest.raises(ArtifactError, match="sha256"):
        load_split(tmp_path)


def test_song_split_defaults() -> None:
    assert SongSplit(train=["a"], valid=[], test=["b"]).unlistened == []


def test_only_holdable_songs_are_held_out(listens: pd.DataFrame, catalogue: list[str]) -> None:
    """A back catalogue without audio trains WMF whole: test and validation songs are drawn
    among the songs with audio only, a tenth of them each, and every other song trains."""
    with_audio = catalogue[::5]
    split = cold_split(listens, catalogue, 0.1, 0.1, seed=4, holdable=with_audio)
    heard_with_audio = set(with_audio) - set(catalogue[N_SONGS:])
    assert set(split.test) | set(split.valid) <= heard_with_audio
    assert len(split.test) == round(0.1 * len(heard_with_audio))
    assert set(catalogue[:N_SONGS]) - heard_with_audio <= set(split.train)
    # every song holdable: the very split drawn without the argument
    everything = cold_split(listens, catalogue, 0.1, 0.1, seed=4, holdable=catalogue)
    assert everything == cold_split(listens, catalogue, 0.1, 0.1, seed=4)


# ---- cold artists ------------------------------------------------------------------------

N_ARTISTS = 50


@pytest.fixture(scope="module")
def artists(catalogue: list[str]) -> list[object]:
    """An artist per song (about 8 songs each), spelt the many ways a catalogue spells one
    name; every 40th song has no artist at all."""
    rng = np.random.default_rng(11)
    names = [f"Artist {i}" for i in rng.integers(N_ARTISTS, size=len(catalogue))]
    spellings = (str, lambda n: f" {n} ", lambda n: f"{n} feat. Guest", str.upper)
    spelt: list[object] = [spellings[i % len(spellings)](name) for i, name in enumerate(names)]
    for i in range(0, len(spelt), 40):
        spelt[i] = None if i % 80 else "   "
    return spelt


def _artist_key(artists: list[object], catalogue: list[str]) -> dict[str, str]:
    from corpus.artists import normalise_artist

    return {song: normalise_artist(name) for song, name in zip(catalogue, artists, strict=True)}


def test_cold_artists_have_no_training_song(
    listens: pd.DataFrame, catalogue: list[str], artists: list[object]
) -> None:
    split = cold_split(listens, catalogue, seed=4, artists=artists, cold_artist_fraction=0.1)
    key = _artist_key(artists, catalogue)
    assert len(split.cold_artists) == round(0.1 * N_ARTISTS)
    train_artists = {key[song] for song in split.train}
    assert not train_artists & set(split.cold_artists)
    heard = set(split.train) | set(split.valid) | set(split.test)
    held_whole = {song for song in heard if key[song] in split.cold_artists}
    assert held_whole <= set(split.test)  # every listened song of a held-out artist
    kinds = dict(zip(split.test, split.test_kinds or [], strict=True))
    assert len(kinds) == len(split.test)
    for song, kind in kinds.items():
        expected = "cold_track" if key[song] and key[song] in train_artists else "cold_artist"
        assert kind == expected, song
    assert all(kinds[song] == "cold_artist" for song in held_whole)
    assert all(kinds[song] == "cold_artist" for song in split.test if not key[song])
    counts = split.kind_counts()
    assert counts["cold_artist"] >= len(held_whole) > 0
    assert counts["cold_track"] >= round(0.1 * N_SONGS) - 5  # drawn songs, nearly all known
    assert sum(counts.values()) == len(split.test)


def test_cold_artist_split_is_seeded(
    listens: pd.DataFrame, catalogue: list[str], artists: list[object]
) -> None:
    first = cold_split(listens, catalogue, seed=1, artists=artists)
    assert cold_split(listens, catalogue, seed=1, artists=artists) == first
    by_song = dict(zip(catalogue, artists, strict=True))
    reordered = list(reversed(catalogue))
    again = cold_split(listens, reordered, seed=1, artists=[by_song[s] for s in reordered])
    assert again == first
    assert cold_split(listens, catalogue, seed=2, artists=artists).cold_artists != (
        first.cold_artists
    )


def test_cold_artists_follow_artist_popularity(
    listens: pd.DataFrame, catalogue: list[str], artists: list[object]
) -> None:
    """One artist per popularity stratum: the held-out artists span the least and the most
    listened ones, not whatever a uniform draw gives."""
    key = _artist_key(artists, catalogue)
    counts = dict(zip(catalogue, listener_counts(listens, catalogue), strict=True))
    popularity: dict[str, int] = {}
    for song, artist in key.items():
        if artist:
            popularity[artist] = popularity.get(artist, 0) + counts[song]
    ranked = sorted(popularity, key=popularity.__getitem__)
    split = cold_split(listens, catalogue, seed=0, artists=artists, cold_artist_fraction=0.2)
    ranks = sorted(ranked.index(artist) for artist in split.cold_artists)
    stratum = len(ranked) / len(ranks)
    assert all(i * stratum - 1 <= rank < (i + 1) * stratum + 1 for i, rank in enumerate(ranks))


def test_given_test_songs_get_kinds(
    listens: pd.DataFrame, catalogue: list[str], artists: list[object], tmp_path: Path
) -> None:
    path = tmp_path / "test_songs.txt"
    path.write_text("S0001\nS0040\nS0002\n")  # S0040: no artist
    split = split_from_file(path, listens, catalogue, artists=artists)
    kinds = dict(zip(split.test, split.test_kinds or [], strict=True))
    assert kinds["S0040"] == "cold_artist"
    assert kinds["S0001"] == "cold_track"  # its artist has ~8 songs, nearly all training
    assert split.cold_artists == []


def test_kinds_survive_the_round_trip(
    listens: pd.DataFrame, catalogue: list[str], artists: list[object], tmp_path: Path
) -> None:
    split = cold_split(listens, catalogue, seed=0, artists=artists)
    manifest = write_split(split, tmp_path)
    assert manifest["counts"]["cold_artist"] == split.kind_counts()["cold_artist"] > 0
    assert load_split(tmp_path) == split


def test_artists_must_follow_the_songs(listens: pd.DataFrame, catalogue: list[str]) -> None:
    with pytest.raises(SplitError, match="artists given"):
        cold_split(listens, catalogue, artists=["a"])
