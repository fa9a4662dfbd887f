"""What a running service holds: the loaded model version, the catalogue, and the cold
tracks added through it; and what each request does with them.

Start-up (`Runtime.start`, run once before the first request):

1. open the catalogue (migrating it) and load `REG/current` (verified file by file); a
   registry without a usable version leaves the service up but not ready (503s);
2. a fresh catalogue gets the version's songs (titles, artists) imported; a catalogue
   that already has songs is left as it is, so a song deleted through the API stays
   deleted;
3. songs deleted through the API are taken out of the freshly loaded index;
4. every cold track of the catalogue goes back into both spaces: with its stored vector
   for this model version, or (a new version since it was added) re-embedded from its
   stored audio, the new vector then stored.

All methods here are blocking (database, model, index): routes call them in worker
threads, the CPU-heavy ones through `Runtime.cpu` so that only `inference_slots` run at
once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import numpy as np
import torch

from artifacts.manifest import ArtifactError
from audio.config import FrontEndMismatchError
from audio.decode import DecodeLimits
from audio.errors import AudioError
from catalogue import (
    Catalogue,
    DuplicateTrack,
    InvalidAudio,
    InvalidTrack,
    TrackNotFound,
    TrackRecord,
    open_catalogue,
)
from catalogue import ListenIn as CatalogueListen
from catalogue.vectors import put_track_vector, track_vectors
from corpus.dataset import AUDIO_EXTENSIONS, find_audio
from index.vector_index import UnknownIdError
from pipeline.registry import LoadedVersion, RegistryError, load_current
from service import schemas
from service.errors import BadRequest, Conflict, NotFound, NotReady, from_audio_error
from service.inference import Embedding, embed_audio
from service.metrics import ServiceMetrics
from service.settings import Settings

log = logging.getLogger("coldstart.service")

T = TypeVar("T")
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
}


@dataclass(frozen=True)
class UploadResult:
    """An upload's embedding and its nearest songs as (id, cosine), with the search time."""

    embedding: Embedding
    neighbours: list[tuple[str, float]]
    search_ms: float


class Runtime:
    """The service's state; one per app."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limits = DecodeLimits(
            max_seconds=settings.max_audio_seconds, max_bytes=settings.max_upload_bytes
        )
        self.catalogue: Catalogue | None = None
        self.version: LoadedVersion | None = None
        self.load_error: str | None = None
        self._cold_tracks: set[str] = set()
        self._cold_lock = threading.Lock()
        self._dataset_audio: dict[str, Path] | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the catalogue, load the current version, restore cold tracks (blocking)."""
        torch.set_num_threads(self.settings.torch_threads)
        self.catalogue = open_catalogue(self.settings.database_url, self.settings.audio_store_dir())
        try:
            version = load_current(self.settings.registry)
        except (RegistryError, ArtifactError, FrontEndMismatchError, OSError) as error:
            self.load_error = str(error)
            log.error("no model version loaded: %s", error)
            self.metrics.model_loaded.set(0)
            return
        self._restore(version)
        self.version = version
        self.metrics.model.info({"version": version.version_id, "created_at": version.created_at})
        self.metrics.model_loaded.set(1)
        self._count_songs()

    def close(self) -> None:
        if self.catalogue is not None:
            self.catalogue.close()

    def _restore(self, version: LoadedVersion) -> None:
        catalogue = self._catalogue()
        started = time.perf_counter()
        if catalogue.count_tracks("warm") == 0:
            added = catalogue.import_songs(version.songs_file, vector_version=version.version_id)
            log.info("imported %d songs of version %s", added, version.version_id)
        records = catalogue.list_tracks()
        known = {record.id for record in records}
        published = set(version.index.space("cf").ids()) | set(version.index.space("content").ids())
        for deleted in published - known:
            version.index.remove_track(deleted)
        cold = [record for record in records if record.origin == "cold"]
        stored = track_vectors(catalogue, version.version_id, [record.id for record in cold])
        re_embedded = []
        for record in cold:
            vector = stored.get(record.id)
            if vector is None:
                vector = self._re_embed(version, record)
                if vector is None:
                    continue
                put_track_vector(catalogue, record.id, version.version_id, vector)
                re_embedded.append(record.id)
            version.index.add_track(record.id, vector, vector)
        if re_embedded:
            catalogue.set_vector_version(re_embedded, version.version_id)
        with self._cold_lock:
            self._cold_tracks = {record.id for record in cold}
        log.info(
            "restored %d cold tracks (%d re-embedded), removed %d deleted songs in %.1f s",
            len(cold),
            len(re_embedded),
            len(published - known),
            time.perf_counter() - started,
        )

    def _re_embed(self, version: LoadedVersion, record: TrackRecord) -> np.ndarray | None:
        store = self._catalogue().audio_store
        if record.audio_path is None or store is None:
            log.warning("cold track %s has no stored audio; left out of the index", record.id)
            return None
        try:
            return embed_audio(
                version.encoder, store.path(record.audio_path), self.limits, record.id
            ).vector
        except (AudioError, InvalidAudio, OSError) as error:
            log.warning("cold track %s: cannot re-embed its audio (%s)", record.id, error)
            return None

    # ---- plumbing -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.version is not None

    def require_version(self) -> LoadedVersion:
        if self.version is None:
            raise NotReady(f"no model version loaded ({self.load_error or 'starting'})")
        return self.version

    def _catalogue(self) -> Catalogue:
        if self.catalogue is None:
            raise NotReady("the catalogue is not open yet")
        return self.catalogue

    async def cpu(self, function: Callable[..., T], *args: object) -> T:
        """Run CPU-heavy `function(*args)` in a worker thread, `inference_slots` at a time."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.inference_slots)
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    def _count_songs(self) -> None:
        if self.version is not None:
            for space in ("cf", "content"):
                self.metrics.songs.labels(space).set(len(self.version.index.space(space)))

    def is_new(self, song_id: str) -> bool:
        version = self.version
        with self._cold_lock:
            cold = song_id in self._cold_tracks
        return cold or (version is not None and song_id in version.cold_song_ids)

    # ---- reading ------------------------------------------------------------------------

    def records(self, song_ids: Iterable[str]) -> dict[str, TrackRecord]:
        """The catalogue rows of `song_ids` (ids it does not hold are left out)."""
        return self._catalogue().get_tracks(song_ids)

    def hits(self, neighbours: list[tuple[str, float]]) -> list[schemas.SongHit]:
        """Result rows with titles and artists; songs deleted meanwhile are left out."""
        records = self.records(song_id for song_id, _ in neighbours)
        return [
            schemas.SongHit(
                id=song_id,
                title=records[song_id].title,
                artist=records[song_id].artist,
                score=score,
                new=self.is_new(song_id),
                has_audio=self._has_audio(records[song_id]),
            )
            for song_id, score in neighbours
            if song_id in records
        ]

    def track(self, track_id: str) -> schemas.Track:
        version = self.require_version()
        record = self.records([track_id]).get(track_id)
        if record is None:
            raise NotFound(f"no track {track_id!r}", code="track_not_found")
        spaces: list[schemas.Space] = ["cf", "content"]
        return schemas.Track(
            id=record.id,
            title=record.title,
            artist=record.artist,
            origin=record.origin,
            new=self.is_new(record.id),
            has_audio=self._has_audio(record),
            added_at=record.added_at,
            spaces=[space for space in spaces if record.id in version.index.space(space)],
        )

    def similar_to_upload(
        self, data: bytes, name: str, k: int, space: schemas.Space
    ) -> UploadResult:
        version = self.require_version()
        embedding = self._embed(version, data, name)
        started = time.perf_counter()
        neighbours = version.index.similar(embedding.vector, k, space)
        return UploadResult(embedding, neighbours, (time.perf_counter() - started) * 1e3)

    def similar_to_track(
        self, track_id: str, k: int, space: schemas.Space
    ) -> list[tuple[str, float]]:
        version = self.require_version()
        try:
            return version.index.similar_to(track_id, k, space)
        except UnknownIdError as error:
            raise NotFound(
                f"track {track_id!r} has no vector in the {space} space", code="track_not_found"
            ) from error

    def recommend(self, user_id: str, k: int, only_new: bool) -> list[tuple[str, float]]:
        version = self.require_version()
        user_vector = version.user_vector(user_id)
        if user_vector is None:
            raise NotFound(
                f"user {user_id!r} has no factors in model version {version.version_id}"
                " (users get them at the next factorization)",
                code="user_not_found",
            )
        only = None
        if only_new:
            with self._cold_lock:
                only = self._cold_tracks | version.cold_song_ids
        return version.index.recommend(user_vector, k, only_ids=only)

    def audio_file(self, track_id: str) -> tuple[Path, str]:
        """The file to play for a track: its stored upload, or a warm song's dataset file."""
        record = self.records([track_id]).get(track_id)
        if record is None:
            raise NotFound(f"no track {track_id!r}", code="track_not_found")
        store = self._catalogue().audio_store
        path: Path | None = None
        if record.audio_path is not None and store is not None:
            path = store.path(record.audio_path)
        else:
            path = self._dataset_audio_files().get(track_id)
        if path is None or not path.is_file():
            raise NotFound(f"track {track_id!r} has no stored audio", code="no_audio")
        return path, MEDIA_TYPES.get(path.suffix[1:].lower(), "application/octet-stream")

    def _has_audio(self, record: TrackRecord) -> bool:
        return record.audio_path is not None or record.id in self._dataset_audio_files()

    def _dataset_audio_files(self) -> dict[str, Path]:
        """Warm songs' recordings in the dataset the version was published from, if that
        folder is still there (listed once)."""
        if self._dataset_audio is None:
            version = self.version
            root = version.manifest["parameters"].get("dataset_root") if version else None
            self._dataset_audio = find_audio(Path(root)) if root else {}
        return self._dataset_audio

    # ---- writing ------------------------------------------------------------------------

    def add_track(
        self, data: bytes, filename: str, title: str, artist: str, track_id: str | None
    ) -> tuple[schemas.Track, Embedding]:
        """Embed the upload, store track + audio + vector durably, then index it."""
        version = self.require_version()
        embedding = self._embed(version, data, filename)
        extension = audio_extension(filename, data)
        track_id = track_id or f"new-{secrets.token_hex(8)}"
        try:
            self._catalogue().add_track(
                track_id,
                title,
                artist,
                audio=data,
                audio_ext=extension,
                origin="cold",
                vector_version=version.version_id,
            )
        except DuplicateTrack as error:
            raise Conflict(str(error), code="track_exists") from error
        except (InvalidTrack, InvalidAudio) as error:
            raise BadRequest(str(error), code="invalid_track") from error
        put_track_vector(self._catalogue(), track_id, version.version_id, embedding.vector)
        version.index.add_track(track_id, embedding.vector, embedding.vector)
        with self._cold_lock:
            self._cold_tracks.add(track_id)
        self._count_songs()
        return self.track(track_id), embedding

    def delete_track(self, track_id: str) -> None:
        version = self.require_version()
        try:
            self._catalogue().delete_track(track_id)
        except TrackNotFound as error:
            raise NotFound(str(error), code="track_not_found") from error
        try:
            version.index.remove_track(track_id)
        except UnknownIdError:
            pass  # a song without vectors (no audio, no listens) is only in the catalogue
        with self._cold_lock:
            self._cold_tracks.discard(track_id)
        self._count_songs()

    def add_listens(self, listens: list[schemas.ListenIn]) -> list[schemas.ListenResult]:
        results = self._catalogue().add_listens(
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
                    code="unknown_song"
                    if (result.error or "").startswith("unknown track")
                    else "invalid_listen",
                    message=result.error or "rejected",
                ),
            )
            for index, result in enumerate(results)
        ]

    def _embed(self, version: LoadedVersion, data: bytes, name: str) -> Embedding:
        try:
            embedding = embed_audio(version.encoder, data, self.limits, name)
        except AudioError as error:
            raise from_audio_error(error) from error
        self.metrics.observe_stages(
            decode=embedding.decode_ms, features=embedding.features_ms, model=embedding.model_ms
        )
        return embedding


# Leading bytes of the containers the front end reads, for uploads without a usable name.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "wav"),
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"),
    (4, b"ftyp", "m4a"),
)


def audio_extension(filename: str, data: bytes) -> str:
    """The extension the audio store files an upload under: the upload's own when the
    front end reads that kind, else one read from the container's leading bytes."""
    suffix = Path(filename).suffix[1:].lower()
    if suffix in AUDIO_EXTENSIONS:
        return suffix
    for offset, signature, extension in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return extension
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "mp3"  # an MPEG audio frame sync without an ID3 tag
    raise BadRequest(
        f"{filename}: cannot tell the audio format; name the file with one of"
        f" {', '.join(AUDIO_EXTENSIONS)}",
        code="unknown_audio_format",
    )
