"""The cold-start song split: which songs WMF may see, and which are held out whole.

The paper's evaluation is about songs nobody has listened to yet, so the split is over
songs, not over listens: every listen of a test (or validation) song is held out of WMF.
Test songs are drawn stratified by popularity (listener count), so that the held-out set
has the catalogue's mix of hits and long tail instead of whatever a uniform draw of a
power-law catalogue gives (mostly tail). Validation songs are drawn the same way from the
songs left over; the content model stops early on them, and they are folded in like test
songs so that validation is a true cold-start measure.

Two kinds of test song. Besides songs drawn one by one (a *cold track*: new, but by an
artist whose other songs WMF has seen), a seeded share of whole artists is held out, also
stratified by popularity (their songs' listeners summed), with every song of theirs: a
*cold artist*, whose songs have no training song by the same artist, the case where only
the audio can place them. A test song's kind is decided once the split is done: `cold_track`
if its artist (`corpus.artists.normalise_artist`) has a training song, else `cold_artist`
(a song without an artist is always one). Kinds are recorded for given test songs too.

Songs without any listen cannot be evaluated and give WMF nothing to fit (implicit would
hand them zero factors, a meaningless regression target), so they go in none of the three
lists but in `unlistened`: kept on record, e.g. for the content model to predict later.

Saved as `RUN/split/split.json` (`{"method", "seed", "train", "valid", "test",
"unlistened", "test_kinds", "cold_artists"}`, the id lists sorted, `test_kinds` following
`test`, `cold_artists` the normalised names held out whole) with its manifest.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artifacts.files import write_json_atomic
from artifacts.manifest import MANIFEST_NAME, read_manifest, write_manifest
from artifacts.run_layout import SPLIT_DIR
from corpus.artists import UNKNOWN_ARTIST, normalise_artists

SPLIT_FILE = "split.json"
SPLIT_KIND = "split"
STRATIFIED_METHOD = "popularity-stratified"
GIVEN_TEST_METHOD = "given-test-songs"
COLD_TRACK = "cold_track"
COLD_ARTIST = "cold_artist"
KINDS = (COLD_TRACK, COLD_ARTIST)


class SplitError(ValueError):
    """A split cannot be made as asked (bad fractions, unknown or unusable test songs)."""


@dataclass(frozen=True)
class SongSplit:
    """Song ids by role; each list sorted, the four lists disjoint.

    `train` songs are the ones WMF fits; `valid` and `test` songs are held out whole and
    folded in afterwards; `unlistened` songs have no listen at all. `test_kinds[i]` is
    `COLD_TRACK` or `COLD_ARTIST` for `test[i]` (None: a split saved before kinds were
    recorded); `cold_artists` the normalised artists held out with all their songs.
    """

    train: list[str]
    valid: list[str]
    test: list[str]
    unlistened: list[str] = field(default_factory=list)
    method: str = STRATIFIED_METHOD
    seed: int = 0
    test_kinds: list[str] | None = None
    cold_artists: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "seed": self.seed,
            "train": self.train,
            "valid": self.valid,
            "test": self.test,
            "unlistened": self.unlistened,
            "test_kinds": self.test_kinds,
            "cold_artists": self.cold_artists,
        }

    def kind_counts(self) -> dict[str, int]:
        """Test songs per kind (every kind present, 0 when it has none)."""
        kinds = self.test_kinds or []
        return {kind: kinds.count(kind) for kind in KINDS}


def listener_counts(listens: pd.DataFrame, song_ids: Sequence[str]) -> np.ndarray:
    """Listens (user, song rows) per song, `(len(song_ids),)` int64, 0 for songs never heard."""
    codes = listens["song_id"].cat.codes.to_numpy()
    categories = listens["song_id"].cat.categories
    per_category = np.bincount(codes[codes >= 0], minlength=len(categories))
    position = pd.Index(categories).get_indexer(pd.Index(song_ids))
    return np.where(position >= 0, per_category[position], 0).astype(np.int64)


def _stratified_sample(popularity: np.ndarray, n_pick: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n_pick` items, one drawn uniformly from each of `n_pick` popularity strata.

    Items are ranked by popularity (random order among equals) and cut into `n_pick`
    consecutive strata of (nearly) equal size, so the sample follows every quantile of the
    popularity distribution exactly, not just in expectation.
    """
    n = popularity.size
    if n_pick <= 0:
        return np.empty(0, dtype=np.int64)
    ranked = np.lexsort((rng.random(n), popularity))
    stratum = np.arange(n, dtype=np.int64) * n_pick // n
    draw = rng.random(n)
    # Within each stratum keep the ranked item with the smallest draw.
    order = np.lexsort((draw, stratum))
    first = np.flatnonzero(np.r_[True, stratum[order][1:] != stratum[order][:-1]])
    return ranked[order[first]]


def _holdable_mask(listened: np.ndarray, holdable: Collection[str] | None) -> np.ndarray:
    """Which `listened` songs may be held out, `(n,)` bool: all, or those in `holdable`."""
    if holdable is None:
        return np.ones(listened.size, dtype=bool)
    return pd.Index(listened).isin(pd.Index(list(holdable), dtype=object))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise SplitError(f"{name} must be in [0, 1), got {value}")


def _finish_split(
    listened: np.ndarray,
    popularity: np.ndarray,
    test_mask: np.ndarray,
    holdable: np.ndarray,
    valid_fraction: float,
    rng: np.random.Generator,
    unlistened: list[str],
    method: str,
    seed: int,
    artists: np.ndarray,
    cold_artists: list[str],
) -> SongSplit:
    """Draw validation songs among the listened non-test songs that may be held out
    (`holdable`); the rest train. `artists` are the normalised artists of `listened`; they
    give each test song its kind."""
    remaining = np.flatnonzero(~test_mask & holdable)
    n_valid = round(valid_fraction * remaining.size)
    if remaining.size and n_valid >= np.count_nonzero(~test_mask):
        raise SplitError(
            f"valid_fraction {valid_fraction} leaves no training song ({remaining.size} left)"
        )
    picked = remaining[_stratified_sample(popularity[remaining], n_valid, rng)]
    valid_mask = np.zeros(listened.size, dtype=bool)
    valid_mask[picked] = True
    train_mask = ~test_mask & ~valid_mask
    known = pd.Index(artists[test_mask]).isin(artists[train_mask]) & (
        artists[test_mask] != UNKNOWN_ARTIST
    )
    return SongSplit(
        train=listened[train_mask].tolist(),
        valid=listened[valid_mask].tolist(),
        test=listened[test_mask].tolist(),
        unlistened=unlistened,
        method=method,
        seed=seed,
        test_kinds=np.where(known, COLD_TRACK, COLD_ARTIST).tolist(),
        cold_artists=cold_artists,
    )


def _by_listens(
    listens: pd.DataFrame, song_ids: Sequence[str], artists: Sequence[object] | None
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Catalogue ids sorted (so the split depends on the set, not on file order), split by
    whether they have a listen: (listened ids, their listener counts, unlistened ids, the
    listened songs' normalised artists). `artists` follows `song_ids` (None: none known)."""
    if artists is not None and len(artists) != len(song_ids):
        raise SplitError(f"{len(artists)} artists given for {len(song_ids)} songs")
    keys = normalise_artists(artists) if artists is not None else [UNKNOWN_ARTIST] * len(song_ids)
    artist_of = pd.Series(keys, index=pd.Index(song_ids, dtype=object), dtype=object)
    artist_of = artist_of[~artist_of.index.duplicated(keep="last")].sort_index()
    catalogue = artist_of.index.to_numpy(dtype=object)
    counts = listener_counts(listens, catalogue.tolist())
    heard = counts > 0
    listened = catalogue[heard]
    artist_keys = artist_of.to_numpy(dtype=object)[heard]  # vectorised: one row per song
    return listened, counts[heard], catalogue[~heard].tolist(), artist_keys


def _cold_artist_mask(
    artists: np.ndarray,
    popularity: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    allowed: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """Songs of `round(fraction * n_artists)` whole artists, one per popularity stratum
    (an artist's popularity: its songs' listeners summed), among the artists whose every
    song may be held out (`allowed`); songs without an artist are never picked here.
    Returns (mask over the songs, the artists picked, sorted)."""
    named = artists != UNKNOWN_ARTIST
    names, codes = np.unique(artists[named], return_inverse=True)
    artist_popularity = np.bincount(codes, weights=popularity[named], minlength=names.size)
    blocked = np.bincount(codes, weights=~allowed[named], minlength=names.size) > 0
    eligible = np.flatnonzero(~blocked)
    drawn = _stratified_sample(artist_popularity[eligible], round(fraction * eligible.size), rng)
    picked = names[eligible[drawn]]
    return pd.Index(artists).isin(picked) & named, sorted(picked.tolist())


def cold_split(
    listens: pd.DataFrame,
    song_ids: Sequence[str],
    test_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    seed: int = 0,
    holdable: Collection[str] | None = None,
    *,
    artists: Sequence[object] | None = None,
    cold_artist_fraction: float = 0.1,
) -> SongSplit:
    """Split the catalogue `song_ids` into train / valid / test songs for cold-start evaluation.

    First `round(cold_artist_fraction * n_artists)` artists (of the listened songs, by
    `artists`, which follows `song_ids`; None: no artist known, no artist held out) give
    all their listened songs to the test set, one artist per popularity stratum. Then
    `round(test_fraction * n)` more of the n listened songs that may be held out become test
    songs, one per popularity stratum of the songs left; then `round(valid_fraction *
    n_left)` of the rest become validation songs the same way. `holdable` (default: every
    song) limits the held-out songs to those a content model can be scored on, the songs
    with audio: a back catalogue without recordings then trains WMF whole, and only artists
    whose every listened song is holdable are held out whole. Same inputs and seed, same
    split.
    `listens` is `Dataset.listens`.
    """
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("valid_fraction", valid_fraction)
    _check_fraction("cold_artist_fraction", cold_artist_fraction)
    listened, popularity, unlistened, artist_keys = _by_listens(listens, song_ids, artists)
    rng = np.random.default_rng(seed)
    allowed = _holdable_mask(listened, holdable)
    test_mask, cold_artists = _cold_artist_mask(
        artist_keys, popularity, cold_artist_fraction, rng, allowed
    )
    pool = np.flatnonzero(~test_mask & allowed)
    n_test = round(test_fraction * np.count_nonzero(allowed))
    if n_test + test_mask.sum() >= listened.size:
        raise SplitError(
            f"test_fraction {test_fraction} and cold_artist_fraction {cold_artist_fraction}"
            f" leave no training song ({listened.size} listened)"
        )
    test_mask[pool[_stratified_sample(popularity[pool], n_test, rng)]] = True
    return _finish_split(
        listened,
        popularity,
        test_mask,
        allowed,
        valid_fraction,
        rng,
        unlistened,
        STRATIFIED_METHOD,
        seed,
        artist_keys,
        cold_artists,
    )


def read_song_list(path: Path) -> list[str]:
    """Song ids from a text file, one per line; blank lines skipped, repeats dropped."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path}: missing")
    ids = [line.strip() for line in path.read_text().splitlines()]
    return list(dict.fromkeys(song_id for song_id in ids if song_id))


def split_from_file(
    path: Path,
    listens: pd.DataFrame,
    song_ids: Sequence[str],
    valid_fraction: float = 0.1,
    seed: int = 0,
    holdable: Collection[str] | None = None,
    *,
    artists: Sequence[object] | None = None,
) -> SongSplit:
    """Like `cold_split`, but the test songs are the ids listed in `path` (`--test-songs`);
    validation songs are drawn among `holdable` as there; no artist is held out beyond
    them, and each test song's kind follows from the split (`artists` follows `song_ids`).

    Every listed id must be in the catalogue and have at least one listen (a song nobody
    heard cannot be scored); otherwise `SplitError` names the count and an example.
    """
    _check_fraction("valid_fraction", valid_fraction)
    given = read_song_list(path)
    if not given:
        raise SplitError(f"{path}: no song ids")
    listened, popularity, unlistened, artist_keys = _by_listens(listens, song_ids, artists)
    unknown = sorted(set(given) - set(song_ids))
    if unknown:
        raise SplitError(
            f"{path}: {len(unknown)} song ids not in the catalogue (e.g. {unknown[0]!r})"
        )
    unheard = sorted(set(given).intersection(unlistened))
    if unheard:
        raise SplitError(
            f"{path}: {len(unheard)} test songs have no listens and cannot be evaluated"
            f" (e.g. {unheard[0]!r})"
        )
    test_mask = pd.Index(listened).isin(given)
    if test_mask.all():
        raise SplitError(f"{path}: every listened song is a test song; nothing left to train on")
    rng = np.random.default_rng(seed)
    allowed = _holdable_mask(listened, holdable)
    return _finish_split(
        listened,
        popularity,
        test_mask,
        allowed,
        valid_fraction,
        rng,
        unlistened,
        GIVEN_TEST_METHOD,
        seed,
        artist_keys,
        [],
    )


def write_split(
    split: SongSplit,
    run_dir: Path,
    parameters: dict[str, Any] | None = None,
    dataset_fingerprint: str | None = None,
) -> dict[str, Any]:
    """Write `run_dir/split/split.json` and its manifest (written last); return the manifest."""
    folder = Path(run_dir) / SPLIT_DIR
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    write_json_atomic(folder / SPLIT_FILE, split.to_json())
    return write_manifest(
        folder,
        kind=SPLIT_KIND,
        files=[SPLIT_FILE],
        parameters={"method": split.method, "seed": split.seed, **(parameters or {})},
        dataset_fingerprint=dataset_fingerprint,
        extra={
            "counts": {
                "train": len(split.train),
                "valid": len(split.valid),
                "test": len(split.test),
                "unlistened": len(split.unlistened),
                **split.kind_counts(),
                "cold_artists": len(split.cold_artists),
            }
        },
    )


def load_split(run_dir: Path) -> SongSplit:
    """Read `run_dir/split/`, verifying its manifest (an unfinished or edited split is refused)."""
    folder = Path(run_dir) / SPLIT_DIR
    read_manifest(folder, kind=SPLIT_KIND)
    payload = json.loads((folder / SPLIT_FILE).read_text())
    return SongSplit(
        train=payload["train"],
        valid=payload["valid"],
        test=payload["test"],
        unlistened=payload.get("unlistened", []),
        method=payload["method"],
        seed=payload["seed"],
        test_kinds=payload.get("test_kinds"),
        cold_artists=payload.get("cold_artists", []),
    )
