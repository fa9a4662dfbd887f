"""Domain errors of the catalogue: the service maps them to HTTP statuses; no HTTP here."""

from __future__ import annotations


class CatalogueError(Exception):
    """Base of every catalogue error."""


class TrackNotFound(CatalogueError, LookupError):
    """No track has this id."""


class DuplicateTrack(CatalogueError):
    """A track with this id already exists."""


class InvalidTrack(CatalogueError, ValueError):
    """Track fields break the catalogue's rules (blank id, too long, unknown origin, ...)."""


class InvalidAudio(CatalogueError, ValueError):
    """Audio bytes that cannot be stored: empty, or an extension the front end cannot read."""


class SchemaTooNew(CatalogueError):
    """The database was migrated by a newer coldstart: its schema version is one this code
    does not know, so it neither reads it nor migrates it (the message names both)."""
