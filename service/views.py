"""Response objects built from catalogue rows and the served state: song hits and tracks,
the recording a track plays, and what an upload's answer says about its audio."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from audio.errors import AudioError
from catalogue import Catalogue, InvalidAudio, TrackRecord
from corpus.dataset import find_audio
from service import schemas
from service.embedder import UploadEmbedder
from service.errors import NotFound
from service.serving import ServedState, Serving
from training.inference import Embedding

# Tracks whose tags GET /v1/tracks/{id} keeps (each costs a pass of the encoder to hear).
TAG_CACHE_SIZE = 4096

# A song's (title, artist, has stored audio) as result rows show it, kept per process.
SongRow = tuple[str, str, bool]
MAX_SONG_ROWS = 500_000
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
}


def tag_scores(embedding: Embedding) -> list[schemas.TagScore] | None:
    """An embedding's top tags as the API returns them; None from a model without tags."""
    if embedding.tags is None:
        return None
    return [schemas.TagScore(tag=tag, probability=p) for tag, p in embedding.tags]


def audio_info(embedding: Embedding) -> schemas.AudioInfo:
    """What the answer to an upload says about its audio, warnings included."""
    warnings = []
    if embedding.truncated:
        warnings.append(
            schemas.AudioWarning(
                code="truncated", message=f"only the first {embedding.seconds:.0f} s used"
            )
        )
    if embedding.normalised:
        warnings.append(
            schemas.AudioWarning(
                code="peak_normalised",
                message=f"samples peaked at {embedding.peak_dbfs:+.1f} dBFS, above full scale;"
                " the recording was scaled down to peak at 0 dBFS",
            )
        )
    return schemas.AudioInfo(
        seconds=round(embedding.seconds, 3),
        truncated=embedding.truncated,
        peak_normalised=embedding.normalised,
        warnings=warnings,
    )


class Views:
    """Builds the answers about catalogue tracks; `catalogue()` is the open catalogue,
    `embedder` hears a track's stored audio for its tags."""

    def __init__(
        self, catalogue: Callable[[], Catalogue], state: ServedState, embedder: UploadEmbedder
    ) -> None:
        self.catalogue = catalogue
        self.state = state
        self.embedder = embedder
        self._dataset_audio: tuple[str, dict[str, Path]] | None = None
        self._song_rows: dict[str, SongRow] = {}
        self._rows_lock = threading.Lock()
        self._forgotten = 0  # forget() calls so far
        self._tags_lock = threading.Lock()
        self._tags: OrderedDict[tuple[str, str], list[schemas.TagScore] | None] = OrderedDict()

    def records(self, song_ids: Iterable[str]) -> dict[str, TrackRecord]:
        """The catalogue rows of `song_ids` (ids it does not hold are left out)."""
        return self.catalogue().get_tracks(song_ids)

    def hits(self, neighbours: list[tuple[str, float]]) -> list[dict[str, object]]:
        """Result rows (`schemas.SongHit` as plain dicts, ready for JSON) with titles and
        artists from `song_rows`; songs the catalogue no longer holds are left out."""
        rows = self.song_rows([song_id for song_id, _ in neighbours])
        serving = self.state.current()
        new_ids = serving.new_ids if serving is not None else frozenset()
        dataset_audio = self._dataset_audio_files()
        return [
            {
                "id": song_id,
                "title": rows[song_id][0],
                "artist": rows[song_id][1],
                "score": float(score),
                "new": song_id in new_ids,
                "has_audio": rows[song_id][2] or song_id in dataset_audio,
            }
            for song_id, score in neighbours
            if song_id in rows
        ]

    def song_rows(self, song_ids: list[str]) -> dict[str, SongRow]:
        """(title, artist, has stored audio) of `song_ids`, kept in memory after their first
        read: one catalogue query for those not kept yet, none once all are (a track's
        title and artist never change; a deleted track is forgotten by `forget`). Past
        `MAX_SONG_ROWS` the kept rows are dropped all at once and read again as asked."""
        kept = self._song_rows
        found = {song_id: kept[song_id] for song_id in song_ids if song_id in kept}
        missing = [song_id for song_id in song_ids if song_id not in found]
        if missing:
            forgotten = self._forgotten
            read = {
                song_id: (record.title, record.artist, record.audio_path is not None)
                for song_id, record in self.records(missing).items()
            }
            found.update(read)
            with self._rows_lock:
                if forgotten == self._forgotten:  # else a delete may have come after the read
                    if len(self._song_rows) + len(read) > MAX_SONG_ROWS:
                        self._song_rows = {}
                    self._song_rows.update(read)
        return found

    def forget(self, song_ids: Iterable[str]) -> None:
        """Drop the kept rows of tracks deleted here or by another replica."""
        with self._rows_lock:
            self._forgotten += 1
            for song_id in song_ids:
                self._song_rows.pop(song_id, None)

    def map_songs(self, space: schemas.Space, limit: int) -> schemas.CatalogueMapResponse:
        """The served version's map of `space` with its first `limit` songs, titled; songs
        gone from the index or the catalogue since are left out; `NotFound`
        "map_not_available" for a version without one."""
        version = self.state.require().version
        space_map = version.catalogue_map.get(space)
        if space_map is None:
            raise NotFound(
                f"model version {version.version_id} has no map of the {space} space"
                " (published before maps, or with fewer than three songs there)",
                code="map_not_available",
            )
        index = version.index.space(space)
        ids = space_map.ids[:limit]
        records = self.records(song_id for song_id in ids if song_id in index)
        return schemas.CatalogueMapResponse(
            model_version=version.version_id,
            space=space,
            explained_variance=space_map.explained.tolist(),
            n_songs=space_map.n_songs,
            points=[
                schemas.MapSong(
                    id=song_id,
                    x=x,
                    y=y,
                    title=records[song_id].title,
                    artist=records[song_id].artist,
                )
                for song_id, (x, y) in zip(ids, space_map.points[:limit].tolist(), strict=True)
                if song_id in records
            ],
        )

    def track(self, track_id: str) -> schemas.Track:
        """The catalogue track `track_id`; `NotFound` "track_not_found"."""
        serving = self.state.require()
        record = self.records([track_id]).get(track_id)
        if record is None:
            raise NotFound(f"no track {track_id!r}", code="track_not_found")
        view = self.track_view(serving, record)
        if serving.version.encoder.tag_names:
            view.tags = self._stored_audio_tags(serving, record)
        return view

    def _stored_audio_tags(
        self, serving: Serving, record: TrackRecord
    ) -> list[schemas.TagScore] | None:
        """The track's top tags, heard from its stored audio by the served encoder (once
        per version and track: `TAG_CACHE_SIZE` kept), decoded by a decode worker; None
        without usable audio."""
        key = (serving.version.version_id, record.id)
        with self._tags_lock:
            if key in self._tags:
                self._tags.move_to_end(key)
                return self._tags[key]
        try:
            path, _ = self.audio_file(record.id)
            heard = self.embedder.embedding(serving.version, path.read_bytes(), record.id)
            tags = tag_scores(heard)
        except (NotFound, AudioError, InvalidAudio, OSError):
            tags = None
        with self._tags_lock:
            self._tags[key] = tags
            while len(self._tags) > TAG_CACHE_SIZE:
                self._tags.popitem(last=False)
        return tags

    def track_view(self, serving: Serving, record: TrackRecord) -> schemas.Track:
        """A track as `serving` holds it: its spaces and whether it is new."""
        spaces: list[schemas.Space] = ["cf", "content"]
        return schemas.Track(
            id=record.id,
            title=record.title,
            artist=record.artist,
            origin=record.origin,
            new=record.id in serving.new_ids,
            has_audio=self._has_audio(record),
            added_at=record.added_at,
            spaces=[space for space in spaces if record.id in serving.version.index.space(space)],
        )

    def audio_file(self, track_id: str) -> tuple[Path, str]:
        """The file to play for a track, and its media type: its stored upload, or a warm
        song's dataset file; `NotFound` "track_not_found" or "no_audio"."""
        record = self.records([track_id]).get(track_id)
        if record is None:
            raise NotFound(f"no track {track_id!r}", code="track_not_found")
        store = self.catalogue().audio_store
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
        """Warm songs' recordings in the dataset the served version was published from, if
        that folder is still there (listed once per dataset folder)."""
        serving = self.state.current()
        root = serving.version.manifest["parameters"].get("dataset_root") if serving else None
        if not root:
            return {}
        listed = self._dataset_audio
        if listed is None or listed[0] != root:
            listed = (root, find_audio(Path(root)))
            self._dataset_audio = listed
        return listed[1]
