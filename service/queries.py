"""The searches the read routes run on the version a request is pinned to."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from index.vector_index import UnknownIdError
from pipeline.registry.read import LoadedVersion
from service import schemas
from service.embedder import UploadEmbedder
from service.errors import NotFound
from service.listeners import Listeners, UserVector
from service.placement import cf_placement
from service.serving import ServedState
from training.inference import Embedding


@dataclass(frozen=True)
class UploadResult:
    """An upload's embedding and its nearest songs as (id, cosine), with the search time,
    how the query was placed ("hybrid" or "audio", `service.placement`) and where it and
    its neighbours sit on the version's map of the space (None: the version has none)."""

    embedding: Embedding
    neighbours: list[tuple[str, float]]
    search_ms: float
    placement: schemas.Placement
    on_map: schemas.UploadOnMap | None


def on_map(
    version: LoadedVersion, space: schemas.Space, query: np.ndarray, neighbour_ids: list[str]
) -> schemas.UploadOnMap | None:
    """Where the query vector `(D,)` and the neighbours' stored vectors land on the
    version's map of `space` (an IVF-PQ space stores approximations: near, not exact);
    neighbours gone from the index since the search are left out."""
    space_map = version.catalogue_map.get(space)
    if space_map is None:
        return None
    index = version.index.space(space)
    mapped: list[str] = []
    stored = [index.check_vectors(query[None, :])[0]]
    for song_id in neighbour_ids:
        try:
            stored.append(index.vector(song_id))
        except UnknownIdError:
            continue
        mapped.append(song_id)
    (x, y), *points = space_map.project(np.stack(stored)).tolist()
    return schemas.UploadOnMap(
        x=x,
        y=y,
        neighbours=[
            schemas.MapPoint(id=song_id, x=px, y=py)
            for song_id, (px, py) in zip(mapped, points, strict=True)
        ],
    )


@dataclass(frozen=True)
class Recommendations:
    """A user's recommended songs as (id, inner product) best first, how their vector came
    ("fitted" or "folded_in"), and how many songs they played."""

    neighbours: list[tuple[str, float]]
    user_vector: UserVector
    played: int


class Queries:
    """Similar songs and recommendations, as (song id, score) lists best first."""

    def __init__(self, state: ServedState, embedder: UploadEmbedder, listeners: Listeners) -> None:
        self.state = state
        self.embedder = embedder
        self.listeners = listeners

    def similar_to_upload(
        self, data: bytes, name: str, k: int, space: schemas.Space, artist: str | None = None
    ) -> UploadResult:
        """The `k` songs closest by cosine in `space` to an upload's vector there: its
        content embedding, or in the cf space its predicted factors placed with its
        `artist`'s prior when the version knows the artist,
        exactly as POST /v1/tracks would place it (the content space is audio only)."""
        version = self.state.require().version
        embedding = self.embedder.embed(version, data, name)
        vector = embedding.content
        placement: schemas.Placement = "audio"
        if space == "cf":
            vector, placement = cf_placement(version, embedding.factors, artist)
        started = time.perf_counter()
        neighbours = version.index.similar(vector, k, space)
        search_ms = (time.perf_counter() - started) * 1e3
        mapped = on_map(version, space, vector, [song_id for song_id, _ in neighbours])
        return UploadResult(embedding, neighbours, search_ms, placement, mapped)

    def similar_to_track(
        self, track_id: str, k: int, space: schemas.Space
    ) -> list[tuple[str, float]]:
        """The `k` songs closest to a track's own vector in `space`, itself left out."""
        version = self.state.require().version
        try:
            return version.index.similar_to(track_id, k, space)
        except UnknownIdError as error:
            raise NotFound(
                f"track {track_id!r} has no vector in the {space} space", code="track_not_found"
            ) from error

    def recommend(
        self, user_id: str, k: int, only_new: bool, include_played: bool
    ) -> Recommendations:
        """The `k` songs of highest inner product with the user's vector (fitted or folded
        in, `service.listeners`), leaving out the songs they played unless
        `include_played`, only new ones with `only_new`; `NotFound` "user_not_found" for a
        user without a vector."""
        serving = self.state.require()
        version = serving.version
        listener = self.listeners.of(version, user_id)
        neighbours = version.index.recommend(
            listener.vector,
            k,
            only_ids=serving.new_ids if only_new else None,
            exclude=() if include_played else listener.played,
        )
        return Recommendations(neighbours, listener.kind, len(listener.played))
