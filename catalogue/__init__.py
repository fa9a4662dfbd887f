"""The catalogue: tracks, their stored audio and listens, in SQLite or PostgreSQL.

`open_catalogue(url, audio_root)` migrates the database to the current schema and returns
a `Catalogue`; the service reads the URL from `COLDSTART_DATABASE_URL`.
"""

from catalogue.audio_store import AudioStore, StoredAudio
from catalogue.db import DATABASE_URL_ENV, open_catalogue
from catalogue.errors import (
    CatalogueError,
    DuplicateTrack,
    InvalidAudio,
    InvalidTrack,
    SchemaTooNew,
    TrackNotFound,
)
from catalogue.repository import Catalogue, ListenIn, ListenRejection, ListenResult, TrackRecord

__all__ = [
    "DATABASE_URL_ENV",
    "AudioStore",
    "Catalogue",
    "CatalogueError",
    "DuplicateTrack",
    "InvalidAudio",
    "InvalidTrack",
    "ListenIn",
    "ListenRejection",
    "ListenResult",
    "SchemaTooNew",
    "StoredAudio",
    "TrackNotFound",
    "TrackRecord",
    "open_catalogue",
]
