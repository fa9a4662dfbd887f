"""The vector spaces the service queries, and which metric answers which request.

Two spaces, as in van den Oord et al. (2013):

- "cf": the collaborative-filtering space. Warm songs sit at their WMF song factors; a cold
  track added by audio sits at the factors the content model predicts for it, which is
  what makes it recommendable before anyone has played it.
- "content": every song with audio at the content model's embedding of it (warm songs
  included; `training.content_space`: the CNN's pooled convolution features, not its
  predicted factors), so similarity there is sonic similarity, untouched by listening data.
  Its dimension is the embedding's, not the factors'.

Requests:

- song-to-song similarity (`similar`, `similar_to`) ranks by cosine in either space: a
  factor vector's norm grows with popularity, and "sounds like" should not mean "is popular";
- user recommendation (`recommend`) ranks by the inner product of the user's factors with
  the cf song vectors, which is exactly the WMF preference score the factors were fitted for.

Cosine needs normalised vectors stored and the inner product needs the raw ones; no single
FAISS index answers both exactly, so the cf space keeps two `VectorIndex`es over the same
ids ("cf" cosine and "cf-ip"). That doubles the cf memory (n_songs x n_factors x 4 bytes
each, plus the graph above the exact threshold) and keeps both searches exact below the
threshold and one HNSW (or IVF-PQ, by `IndexSettings`) lookup above it.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike

from artifacts.manifest import ArtifactError, read_manifest, write_manifest
from index.settings import IndexSettings
from index.vector_index import UnknownIdError, VectorIndex

Space = Literal["cf", "content"]

ARTIFACT_KIND = "catalogue-index"
# Subfolder of each index in a saved CatalogueIndex.
_FOLDERS = {"cf": "cf_cosine", "cf-ip": "cf_ip", "content": "content_cosine"}


def _check_space(space: str) -> Space:
    if space not in get_args(Space):
        raise ValueError(f"space must be one of {get_args(Space)}, got {space!r}")
    return space  # type: ignore[return-value]


def _one_vector(vector: ArrayLike, what: str) -> np.ndarray:
    """A single `(n_dims,)` vector as the `(1, n_dims)` matrix the indexes search with."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one vector of shape (n_dims,), got {array.shape}")
    return array[None, :]


def _pairs(ids: list[list[str]], scores: np.ndarray) -> list[tuple[str, float]]:
    return [(song_id, float(score)) for song_id, score in zip(ids[0], scores[0], strict=False)]


class CatalogueIndex:
    """The catalogue's searchable spaces: "cf" (cosine and inner product) and "content"."""

    def __init__(self, cf: VectorIndex, cf_ip: VectorIndex, content: VectorIndex) -> None:
        if cf.metric != "cosine" or cf_ip.metric != "ip" or content.metric != "cosine":
            raise ValueError("cf and content must be cosine indexes and cf_ip an ip index")
        self._indexes: dict[str, VectorIndex] = {"cf": cf, "cf-ip": cf_ip, "content": content}
        self._mutation = threading.Lock()

    @classmethod
    def build(
        cls,
        cf_ids: Sequence[str],
        cf_vectors: ArrayLike,
        content_ids: Sequence[str],
        content_vectors: ArrayLike,
        *,
        settings: IndexSettings = IndexSettings(),  # noqa: B008 (frozen, so shared safely)
        exact_threshold: int | None = None,
    ) -> CatalogueIndex:
        """Index `cf_vectors` `(n_cf_songs, n_factors)` and `content_vectors`
        `(n_content_songs, n_dims)`, rows following their id lists (which may differ:
        a song without audio has no content vector), each space as `settings` says.

        `exact_threshold`, when given, replaces `settings.exact_threshold` (the keyword
        `pipeline.registry` passes)."""
        if exact_threshold is not None:
            settings = replace(settings, exact_threshold=exact_threshold)
        return cls(
            VectorIndex.build(cf_ids, cf_vectors, "cosine", settings=settings),
            VectorIndex.build(cf_ids, cf_vectors, "ip", settings=settings),
            VectorIndex.build(content_ids, content_vectors, "cosine", settings=settings),
        )

    def space(self, space: Space) -> VectorIndex:
        """The cosine index of `space` (for sizes, ids, stored vectors)."""
        return self._indexes[_check_space(space)]

    def __contains__(self, song_id: object) -> bool:
        return any(song_id in index for index in self._indexes.values())

    # ---- requests -----------------------------------------------------------------------

    def similar(
        self, vector: ArrayLike, k: int, space: Space = "content", *, exclude: Collection[str] = ()
    ) -> list[tuple[str, float]]:
        """The `k` songs whose vectors in `space` are closest by cosine to `vector`
        `(n_dims,)`, best first, as (song id, cosine similarity); `exclude` leaves ids out."""
        ids, scores = self.space(space).search(
            _one_vector(vector, "vector"), k, deny=exclude or None
        )
        return _pairs(ids, scores)

    def similar_to(self, song_id: str, k: int, space: Space = "content") -> list[tuple[str, float]]:
        """The `k` songs most similar to catalogue song `song_id` in `space`, itself left out.

        Raises `UnknownIdError` if `space` holds no vector for `song_id`."""
        index = self.space(space)
        return self.similar(index.vector(song_id), k, space, exclude=(song_id,))

    def recommend(
        self,
        user_vector: ArrayLike,
        k: int,
        *,
        only_ids: Collection[str] | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        """The `k` cf songs with the highest predicted preference `user_vector @ song_vector`
        (`user_vector` `(n_factors,)`, the user's WMF factors), best first.

        `only_ids` restricts the choice (e.g. to new tracks), `exclude` leaves songs out
        (e.g. those the user already played)."""
        ids, scores = self._indexes["cf-ip"].search(
            _one_vector(user_vector, "user_vector"), k, allow=only_ids, deny=exclude or None
        )
        return _pairs(ids, scores)

    # ---- mutation -----------------------------------------------------------------------

    def add_track(self, track_id: str, cf_vector: ArrayLike, content_vector: ArrayLike) -> None:
        """Add (or replace) a track in both spaces, no rebuild.

        For a cold track both vectors come from the content model: `cf_vector`
        `(n_factors,)` placed from its predicted factors, `content_vector` `(n_dims,)` its
        embedding. Both are checked before either space changes, so a bad vector leaves
        the index as it was."""
        cf_matrix = _one_vector(cf_vector, "cf_vector")
        updates = {
            "cf": cf_matrix,
            "cf-ip": cf_matrix,
            "content": _one_vector(content_vector, "content_vector"),
        }
        for name, matrix in updates.items():
            self._indexes[name].check_vectors(matrix, f"{name} vector")
        with self._mutation:
            for name, matrix in updates.items():
                self._indexes[name].add([track_id], matrix)

    def remove_track(self, track_id: str) -> None:
        """Remove a track from every space that holds it; `UnknownIdError` if none does."""
        with self._mutation:
            removed = sum(
                index.remove([track_id], missing_ok=True) for index in self._indexes.values()
            )
        if not removed:
            raise UnknownIdError(f"track {track_id!r} is in no space of the index")

    # ---- persistence --------------------------------------------------------------------

    def save(self, folder: Path, parents: dict[str, str] | None = None) -> dict[str, Any]:
        """Save each index in its own subfolder, then a manifest naming them as parents."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._mutation:
            digests = {
                name: self._indexes[name].save(folder / subfolder)["digest"]
                for name, subfolder in _FOLDERS.items()
            }
        return write_manifest(
            folder,
            ARTIFACT_KIND,
            files=[],
            parameters={"folders": _FOLDERS},
            parents={**(parents or {}), **digests},
        )

    @classmethod
    def load(cls, folder: Path, *, nprobe: int | None = None) -> CatalogueIndex:
        """Load a folder written by `save`; each index must be the one its manifest names.

        `nprobe` overrides the lists scanned per search of IVF-PQ spaces (the service's
        setting; the saved one otherwise)."""
        folder = Path(folder)
        manifest = read_manifest(folder, kind=ARTIFACT_KIND)
        indexes = {}
        for name, subfolder in _FOLDERS.items():
            digest = read_manifest(folder / subfolder, verify=False)["digest"]
            if manifest["parents"].get(name) != digest:
                raise ArtifactError(
                    f"{folder / subfolder}: not the index this folder was saved with"
                )
            indexes[name] = VectorIndex.load(folder / subfolder, nprobe=nprobe)
        return cls(indexes["cf"], indexes["cf-ip"], indexes["content"])
