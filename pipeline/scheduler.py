"""The scheduler: queues a retrain at each cron time and runs queued retrains one by one.

Retrains are asked for by queueing a row in the catalogue's `pipeline_runs`
(`catalogue.runs`): by the cron schedule here, by `POST /v1/admin/retrain`, or by
`coldstart retrain`. Every poll the scheduler claims the oldest queued run and executes
`coldstart pipeline` as a child process in its own session, so that a crash (or an
out-of-memory kill) of the pipeline never takes the scheduler down, and a stop reaches
the pipeline's own workers too. The child writes its summary and log under
`REG/pipeline/runs/<run id>/`; the row is finished from its exit code
(`pipeline.outcome`) and summary.

Settings (pydantic-settings, prefix COLDSTART_, shared with the service where they agree):

    COLDSTART_REGISTRY                the model registry folder
    COLDSTART_DATABASE_URL            the catalogue DB: the run queue, and the pipeline's data
    COLDSTART_AUDIO_STORE             the catalogue's audio store (default: beside a SQLite file)
    COLDSTART_RETRAIN_CRON            when to retrain, a 5-field cron line (default "0 3 * * *")
    COLDSTART_RETRAIN_TIMEZONE        the zone the cron line is read in (default UTC)
    COLDSTART_PIPELINE_DATASET        train from this dataset folder instead of the catalogue
    COLDSTART_PIPELINE_ARGS           more `coldstart pipeline` options, split as a shell would
    COLDSTART_SCHEDULER_POLL_SECONDS  how often to look for queued runs (default 5)

A cron time that passes while a run executes queues one run once it ends; times that pass
while no scheduler is up are not made up for.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.exc import SQLAlchemyError

from artifacts.run_layout import LOG_FILE, RUNS_DIR, SUMMARY_FILE, WORK_DIR
from catalogue import Catalogue
from catalogue.db import DEFAULT_DATABASE_URL
from catalogue.runs import (
    RunRecord,
    Status,
    claim_next,
    fail_abandoned,
    finish_run,
    heartbeat,
    request_run,
)
from pipeline.outcome import OUTCOME_OF_EXIT_CODE, Outcome

log = logging.getLogger("coldstart.scheduler")

PIPELINE_COMMAND: tuple[str, ...] = (sys.executable, "-c", "from cli.main import app; app()")
TERMINATE_GRACE_S = 30.0
MIN_STALE_AFTER = timedelta(minutes=1)


class SchedulerSettings(BaseSettings):
    """What the scheduler needs; see the module docstring for the variables."""

    model_config = SettingsConfigDict(env_prefix="COLDSTART_", extra="ignore", frozen=True)

    registry: Path = Path("registry")
    database_url: str = DEFAULT_DATABASE_URL
    audio_store: Path | None = None
    retrain_cron: str = "0 3 * * *"
    retrain_timezone: str = "UTC"
    pipeline_dataset: Path | None = None
    pipeline_args: Annotated[tuple[str, ...], NoDecode] = ()
    scheduler_poll_seconds: float = Field(default=5.0, gt=0, le=3600)

    @field_validator("retrain_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a 5-field cron line (minute hour day month weekday),"
                " e.g. '0 3 * * *' for 03:00 every day"
            )
        return value

    @field_validator("retrain_timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from error
        return value

    @field_validator("pipeline_args", mode="before")
    @classmethod
    def _split_args(cls, value: Any) -> Any:
        """COLDSTART_PIPELINE_ARGS="--epochs 3 --gate-tolerance 0.01": split as a shell would."""
        return tuple(shlex.split(value)) if isinstance(value, str) else value


def next_due(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after `after` (aware) that `cron` names, read as wall-clock
    time in `timezone` (so "0 3 * * *" stays at 03:00 local across DST); aware UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    due: datetime = croniter(cron, local).get_next(datetime)
    return due.astimezone(UTC)


def outcome_of(exit_code: int, summary: dict[str, Any] | None) -> tuple[Status, str]:
    """A finished run's status and message: the exit code says how it ended; without a
    summary (the pipeline was killed, or never started) a run counts as failed."""
    if summary is None:
        return "failed", f"pipeline exited with code {exit_code}, no summary"
    status = OUTCOME_OF_EXIT_CODE.get(exit_code, Outcome.FAILED).value
    message = str(summary.get("message") or f"pipeline exited with code {exit_code}")
    return status, message  # type: ignore[return-value]


def read_summary(path: Path) -> dict[str, Any] | None:
    """The pipeline's summary, or None when it is missing or not a JSON object."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


class Scheduler:
    """The loop of one scheduler process: `run()` until `stop()`."""

    def __init__(
        self,
        settings: SchedulerSettings,
        catalogue: Catalogue,
        *,
        command: Sequence[str] = PIPELINE_COMMAND,
        terminate_grace_s: float = TERMINATE_GRACE_S,
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.command = tuple(command)
        self.terminate_grace_s = terminate_grace_s
        self.next_cron = next_due(
            settings.retrain_cron, settings.retrain_timezone, datetime.now(UTC)
        )
        self._stopping = threading.Event()

    @property
    def stale_after(self) -> timedelta:
        """How old a running row's heartbeat may be before its scheduler counts as dead."""
        return max(MIN_STALE_AFTER, timedelta(seconds=12 * self.settings.scheduler_poll_seconds))

    def stop(self) -> None:
        """Ask the loop to end after the current poll (safe from a signal handler)."""
        self._stopping.set()

    def run(self) -> None:
        log.info(
            "scheduler up: cron %r (%s), next retrain at %s; polling every %g s",
            self.settings.retrain_cron,
            self.settings.retrain_timezone,
            self.next_cron.isoformat(),
            self.settings.scheduler_poll_seconds,
        )
        while not self._stopping.is_set():
            try:
                self.poll()
            except SQLAlchemyError as error:  # the database restarting: try again next poll
                log.error("poll failed: %s", error)
            self._stopping.wait(self.settings.scheduler_poll_seconds)
        log.info("scheduler stopped")

    def poll(self) -> RunRecord | None:
        """One turn: fail abandoned runs, queue the cron run when due, execute the next
        queued run; returns the run executed, if any."""
        for run_id in fail_abandoned(self.catalogue, self.stale_after):
            log.warning("run %s was abandoned by a scheduler that stopped: marked failed", run_id)
        now = datetime.now(UTC)
        if now >= self.next_cron:
            queued, already = request_run(self.catalogue, "cron")
            log.info("cron: %s run %s", "already queued" if already else "queued", queued.id)
            self.next_cron = next_due(
                self.settings.retrain_cron, self.settings.retrain_timezone, now
            )
        if self._stopping.is_set():
            return None
        claimed = claim_next(self.catalogue)
        return self.execute(claimed) if claimed is not None else None

    def pipeline_command(self, run_id: str, run_dir: Path) -> list[str]:
        if self.settings.pipeline_dataset is not None:
            source = ["--dataset", str(self.settings.pipeline_dataset)]
        else:
            source = ["--database", self.settings.database_url]
            if self.settings.audio_store is not None:
                source += ["--audio-store", str(self.settings.audio_store)]
        return [
            *self.command,
            "pipeline",
            "--registry",
            str(self.settings.registry),
            *source,
            "--summary",
            str(run_dir / SUMMARY_FILE),
            "--run-id",
            run_id,
            *self.settings.pipeline_args,
        ]

    def execute(self, run: RunRecord) -> RunRecord:
        """Run the pipeline for a claimed run and record how it ended."""
        run_dir = self.settings.registry / WORK_DIR / RUNS_DIR / run.id
        run_dir.mkdir(parents=True, exist_ok=True)
        summary_path = run_dir / SUMMARY_FILE
        summary_path.unlink(missing_ok=True)
        log.info("run %s (%s) started; log: %s", run.id, run.trigger, run_dir / LOG_FILE)
        started = time.monotonic()
        with open(run_dir / LOG_FILE, "ab") as pipeline_log:
            child = subprocess.Popen(
                self.pipeline_command(run.id, run_dir),
                stdin=subprocess.DEVNULL,
                stdout=pipeline_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C of the scheduler's terminal does not reach it
            )
            stopped = self._wait(child, run.id)
        seconds = time.monotonic() - started
        exit_code = child.returncode
        summary = read_summary(summary_path)
        if stopped:
            status: Status = "failed"
            message = "the scheduler stopped during the run: the pipeline was terminated"
        else:
            status, message = outcome_of(exit_code, summary)
        finished = finish_run(
            self.catalogue,
            run.id,
            status,
            exit_code=exit_code,
            message=message,
            version_id=summary.get("version_id") if summary and status == "published" else None,
            summary=summary,
        )
        log.info("run %s %s in %.1f s (exit %s): %s", run.id, status, seconds, exit_code, message)
        return finished

    def _wait(self, child: subprocess.Popen[bytes], run_id: str) -> bool:
        """Wait for the child, renewing the run's heartbeat; True when a stop ended it
        first (after terminating it)."""
        while True:
            try:
                child.wait(timeout=self.settings.scheduler_poll_seconds)
                return False
            except subprocess.TimeoutExpired:
                pass
            if self._stopping.is_set():
                self._terminate(child, run_id)
                return True
            try:
                heartbeat(self.catalogue, run_id)
            except SQLAlchemyError as error:  # keep waiting on the child all the same
                log.warning("run %s: heartbeat not recorded: %s", run_id, error)

    def _terminate(self, child: subprocess.Popen[bytes], run_id: str) -> None:
        """SIGTERM to the pipeline's process group, SIGKILL after the grace period."""
        log.warning("stopping: terminating the pipeline of run %s", run_id)
        for sig, grace in ((signal.SIGTERM, self.terminate_grace_s), (signal.SIGKILL, None)):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                pass
            try:
                child.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                log.warning("run %s: the pipeline outlived %g s after SIGTERM", run_id, grace)
