"""Prometheus metrics of one app: requests and latency per route template, stages, model
version and its swaps, the catalogue changes followed from other replicas, the catalogue
tracks that could not be taken as stored, users folded in; and, read at each scrape
(`Freshness`), the served version's age and the last pipeline run's outcome and duration.

Each app owns its `CollectorRegistry` (not the process-global one), so that several apps
in one process (tests, the benchmark) never clash over metric names. Under `coldstart
serve --workers N` each worker is a process of its own and a scrape reaches one of them:
there `PROMETHEUS_MULTIPROC_DIR` is set (prometheus_client's multiprocess mode: each
process writes its values to files there) and a scrape reads every worker's
(`MultiProcessCollector`): counters and histograms summed, each gauge as its
`multiprocess_mode` says (the decode workers summed, the model loaded at its minimum), and
the version and freshness of the worker that answers. The middleware is a
plain ASGI one: it labels a request with the route template Starlette matched
(`/v1/tracks/{track_id}`, never the raw path, which would give a series per id) and
counts the status that was actually sent.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("coldstart.service")

# Latency buckets from 5 ms (a lookup) to 30 s (a long upload on a busy machine).
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED_ROUTE = "<unmatched>"
TrackProblem = Literal["unusable_vector", "missing_audio", "undecodable_audio", "unembeddable"]
TRACK_PROBLEMS: tuple[TrackProblem, ...] = get_args(TrackProblem)
# Why a decode worker failed (`service.decode_pool`).
DecodeFailureReason = Literal["crash", "timeout", "out_of_memory", "protocol"]
DECODE_FAILURE_REASONS: tuple[DecodeFailureReason, ...] = get_args(DecodeFailureReason)
RUN_OUTCOMES = ("published", "refused", "failed", "busy")  # catalogue.runs.FINISHED


# The folder prometheus_client's multiprocess mode writes to (set by `coldstart serve` for
# several workers, read by prometheus_client when it is imported).
MULTIPROCESS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"


def forget_dead_processes(folder: Path) -> None:
    """Drop the live-mode gauge files of processes that are gone (a worker uvicorn replaced
    after it died), so that "livesum" and "livemin" count the live workers only."""
    for file in folder.glob("gauge_live*_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(folder))
        except PermissionError:  # alive, someone else's
            pass


class ServiceMetrics:
    """The app's collectors, all under the `coldstart_` prefix."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "coldstart_http_requests_total",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "coldstart_http_request_duration_seconds",
            "Wall-clock time from request to the end of the answer, by route template.",
            ["method", "route"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "coldstart_stage_duration_seconds",
            "Time per stage of an upload: decode, features, model, search.",
            ["stage"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.model = Info(
            "coldstart_model", "The model version being served.", registry=self.registry
        )
        self.model_loaded = Gauge(
            "coldstart_model_loaded",
            "1 when a model version is loaded (in every worker).",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.model_swaps = Counter(
            "coldstart_model_swaps",
            "Model versions switched to (the one loaded at start included).",
            registry=self.registry,
        )
        self.model_swap_failures = Counter(
            "coldstart_model_swap_failures",
            "Model versions that failed to load or prepare (the served one stayed).",
            registry=self.registry,
        )
        self.followed_changes = Counter(
            "coldstart_catalogue_followed_changes",
            "Tracks placed in or removed from the index because another replica (or process)"
            " added or deleted them; this replica's own writes count nothing.",
            ["change"],
            registry=self.registry,
        )
        for change in ("placed", "removed"):
            self.followed_changes.labels(change)  # exported at 0 from the start
        self.follow_failures = Counter(
            "coldstart_catalogue_follow_failures",
            "Reads of the catalogue's change log that failed (retried at the next poll).",
            registry=self.registry,
        )
        self.track_problems = Counter(
            "coldstart_catalogue_track_problems",
            "Catalogue tracks the service could not take as stored, at a start-up, a swap or"
            " from another replica: `unusable_vector` (NaN, wrong shape; re-embedded from its"
            " audio when that works), `missing_audio`, `undecodable_audio` and"
            " `unembeddable` (the track is then left out of the index).",
            ["problem"],
            registry=self.registry,
        )
        for problem in TRACK_PROBLEMS:
            self.track_problems.labels(problem)
        self.event_floor = Gauge(
            "coldstart_catalogue_event_floor",
            "The change log's seq up to which every event has been applied (compare replicas).",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.users_folded_in = Counter(
            "coldstart_users_folded_in",
            "User vectors solved from listens against the served version's song factors (a"
            " listener new since the version, or whose listens changed); kept ones count once.",
            registry=self.registry,
        )
        self.songs = Gauge(
            "coldstart_index_songs",
            "Song vectors held per index space.",
            ["space"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.decode_workers = Gauge(
            "coldstart_decode_workers",
            "Decode worker processes alive (uploads are decoded in them, `service.decode_pool`).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.decode_workers_busy = Gauge(
            "coldstart_decode_workers_busy",
            "Decode worker processes decoding an upload now.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.decode_workers_started = Counter(
            "coldstart_decode_workers_started",
            "Decode worker processes started: the first ones, replacements of failed ones and"
            " of those retired after their share of jobs.",
            registry=self.registry,
        )
        self.decode_worker_failures = Counter(
            "coldstart_decode_worker_failures",
            "Uploads whose decode worker failed, by reason: `crash` (it died, e.g. a signal),"
            " `timeout` (past its deadline or CPU seconds), `out_of_memory` (past its address"
            " space), `protocol` (an answer out of shape); each worker is then replaced.",
            ["reason"],
            registry=self.registry,
        )
        for reason in DECODE_FAILURE_REASONS:
            self.decode_worker_failures.labels(reason)
        self._scraped = self.registry
        folder = os.environ.get(MULTIPROCESS_FOLDER)
        if folder:
            forget_dead_processes(Path(folder))
            self._scraped = CollectorRegistry(auto_describe=True)
            multiprocess.MultiProcessCollector(self._scraped, folder)
            self._scraped.register(self.model)  # an Info is per process: this worker's

    def add_scraped(self, collector: Collector) -> None:
        """Add a collector read at each scrape (`Freshness`), this process's own."""
        self.registry.register(collector)
        if self._scraped is not self.registry:
            self._scraped.register(collector)

    def exposition(self) -> bytes:
        """What `/metrics` answers: the text format, every worker's values in multiprocess
        mode (see the module docstring)."""
        return generate_latest(self._scraped)

    def observe_stages(self, **milliseconds: float) -> None:
        for stage, value in milliseconds.items():
            self.stages.labels(stage).observe(value / 1e3)


@dataclass(frozen=True)
class LastRun:
    """What the scrape reports of the pipeline run that ended last."""

    status: str
    seconds: float | None
    finished_at: datetime


class Freshness:
    """A collector read at each scrape (so the numbers are as of the scrape, not of the last
    request): `coldstart_model_version_age_seconds` (now minus the served version's
    creation), `coldstart_pipeline_last_run_status{status}` (1 for how the run that ended
    last ended: published, refused, failed or busy; 0 for the others),
    `coldstart_pipeline_last_run_duration_seconds` and
    `coldstart_pipeline_last_run_finished_timestamp_seconds` (alert when it is too old).
    `served_created_at()` and `last_run()` give them (None: nothing to report); a failure
    to read the last run leaves its metrics out of that scrape."""

    def __init__(
        self,
        served_created_at: Callable[[], datetime | None],
        last_run: Callable[[], LastRun | None],
    ) -> None:
        self.served_created_at = served_created_at
        self.last_run = last_run

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time only: nothing to describe at registration

    def collect(self) -> Iterable[Metric]:
        created = self.served_created_at()
        if created is not None:
            yield GaugeMetricFamily(
                "coldstart_model_version_age_seconds",
                "Seconds since the served model version was created (published).",
                value=(datetime.now(UTC) - created).total_seconds(),
            )
        try:
            run = self.last_run()
        except Exception as error:  # a scrape must answer even if the database does not
            log.warning("metrics: the last pipeline run could not be read: %s", error)
            return
        if run is None:
            return
        status = GaugeMetricFamily(
            "coldstart_pipeline_last_run_status",
            "1 for how the pipeline run that ended last ended, 0 for the other outcomes.",
            labels=["status"],
        )
        for outcome in RUN_OUTCOMES:
            status.add_metric([outcome], 1.0 if run.status == outcome else 0.0)
        yield status
        if run.seconds is not None:
            yield GaugeMetricFamily(
                "coldstart_pipeline_last_run_duration_seconds",
                "How long the pipeline run that ended last took, from its start to its end.",
                value=run.seconds,
            )
        yield GaugeMetricFamily(
            "coldstart_pipeline_last_run_finished_timestamp_seconds",
            "When the pipeline run that ended last ended (Unix time).",
            value=run.finished_at.timestamp(),
        )


class MetricsMiddleware:
    """Count and time every HTTP request by (method, route template, status)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
