"""The served state: the model version answering requests, what the service put on top of
it, and the pinning of each request to the state it first reads.

One `Serving` is replaced whole (by a swap, and by every track write), never changed in
place, so a request that pinned it sees one version from start to end, and the old
version is freed once the last such request is done. Writers replace it under
`ServedState.lock`, which a swap's last step also holds; while a swap prepares, the ids
that writers touch are collected for it to catch up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from pipeline.registry.read import LoadedVersion
from service.errors import NotReady
from service.metrics import ServiceMetrics


@dataclass(frozen=True)
class Serving:
    """A model version with what the service put on top of it.

    `new_ids`: the version's cold songs plus the cold tracks added on top of it (what the
    `new` flag and `only_new` mean); `published_songs`: the ids of the version's songs.csv,
    so that the next dataset version imports only the songs it adds."""

    version: LoadedVersion
    new_ids: frozenset[str]
    published_songs: frozenset[str]


class _Pin:
    """The serving state one request uses: taken at its first use, then kept."""

    __slots__ = ("serving", "taken")

    def __init__(self) -> None:
        self.serving: Serving | None = None
        self.taken = False


_PIN: ContextVar[_Pin | None] = ContextVar("coldstart_pin", default=None)


class ServedState:
    """The latest `Serving`, the lock its writers hold, and the ids touched during a swap."""

    def __init__(self) -> None:
        self.serving: Serving | None = None
        # Why no version is served yet (a registry without one, a version that failed).
        self.load_error: str | None = None
        # Held by track writes, the follower's sync and the last step of a swap.
        self.lock = threading.Lock()
        self._touched: set[str] | None = None

    # ---- request pinning ----------------------------------------------------------------

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within this block (one request, and the worker threads it calls, which copy
        its context), the serving state is read once, at its first use, and kept."""
        token = _PIN.set(_Pin())
        try:
            yield
        finally:
            _PIN.reset(token)

    def current(self) -> Serving | None:
        """The request's pinned serving state, or outside a request the latest one."""
        pin = _PIN.get()
        if pin is None:
            return self.serving
        if not pin.taken:
            pin.serving, pin.taken = self.serving, True
        return pin.serving

    def require(self) -> Serving:
        """The request's serving state; `NotReady` if no version is loaded."""
        serving = self.current()
        if serving is None:
            raise NotReady(f"no model version loaded ({self.load_error or 'starting'})")
        return serving

    def is_new(self, song_id: str) -> bool:
        """A cold song of the version, or a cold track added on top of it (one that the
        version holds with WMF factors is not new any more)."""
        serving = self.current()
        return serving is not None and song_id in serving.new_ids

    # ---- what a swap catches up (callers hold `lock`) -----------------------------------

    def collect_touched(self) -> None:
        """Start collecting the ids that writes touch, for the swap being prepared."""
        self._touched = set()

    def touch(self, track_ids: Iterable[str]) -> None:
        """Note ids added or deleted, if a swap is being prepared."""
        if self._touched is not None:
            self._touched.update(track_ids)

    def take_touched(self) -> set[str]:
        """The ids touched since `collect_touched`; collecting stops."""
        touched, self._touched = self._touched or set(), None
        return touched

    # ---- metrics ------------------------------------------------------------------------

    def count_songs(self, metrics: ServiceMetrics) -> None:
        """Set the songs gauge of each space from the latest version's index."""
        serving = self.serving
        if serving is not None:
            for space in ("cf", "content"):
                metrics.songs.labels(space).set(len(serving.version.index.space(space)))
