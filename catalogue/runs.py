"""Records of pipeline runs (table `pipeline_runs`): the scheduler's queue and its history,
and the versions made current by hand (status "activated", `record_activation`).

A retrain is asked for (by the cron schedule, `POST /v1/admin/retrain` or the CLI) by
queueing a row; a scheduler claims the oldest queued row, runs `coldstart pipeline`, and
finishes the row with the outcome. The database keeps the rules when several processes
share it:

- at most one run is queued (a partial unique index): asking again while one waits
  returns the waiting one, so a burst of requests becomes one retrain;
- a claim is exclusive: PostgreSQL locks the row (`FOR UPDATE SKIP LOCKED`, so a second
  scheduler skips it rather than waiting), SQLite serialises the claim in a `BEGIN
  IMMEDIATE` write transaction;
- a running row carries a heartbeat that its scheduler renews; a row whose heartbeat went
  stale (its scheduler died) is failed by `fail_abandoned`, so it does not read "running"
  forever.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from catalogue.errors import CatalogueError
from catalogue.models import MAX_VERSION_LENGTH, Base, UTCDateTime, utc_now
from catalogue.repository import WRITE_OPTION, Catalogue

Trigger = Literal["cron", "api", "cli"]
Status = Literal["queued", "running", "published", "refused", "failed", "busy", "activated"]
TRIGGERS: tuple[Trigger, ...] = ("cron", "api", "cli")
STATUSES: tuple[Status, ...] = (
    "queued",
    "running",
    "published",
    "refused",
    "failed",
    "busy",
    "activated",
)
FINISHED: tuple[Status, ...] = ("published", "refused", "failed", "busy")
RUN_ID_LENGTH = 16  # hex characters
MAX_REQUESTED_BY_LENGTH = 100
MAX_RUNS_LISTED = 1000
_QUEUED = text("status = 'queued'")


class RunNotFound(CatalogueError, LookupError):
    """No pipeline run has this id."""


class PipelineRun(Base):
    __tablename__ = "pipeline_runs"

    id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(8))
    requested_by: Mapped[str | None] = mapped_column(String(MAX_REQUESTED_BY_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    exit_code: Mapped[int | None] = mapped_column(Integer)
    version_id: Mapped[str | None] = mapped_column(String(MAX_VERSION_LENGTH))
    message: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("trigger IN ('cron', 'api', 'cli')", name="trigger"),
        CheckConstraint(
            "status IN ('queued', 'running', 'published', 'refused', 'failed', 'busy',"
            " 'activated')",
            name="status",
        ),
        Index("ix_pipeline_runs_requested_at", "requested_at"),
        Index("ix_pipeline_runs_status", "status"),
        Index(
            "uq_pipeline_runs_one_queued",
            "status",
            unique=True,
            sqlite_where=_QUEUED,
            postgresql_where=_QUEUED,
        ),
    )


@dataclass(frozen=True)
class RunRecord:
    """One row of `pipeline_runs`; `summary` is the pipeline's run summary (parsed JSON)."""

    id: str
    trigger: Trigger
    requested_by: str | None
    status: Status
    requested_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    version_id: str | None
    message: str | None
    summary: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Any) -> RunRecord:
        return cls(
            id=row.id,
            trigger=row.trigger,
            requested_by=row.requested_by,
            status=row.status,
            requested_at=row.requested_at,
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            finished_at=row.finished_at,
            exit_code=row.exit_code,
            version_id=row.version_id,
            message=row.message,
            summary=json.loads(row.summary) if row.summary is not None else None,
        )


def _writing(catalogue: Catalogue) -> Any:
    return catalogue.engine.execution_options(**{WRITE_OPTION: True})


def _queued_run(connection: Any) -> Any:
    return connection.execute(
        select(PipelineRun.__table__).where(PipelineRun.status == "queued")
    ).first()


def _check_asker(trigger: str, requested_by: str | None) -> None:
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
    if requested_by is not None and len(requested_by) > MAX_REQUESTED_BY_LENGTH:
        raise ValueError(f"requested_by is longer than {MAX_REQUESTED_BY_LENGTH} characters")


def request_run(
    catalogue: Catalogue, trigger: Trigger, requested_by: str | None = None
) -> tuple[RunRecord, bool]:
    """Queue a run, or return the one already waiting; the flag says which (True: it was
    already queued). `requested_by` names who asked (a key's label, never the key)."""
    _check_asker(trigger, requested_by)
    for _ in range(3):  # a concurrent request may win the unique index: then return its run
        run_id = secrets.token_hex(RUN_ID_LENGTH // 2)
        try:
            with _writing(catalogue).begin() as connection:
                waiting = _queued_run(connection)
                if waiting is not None:
                    return RunRecord.from_row(waiting), True
                connection.execute(
                    insert(PipelineRun).values(
                        id=run_id,
                        trigger=trigger,
                        requested_by=requested_by,
                        status="queued",
                        requested_at=utc_now(),
                    )
                )
        except IntegrityError:
            continue
        return get_run(catalogue, run_id), False
    raise CatalogueError("could not queue a pipeline run: the queue kept changing")


def record_activation(
    catalogue: Catalogue,
    trigger: Trigger,
    version_id: str,
    previous: str | None,
    requested_by: str | None = None,
    note: str | None = None,
) -> RunRecord:
    """Record in the run history that `version_id` was made current by hand (a rollback,
    or a roll forward) in place of `previous`: a finished run, status "activated", naming
    who asked (`requested_by`: a key's label or a person) and why (`note`)."""
    _check_asker(trigger, requested_by)
    run_id = secrets.token_hex(RUN_ID_LENGTH // 2)
    now = utc_now()
    message = f"activated {version_id} (was {previous or 'none'})" + (f": {note}" if note else "")
    with _writing(catalogue).begin() as connection:
        connection.execute(
            insert(PipelineRun).values(
                id=run_id,
                trigger=trigger,
                requested_by=requested_by,
                status="activated",
                requested_at=now,
                started_at=now,
                finished_at=now,
                exit_code=0,
                version_id=version_id,
                message=message,
            )
        )
    return get_run(catalogue, run_id)


def claim_next(catalogue: Catalogue) -> RunRecord | None:
    """Move the oldest queued run to "running" and return it; None when none is queued.
    Two schedulers never claim the same run (see the module docstring)."""
    now = utc_now()
    with _writing(catalogue).begin() as connection:
        oldest = (
            select(PipelineRun.id)
            .where(PipelineRun.status == "queued")
            .order_by(PipelineRun.requested_at, PipelineRun.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        run_id = connection.execute(oldest).scalar()
        if run_id is None:
            return None
        claimed = connection.execute(
            update(PipelineRun)
            .where(PipelineRun.id == run_id, PipelineRun.status == "queued")
            .values(status="running", started_at=now, heartbeat_at=now)
        )
        if claimed.rowcount != 1:
            return None
    return get_run(catalogue, run_id)


def heartbeat(catalogue: Catalogue, run_id: str) -> None:
    """Say that the scheduler executing `run_id` is alive (see `fail_abandoned`)."""
    with _writing(catalogue).begin() as connection:
        connection.execute(
            update(PipelineRun)
            .where(PipelineRun.id == run_id, PipelineRun.status == "running")
            .values(heartbeat_at=utc_now())
        )


def finish_run(
    catalogue: Catalogue,
    run_id: str,
    status: Status,
    *,
    exit_code: int | None,
    message: str,
    version_id: str | None = None,
    summary: dict[str, Any] | None = None,
) -> RunRecord:
    """Record how a run ended. A row already failed as abandoned still gets its real
    outcome, which is the truth once the scheduler reports it."""
    if status not in FINISHED:
        raise ValueError(f"a finished run's status is one of {FINISHED}, got {status!r}")
    with _writing(catalogue).begin() as connection:
        finished = connection.execute(
            update(PipelineRun)
            .where(PipelineRun.id == run_id)
            .values(
                status=status,
                finished_at=utc_now(),
                exit_code=exit_code,
                version_id=version_id,
                message=message,
                summary=json.dumps(summary) if summary is not None else None,
            )
        )
        if finished.rowcount != 1:
            raise RunNotFound(f"no pipeline run {run_id!r}")
    return get_run(catalogue, run_id)


def fail_abandoned(catalogue: Catalogue, stale_after: timedelta) -> list[str]:
    """Fail the running rows whose heartbeat is older than `stale_after` (their scheduler
    died with them); returns their ids."""
    now = utc_now()
    cutoff = now - stale_after
    with _writing(catalogue).begin() as connection:
        abandoned = connection.execute(
            select(PipelineRun.id).where(
                PipelineRun.status == "running", PipelineRun.heartbeat_at < cutoff
            )
        ).scalars()
        run_ids = list(abandoned)
        if run_ids:
            connection.execute(
                update(PipelineRun)
                .where(PipelineRun.id.in_(run_ids), PipelineRun.status == "running")
                .values(
                    status="failed",
                    finished_at=now,
                    message="abandoned: the scheduler running it stopped without finishing it",
                )
            )
    return run_ids


def get_run(catalogue: Catalogue, run_id: str) -> RunRecord:
    """The run `run_id`; raises `RunNotFound`."""
    if len(run_id) > RUN_ID_LENGTH:
        raise RunNotFound(f"no pipeline run {run_id[:RUN_ID_LENGTH]!r}...")
    with catalogue.engine.connect() as connection:
        row = connection.execute(
            select(PipelineRun.__table__).where(PipelineRun.id == run_id)
        ).first()
    if row is None:
        raise RunNotFound(f"no pipeline run {run_id!r}")
    return RunRecord.from_row(row)


def last_finished_run(catalogue: Catalogue) -> RunRecord | None:
    """The pipeline run that ended last (published, refused, failed or busy; not an
    activation), or None before the first one."""
    with catalogue.engine.connect() as connection:
        row = connection.execute(
            select(PipelineRun.__table__)
            .where(PipelineRun.status.in_(FINISHED), PipelineRun.finished_at.is_not(None))
            .order_by(PipelineRun.finished_at.desc(), PipelineRun.id.desc())
            .limit(1)
        ).first()
    return RunRecord.from_row(row) if row is not None else None


def list_runs(catalogue: Catalogue, limit: int = 20) -> list[RunRecord]:
    """The `limit` most recently requested runs, newest first."""
    if not 1 <= limit <= MAX_RUNS_LISTED:
        raise ValueError(f"limit must be 1-{MAX_RUNS_LISTED}, got {limit}")
    with catalogue.engine.connect() as connection:
        rows = connection.execute(
            select(PipelineRun.__table__)
            .order_by(PipelineRun.requested_at.desc(), PipelineRun.id.desc())
            .limit(limit)
        ).all()
    return [RunRecord.from_row(row) for row in rows]
