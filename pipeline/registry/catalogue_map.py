"""A version's 2-D map of the catalogue: each space's vectors on their two principal axes,
fitted once at publish, so that the service places an upload exactly as the catalogue's
songs were placed.

Linear because a new vector must land where it would have landed had it been published
with the catalogue: PCA's `(x - mean) @ components.T` does that for any vector, where t-SNE
or UMAP would have to be refitted. The vectors mapped are those the index stores
(`VectorIndex.check_vectors`: L2-normalised, the geometry cosine search sees), one map per
space, because an upload's neighbours are near it in the space they were searched in, not
necessarily in the other.

    map.npz   per space ("cf", "content") that holds at least `MIN_SONGS` songs:
      <space>_mean        (D,) float32    the mean of the fitted vectors
      <space>_components  (2, D) float32  the two principal axes
      <space>_explained   (2,) float32    the share of the variance each axis holds
      <space>_ids         (n,) str        the songs drawn (n <= MAP_MAX_POINTS)
      <space>_points      (n, 2) float32  their coordinates
      <space>_songs       () int64        the songs the space held at publish

Which songs: at most `MAP_MAX_POINTS`, those with the smallest `pandas.util.hash_array` of
their id (a fixed key): deterministic, unbiased by catalogue order, and a song kept from
one version to the next stays on the map. The axes are fitted on at most `FIT_MAX_SONGS`
songs chosen the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from artifacts.manifest import ArtifactError
from index.spaces import Space

MAP_FILE = "map.npz"
MAP_MAX_POINTS = 2000
FIT_MAX_SONGS = 50_000
MIN_SONGS = 3  # two axes need at least three points to mean anything
_FIELDS = ("mean", "components", "explained", "ids", "points", "songs")


@dataclass(frozen=True)
class SpaceMap:
    """One space's map: `mean` (D,) and `components` (2, D) float32 project a stored
    vector; `ids` (n,) the songs drawn, at `points` (n, 2) float32; `explained` (2,) the
    share of variance per axis; `n_songs` the songs the space held at publish."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    ids: list[str]
    points: np.ndarray
    n_songs: int

    def project(self, stored: np.ndarray) -> np.ndarray:
        """`(n, D)` vectors in the index's stored form -> `(n, 2)` float32 coordinates."""
        stored = np.asarray(stored, dtype=np.float32)
        return ((stored - self.mean) @ self.components.T).astype(np.float32)


def hash_order(ids: Sequence[str] | np.ndarray, limit: int) -> np.ndarray:
    """Rows of the at most `limit` ids with the smallest hash, smallest first: `(m,)` int."""
    hashes = pd.util.hash_array(np.asarray(ids, dtype=object))
    rows = np.argpartition(hashes, limit - 1)[:limit] if len(ids) > limit else np.arange(len(ids))
    return rows[np.argsort(hashes[rows], kind="stable")]


def map_space(
    ids: Sequence[str] | np.ndarray,
    vectors: np.ndarray,
    stored_form: Callable[[np.ndarray], np.ndarray],
) -> SpaceMap | None:
    """Fit the map of one space from its `ids` and raw `vectors` `(n, D)`; `stored_form` is
    the space's index rule (`VectorIndex.check_vectors`), applied only to the rows drawn.
    None for a space of fewer than `MIN_SONGS` songs."""
    from sklearn.decomposition import PCA

    if len(ids) < MIN_SONGS:
        return None
    rows = hash_order(ids, max(FIT_MAX_SONGS, MAP_MAX_POINTS))
    stored = stored_form(np.asarray(vectors)[rows])
    # "auto": the covariance's eigenvectors when songs far outnumber dimensions (exact, and
    # ~20x faster than a full SVD at 50,000 x 128), seeded where it would draw.
    pca = PCA(n_components=2, svd_solver="auto", random_state=0)
    pca.fit(stored[:FIT_MAX_SONGS].astype(np.float64))
    drawn = rows[:MAP_MAX_POINTS]
    fitted = SpaceMap(
        mean=pca.mean_.astype(np.float32),
        components=pca.components_.astype(np.float32),
        explained=pca.explained_variance_ratio_.astype(np.float32),
        ids=np.asarray(ids, dtype=object)[drawn].tolist(),
        points=np.empty((0, 2), np.float32),
        n_songs=len(ids),
    )
    return replace(fitted, points=fitted.project(stored[: len(drawn)]))


def save_catalogue_map(path: Path, maps: dict[str, SpaceMap]) -> None:
    """Write `maps` (space -> its map) as one `.npz` of plain arrays (no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    for space, space_map in maps.items():
        arrays |= {
            f"{space}_mean": space_map.mean,
            f"{space}_components": space_map.components,
            f"{space}_explained": space_map.explained,
            f"{space}_ids": np.asarray(space_map.ids, dtype=str),
            f"{space}_points": space_map.points,
            f"{space}_songs": np.asarray(space_map.n_songs, dtype=np.int64),
        }
    with open(path, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)


def load_catalogue_map(path: Path) -> dict[str, SpaceMap]:
    """The maps `save_catalogue_map` wrote, by space; `ArtifactError` if their shapes do
    not fit together."""
    maps: dict[str, SpaceMap] = {}
    with np.load(path, allow_pickle=False) as arrays:
        for space in get_args(Space):
            if f"{space}_mean" not in arrays.files:
                continue
            try:
                mean, components, explained, ids, points, songs = (
                    arrays[f"{space}_{name}"] for name in _FIELDS
                )
            except KeyError as error:
                raise ArtifactError(f"{path}: the {space} map lacks {error}") from error
            dims = mean.shape
            if (
                len(dims) != 1
                or components.shape != (2, *dims)
                or explained.shape != (2,)
                or ids.ndim != 1
                or points.shape != (len(ids), 2)
                or songs.shape != ()
            ):
                raise ArtifactError(f"{path}: the {space} map's arrays do not fit together")
            maps[space] = SpaceMap(
                mean=mean.astype(np.float32),
                components=components.astype(np.float32),
                explained=explained.astype(np.float32),
                ids=ids.tolist(),
                points=points.astype(np.float32),
                n_songs=int(songs),
            )
    return maps
