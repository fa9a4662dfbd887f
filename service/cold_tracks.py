"""Cold tracks (added by audio) into a version's index: at the vector stored for that
version, or re-embedded from their stored audio with its encoder (and the vector stored
for the next start and every other replica), its audio decoded by a decode worker
(`service.embedder`) like an upload's. The stored vector is the track's content
embedding and predicted factors in one (`training.inference.track_vector`): the content
space takes the first, the cf space the second placed with the version's priors.

Used by the version swapper (the tracks a new version lacks), the catalogue follower
(tracks other replicas added) and at start-up. A stored vector that is unusable is
re-embedded; a track whose audio is missing or does not decode is left out; each such
track is logged and counted (`coldstart_catalogue_track_problems_total`); no decode
worker free in time (`DecoderUnavailable`) is no fault of the track's: it goes up to the
caller, to be tried again. Blocking: database, decode worker, model, index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sqlalchemy.exc import IntegrityError

from audio.errors import AudioError
from catalogue import Catalogue, InvalidAudio, TrackRecord
from catalogue.vectors import put_track_vector, track_vectors, vector_problem
from pipeline.registry.read import LoadedVersion
from service.embedder import UploadEmbedder
from service.metrics import ServiceMetrics, TrackProblem
from service.placement import cf_placement
from training.inference import split_track_vector, track_vector_dims

log = logging.getLogger("coldstart.service")


class ColdTracks:
    """Places cold tracks in a version's index; `catalogue()` is the open catalogue,
    `embedder` re-embeds their stored audio."""

    def __init__(
        self,
        catalogue: Callable[[], Catalogue],
        embedder: UploadEmbedder,
        metrics: ServiceMetrics,
    ) -> None:
        self.catalogue = catalogue
        self.embedder = embedder
        self.metrics = metrics

    def place(
        self, version: LoadedVersion, records: list[TrackRecord], check_stop: Callable[[], None]
    ) -> tuple[set[str], int]:
        """Put the cold tracks among `records` that `version`'s index lacks into both its
        spaces (stored vector, or re-embedded); returns the ids placed and how many were
        re-embedded. `check_stop` is called before each embedding (it raises to abandon)."""
        catalogue = self.catalogue()
        missing = [record for record in records if record.id not in version.index]
        stored = track_vectors(catalogue, version.version_id, [record.id for record in missing])
        placed: set[str] = set()
        re_embedded: list[str] = []
        for record in missing:
            vector = self.usable_stored(version, record.id, stored.get(record.id))
            if vector is None:
                check_stop()
                vector = self.re_embed(version, record)
                if vector is None:
                    continue
                self.store_vector(record.id, version.version_id, vector)
                re_embedded.append(record.id)
            self.add_to_index(version, record, vector)
            placed.add(record.id)
        if re_embedded:
            catalogue.set_vector_version(re_embedded, version.version_id)
        return placed, len(re_embedded)

    @staticmethod
    def add_to_index(version: LoadedVersion, record: TrackRecord, vector: np.ndarray) -> None:
        """Put `record` into both spaces of `version` by its usable track `vector`."""
        factors, content = split_track_vector(version.encoder.dims, vector)
        cf_vector = cf_placement(version, factors, record.artist)[0]
        version.index.add_track(record.id, cf_vector, content)

    def re_embed(self, version: LoadedVersion, record: TrackRecord) -> np.ndarray | None:
        """The track vector for `version` from its stored audio; None (logged, counted)
        when the audio is missing or unusable: the track is then left out of the index."""
        store = self.catalogue().audio_store
        if record.audio_path is None or store is None:
            self._track_problem("missing_audio", record.id, "no stored audio")
            return None
        try:
            data = store.path(record.audio_path).read_bytes()
            vector = self.embedder.embedding(version, data, record.id).vector
        except FileNotFoundError as error:
            self._track_problem("missing_audio", record.id, f"its audio file is gone ({error})")
            return None
        except (AudioError, InvalidAudio, OSError) as error:
            problem: TrackProblem = (
                "unembeddable"
                if isinstance(error, AudioError) and error.code == "unembeddable"
                else "undecodable_audio"
            )
            self._track_problem(problem, record.id, f"cannot re-embed its audio ({error})")
            return None
        problem_text = vector_problem(vector, track_vector_dims(version.encoder.dims))
        if problem_text is not None:
            self._track_problem("unembeddable", record.id, f"its predicted vector {problem_text}")
            return None
        return vector

    def usable_stored(
        self, version: LoadedVersion, track_id: str, vector: np.ndarray | None
    ) -> np.ndarray | None:
        """`vector` as stored for `version`, or None when there is none or it is unusable
        (then logged and counted: the caller re-embeds the track)."""
        if vector is None:
            return None
        problem = vector_problem(vector, track_vector_dims(version.encoder.dims))
        if problem is None:
            return vector
        self._track_problem("unusable_vector", track_id, f"its stored vector {problem}")
        return None

    def store_vector(self, track_id: str, version_id: str, vector: np.ndarray) -> None:
        """Store a track's vector for a version. Another replica storing the same key at
        the same instant (same encoder, same audio: the same vector) or deleting the track
        (its event then takes it out) makes this a no-op rather than a failure."""
        try:
            put_track_vector(self.catalogue(), track_id, version_id, vector)
        except IntegrityError as error:
            log.info("vector of %s for %s not stored: %s", track_id, version_id, error.orig)

    @staticmethod
    def holds(version: LoadedVersion, track_id: str, vector: np.ndarray) -> bool:
        """Whether both spaces hold `track_id` at its track `vector` already."""
        index = version.index
        if track_id not in index.space("cf") or track_id not in index.space("content"):
            return False
        content = index.space("content")
        embedding = split_track_vector(version.encoder.dims, vector)[1]
        expected = content.check_vectors(embedding[np.newaxis])[0]
        return bool(np.allclose(content.vector(track_id), expected, atol=1e-5))

    def _track_problem(self, problem: TrackProblem, track_id: str, detail: str) -> None:
        self.metrics.track_problems.labels(problem).inc()
        log.warning("catalogue track %s (%s): %s", track_id, problem, detail)
