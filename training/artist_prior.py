"""The artist prior: where an artist's earlier songs sit in the WMF space.

A new song by a known artist most likely lands near that artist's other songs. The prior of
artist `a` with `n_a` training songs of WMF factors `f_s` is their mean pulled toward the
mean `g` of all training songs, the less so the more songs the artist has:

    prior_a = (sum_s f_s + shrinkage * g) / (n_a + shrinkage)

so an artist with one song gets little more than the catalogue's average, and a prolific
one its own mean. `shrinkage` is chosen on validation songs (`fit_artist_priors` ranks
them for every user, the evaluation's mAP). An artist without a training song (a cold
artist, or a song with no artist, `corpus.artists.UNKNOWN_ARTIST`) has no prior: a zero
vector and a song count of 0, which `training.fusion` reads as "audio alone".

Saved as `artist_priors.npy` (n_artists, F) float32 (already shrunk: what the service and
the evaluation both read), `artist_ids.json` (normalised names, sorted, rows of the two
arrays) and `artist_song_counts.npy` (n_artists,) int64. numpy only: the service loads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artifacts.manifest import ArtifactError, read_manifest
from corpus.artists import UNKNOWN_ARTIST

ARTIST_KIND = "artist_prior"
PRIORS_FILE = "artist_priors.npy"
ARTIST_IDS_FILE = "artist_ids.json"
COUNTS_FILE = "artist_song_counts.npy"
PRIOR_FILES = (PRIORS_FILE, ARTIST_IDS_FILE, COUNTS_FILE)
SHRINKAGE_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class ArtistPriors:
    """Per known artist its shrunk prior `(n_artists, F)` float32 and training song count
    `(n_artists,)` int64; rows follow `artist_ids` (normalised names, sorted)."""

    artist_ids: list[str]
    priors: np.ndarray
    counts: np.ndarray
    shrinkage: float
    _rows: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rows", {name: row for row, name in enumerate(self.artist_ids)})

    @property
    def n_factors(self) -> int:
        return int(self.priors.shape[1])

    def row(self, artist: str) -> int | None:
        """The row of a normalised artist name, None when it has no prior."""
        return self._rows.get(artist)

    def lookup(self, artists: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Priors `(len(artists), F)` float32 and song counts `(len(artists),)` int64 of
        normalised names; zeros (and count 0) for an artist without a prior."""
        rows = np.array([-1 if (r := self.row(a)) is None else r for a in artists], np.int64)
        known = rows >= 0
        priors = np.zeros((rows.size, self.n_factors), np.float32)
        priors[known] = self.priors[rows[known]]
        counts = np.where(known, self.counts[np.maximum(rows, 0)], 0).astype(np.int64)
        return priors, counts

    def save(self, folder: Path) -> list[str]:
        """Write the three prior files into `folder`; returns their names (for a manifest)."""
        folder = Path(folder)
        np.save(folder / PRIORS_FILE, self.priors, allow_pickle=False)
        np.save(folder / COUNTS_FILE, self.counts, allow_pickle=False)
        (folder / ARTIST_IDS_FILE).write_text(json.dumps(self.artist_ids, ensure_ascii=False))
        return list(PRIOR_FILES)

    @classmethod
    def load(cls, folder: Path, shrinkage: float) -> ArtistPriors:
        """Read what `save` wrote (the manifest that lists them is the caller's to verify)."""
        folder = Path(folder)
        priors = np.load(folder / PRIORS_FILE, allow_pickle=False)
        counts = np.load(folder / COUNTS_FILE, allow_pickle=False)
        artist_ids = json.loads((folder / ARTIST_IDS_FILE).read_text())
        if (
            priors.dtype != np.float32
            or priors.ndim != 2
            or counts.shape != (len(artist_ids),)
            or priors.shape[0] != len(artist_ids)
        ):
            raise ArtifactError(
                f"{folder}: artist priors {priors.dtype} {priors.shape}, counts {counts.shape}"
                f" do not follow {ARTIST_IDS_FILE} ({len(artist_ids)} artists)"
            )
        return cls(artist_ids, priors, counts.astype(np.int64), shrinkage)


def artist_priors(
    song_artists: Sequence[str], song_factors: np.ndarray, shrinkage: float
) -> ArtistPriors:
    """The priors of the artists of the training songs.

    `song_artists` normalised names following the rows of `song_factors (n_songs, F)`;
    songs of `UNKNOWN_ARTIST` count toward the global mean only. Vectorised over songs.
    """
    if not shrinkage > 0:
        raise ValueError(f"shrinkage must be > 0, got {shrinkage!r}")
    factors = np.asarray(song_factors, dtype=np.float64)
    keys = np.asarray(song_artists, dtype=object)
    if keys.shape != (factors.shape[0],):
        raise ValueError(f"{keys.size} artists for {factors.shape[0]} song factor rows")
    global_mean = factors.mean(axis=0) if factors.shape[0] else np.zeros(factors.shape[1])
    named = keys != UNKNOWN_ARTIST
    names, codes = np.unique(keys[named].astype(str), return_inverse=True)
    counts = np.bincount(codes, minlength=names.size).astype(np.int64)
    sums = np.zeros((names.size, factors.shape[1]))
    np.add.at(sums, codes, factors[named])
    priors = (sums + shrinkage * global_mean) / (counts[:, None] + shrinkage)
    return ArtistPriors(names.tolist(), priors.astype(np.float32), counts, float(shrinkage))


def fit_artist_priors(
    song_artists: Sequence[str],
    song_factors: np.ndarray,
    valid_artists: Sequence[str],
    score: Callable[[np.ndarray], float],
    grid: Sequence[float] = SHRINKAGE_GRID,
) -> tuple[ArtistPriors, dict[float, float]]:
    """The priors with the shrinkage in `grid` whose validation songs rank best.

    `score(vectors (len(valid_artists), F)) -> mAP` ranks the validation songs, whose
    normalised artists are `valid_artists`; songs without a prior get zero vectors, the
    same for every value. Returns the priors and every value's score.
    """
    scores: dict[float, float] = {}
    best: ArtistPriors | None = None
    for shrinkage in grid:
        priors = artist_priors(song_artists, song_factors, shrinkage)
        scores[float(shrinkage)] = score(priors.lookup(valid_artists)[0])
        if best is None or scores[float(shrinkage)] > scores[best.shrinkage]:
            best = priors
    if best is None:
        raise ValueError("give at least one shrinkage value")
    return best, scores


def load_artist_priors(folder: Path) -> ArtistPriors:
    """The priors of a finished `RUN/models/artist/` (or a version's copy), its manifest
    verified."""
    manifest = read_manifest(folder, kind=ARTIST_KIND)
    return ArtistPriors.load(folder, float(manifest["parameters"]["shrinkage"]))
