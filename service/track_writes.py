"""Writes through the API: add a track by its audio, delete one, record listens.

Each write goes to the catalogue first (durably: row, audio, vector, event), then to the
served index, under the served state's lock, so that a swap being prepared catches it up
and the follower never interleaves with it. Catalogue refusals become HTTP errors through
`service.errors` (`from_catalogue_error`, `listen_error_code`).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audio.errors import AudioError
from catalogue import Catalogue, CatalogueError
from catalogue import ListenIn as CatalogueListen
from catalogue.vectors import vector_problem
from index.vector_index import UnknownIdError
from service import schemas
from service.embedder import UploadEmbedder
from service.errors import from_audio_error, from_catalogue_error, listen_error_code
from service.metrics import ServiceMetrics
from service.placement import cf_placement
from service.serving import ServedState
from service.views import Views
from training.inference import Embedding, split_track_vector, track_vector_dims


@dataclass(frozen=True)
class Placed:
    """A new track's cf vector `(F,)` float32 and how it was placed ("hybrid": audio and
    artist, "audio": audio alone; `service.placement`), and its content vector (the
    encoder's content embedding)."""

    placement: schemas.Placement
    cf_vector: np.ndarray
    content_vector: np.ndarray


class TrackWriter:
    """Adds and deletes cold tracks and records listens; `catalogue()` is the open one."""

    def __init__(
        self,
        catalogue: Callable[[], Catalogue],
        state: ServedState,
        embedder: UploadEmbedder,
        views: Views,
        metrics: ServiceMetrics,
    ) -> None:
        self.catalogue = catalogue
        self.state = state
        self.embedder = embedder
        self.views = views
        self.metrics = metrics

    def add_track(
        self, data: bytes, filename: str, title: str, artist: str, track_id: str | None
    ) -> tuple[schemas.Track, Embedding, Placed]:
        """Embed the upload, store track + audio + vector durably, then index it; returns
        the track, its embedding and where it was placed (`Placed`).

        All or nothing: the catalogue writes the row, the vector and the event in one
        transaction once the upload has decoded to a vector the index takes, and removes
        the audio it stored when that transaction fails; a refused upload leaves no trace.

        The audio is filed under the extension of the container the decoder opened. The
        embedding runs outside the lock; the rest inside, into the version served by
        then: if a swap came in between, the upload is embedded again with the new
        version's encoder, so that the new version has the track (this request still
        answers with the version it began on)."""
        state = self.state
        pinned = state.require()
        embedding = self.embedder.embed(pinned.version, data, filename)
        track_id = track_id or f"new-{secrets.token_hex(8)}"
        catalogue = self.catalogue()
        with state.lock:
            serving = state.serving or pinned
            version = serving.version
            vector = (
                embedding.vector
                if version is pinned.version
                else self.embedder.embed(version, data, filename).vector
            )
            problem = vector_problem(vector, track_vector_dims(version.encoder.dims))
            if problem is not None:
                unusable = AudioError("unembeddable", filename, f"the predicted vector {problem}")
                raise from_audio_error(unusable)
            try:
                record = catalogue.add_track(
                    track_id,
                    title,
                    artist,
                    audio=data,
                    audio_ext=embedding.extension,
                    origin="cold",
                    vector_version=version.version_id,
                    vector=vector,
                )
            except CatalogueError as error:
                raise from_catalogue_error(error) from error
            factors, content = split_track_vector(version.encoder.dims, vector)
            cf_vector, placement = cf_placement(version, factors, artist)
            version.index.add_track(track_id, cf_vector, content)
            serving = dataclasses.replace(serving, new_ids=serving.new_ids | {track_id})
            state.serving = serving
            state.touch([track_id])
        state.count_songs(self.metrics)
        placed = Placed(placement, cf_vector, content)
        return self.views.track_view(serving, record), embedding, placed

    def delete_track(self, track_id: str) -> None:
        """Delete the track from the catalogue and the served index."""
        state = self.state
        state.require()
        with state.lock:
            try:
                self.catalogue().delete_track(track_id)
            except CatalogueError as error:
                raise from_catalogue_error(error) from error
            self.views.forget([track_id])
            serving = state.serving
            if serving is not None:
                try:
                    serving.version.index.remove_track(track_id)
                except UnknownIdError:
                    pass  # a song without vectors (no audio, no listens) is only in the catalogue
                if track_id in serving.new_ids:
                    state.serving = dataclasses.replace(
                        serving, new_ids=serving.new_ids - {track_id}
                    )
            state.touch([track_id])
        state.count_songs(self.metrics)

    def add_listens(self, listens: list[schemas.ListenIn]) -> list[schemas.ListenResult]:
        """Record plays; one result per item, in order (see `Catalogue.add_listens`)."""
        results = self.catalogue().add_listens(
            [
                CatalogueListen(item.user_id, item.song_id, item.count, item.played_at)
                for item in listens
            ]
        )
        return [
            schemas.ListenResult(index=index, status="stored")
            if result.accepted
            else schemas.ListenResult(
                index=index,
                status="rejected",
                error=schemas.ErrorDetail(
                    code=listen_error_code(result.reason), message=result.error or "rejected"
                ),
            )
            for index, result in enumerate(results)
        ]
