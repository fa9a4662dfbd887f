"""A user as the served version sees them: the songs they played and the vector they are
recommended with.

Played songs: those of the version's own listens (`LoadedVersion.listens`, in memory) and
those of the catalogue's listens posted since the version was built (ids above its
`listens_through`): one indexed query, the only database read of a recommendation.

The vector is
- "fitted": the version's WMF factors, when the user has them and no listen posted since
  touches a song with WMF factors (the factorization saw all that counts);
- "folded_in": otherwise, solved from all the user's plays of songs with WMF factors (the
  version's and those since) against the version's fixed song factors, with its confidence,
  regularization and factor count (`factorization.fold_in`): a listener new since the
  version, or one whose listens changed. It is kept, per version and replica, until the
  user's listens change or another version is served (at most `max_kept` users, the least
  recently used dropped first, and solved again when asked for). What it was solved from is
  kept as a 16-byte digest of those listens (`listens_digest`), not the listens: a user's
  listens since the version grow with every play, up to a row per song they played.
A user without a play of a song with WMF factors has no vector: `NotFound` "user_not_found".
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from catalogue import Catalogue
from factorization.fold_in import fold_in_user
from pipeline.registry.read import LoadedVersion
from service.errors import NotFound
from service.metrics import ServiceMetrics

UserVector = Literal["fitted", "folded_in"]
Since = tuple[tuple[str, int], ...]  # (song id, plays) posted since the version, by song


@dataclass(frozen=True)
class Listener:
    """`vector` `(F,)` float32 and how it came (`kind`); `played`: the ids of every song the
    user played, in the version's listens or since."""

    user_id: str
    vector: np.ndarray
    kind: UserVector
    played: frozenset[str]


class Listeners:
    """Users of the served version: played songs, fitted or folded-in vectors (kept)."""

    def __init__(
        self, catalogue: Callable[[], Catalogue], metrics: ServiceMetrics, max_kept: int
    ) -> None:
        self.catalogue = catalogue
        self.metrics = metrics
        self.max_kept = max_kept
        self._lock = threading.Lock()
        self._version: str | None = None
        # user id -> (`listens_digest` of the listens since that it was solved from, vector)
        self._folded: OrderedDict[str, tuple[bytes, np.ndarray]] = OrderedDict()

    def of(self, version: LoadedVersion, user_id: str) -> Listener:
        """The user as `version` sees them, with their listens since it read now."""
        since = self.catalogue().user_listens_since(user_id, version.listens_through)
        return self._listener(version, user_id, tuple(since))

    def refresh(self, version: LoadedVersion, user_ids: Iterable[str]) -> None:
        """Fold in again the users whose listens were just posted (one query for all), so
        that their next recommendation finds their vector ready."""
        since: dict[str, list[tuple[str, int]]] = {}
        users = set(user_ids)
        for user, song, plays in self.catalogue().listens_since(users, version.listens_through):
            since.setdefault(user, []).append((song, plays))
        columns = _columns_by_user(version, since)
        for user in users:
            try:
                self._listener(version, user, tuple(since.get(user, ())), columns.get(user))
            except NotFound:  # listened only to songs without factors: nothing to keep
                continue

    def _listener(
        self,
        version: LoadedVersion,
        user_id: str,
        since: Since,
        since_columns: np.ndarray | None = None,
    ) -> Listener:
        """`since_columns`: the version's column of each song of `since` (found here when
        None; `refresh` finds a whole request's at once)."""
        listens = version.listens
        fitted = version.user_vector(user_id)
        row = version.listener_row(user_id)
        if listens is None:  # a version from before versions kept their listens
            played = frozenset(song for song, _ in since)
            if fitted is None:
                raise NotFound(_why_no_vector(version, user_id, played), code="user_not_found")
            return Listener(user_id, fitted, "fitted", played)
        columns, counts = listens.of_row(row) if row is not None else ((), ())
        if since_columns is None:
            since_columns = listens.columns([song for song, _ in since])
        known = since_columns >= 0
        played = frozenset(listens.song_ids[np.asarray(columns, dtype=np.int64)]) | {
            song for song, _ in since
        }
        changed = bool((since_columns[known] < listens.n_factor_songs).any())
        if fitted is not None and not changed:
            return Listener(user_id, fitted, "fitted", played)
        vector = self._folded_in(
            version,
            user_id,
            since,
            np.concatenate([np.asarray(columns, dtype=np.int64), since_columns[known]]),
            np.concatenate(
                [
                    np.asarray(counts, dtype=np.int64),
                    np.array([plays for _, plays in since], dtype=np.int64)[known],
                ]
            ),
            played,
        )
        return Listener(user_id, vector, "folded_in", played)

    def _folded_in(
        self,
        version: LoadedVersion,
        user_id: str,
        since: Since,
        columns: np.ndarray,
        counts: np.ndarray,
        played: frozenset[str],
    ) -> np.ndarray:
        """The user's folded-in vector: kept from an earlier solve on the same listens, or
        solved now from the plays `counts` of the version's song `columns` (repeats summed);
        `NotFound` when none of them has factors."""
        digest = listens_digest(since)
        kept = self._kept(version.version_id, user_id)
        if kept is not None and kept[0] == digest:
            return kept[1]
        listens, song_factors, rule = version.listens, version.song_factors, version.fold_in_rule
        assert listens is not None  # callers fold in only with the version's listens
        unique, where = np.unique(columns, return_inverse=True)
        summed = np.bincount(where, weights=counts, minlength=unique.size)
        with_factors = unique < listens.n_factor_songs
        if song_factors is None or rule is None or not with_factors.any():
            raise NotFound(_why_no_vector(version, user_id, played), code="user_not_found")
        vector = fold_in_user(song_factors, unique[with_factors], summed[with_factors], rule)
        self.metrics.users_folded_in.inc()
        self._keep(version.version_id, user_id, digest, vector)
        return vector

    def _kept(self, version_id: str, user_id: str) -> tuple[bytes, np.ndarray] | None:
        with self._lock:
            if self._version != version_id:
                return None
            kept = self._folded.get(user_id)
            if kept is not None:
                self._folded.move_to_end(user_id)
            return kept

    def _keep(self, version_id: str, user_id: str, digest: bytes, vector: np.ndarray) -> None:
        """Keep the vector for `version_id` (another version's vectors are dropped)."""
        with self._lock:
            if self._version != version_id:
                self._version, self._folded = version_id, OrderedDict()
            self._folded[user_id] = (digest, vector)
            self._folded.move_to_end(user_id)
            while len(self._folded) > self.max_kept:
                self._folded.popitem(last=False)


def _columns_by_user(
    version: LoadedVersion, since: dict[str, list[tuple[str, int]]]
) -> dict[str, np.ndarray]:
    """Each user's songs of `since` as the version's columns `(n,)` int64, -1 for none,
    looked up in one call: a lookup per user took a quarter of a 1,000-listen request."""
    if version.listens is None or not since:
        return {}
    flat = version.listens.columns([song for rows in since.values() for song, _ in rows])
    bounds = np.cumsum([0, *(len(rows) for rows in since.values())])
    return {
        user: flat[start:stop]
        for user, start, stop in zip(since, bounds[:-1], bounds[1:], strict=True)
    }


def listens_digest(since: Since) -> bytes:
    """16 bytes that tell apart two lists of a user's listens since a version (BLAKE2b of
    their repr, which quotes each song id): what a kept vector was solved from."""
    return hashlib.blake2b(repr(since).encode(), digest_size=16).digest()


def _why_no_vector(version: LoadedVersion, user_id: str, played: frozenset[str]) -> str:
    if not played:
        return (
            f"user {user_id!r} has no listens (model version {version.version_id}):"
            " post some with POST /v1/listens"
        )
    if version.fold_in_rule is None or version.listens is None:
        return (
            f"user {user_id!r} has no factors in model version {version.version_id}, which"
            " predates folding users in (users get factors at the next factorization)"
        )
    return (
        f"user {user_id!r} has listened only to songs without listening factors in model"
        f" version {version.version_id} (tracks new since): nothing to fold in yet"
    )
