"""Pipeline run records on both backends: one queued run, exclusive claims, abandoned runs,
versions made current by hand."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from catalogue.runs import (
    RunNotFound,
    claim_next,
    fail_abandoned,
    finish_run,
    get_run,
    heartbeat,
    list_runs,
    record_activation,
    request_run,
)


def run_in_threads(target, n: int) -> list:
    """Start `n` threads on `target()` together; their results (or exceptions)."""
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except BaseException as error:  # surfaced by the caller's asserts
            results[i] = error

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_second_request_returns_the_queued_run(db):
    before = datetime.now(UTC)
    first, already = request_run(db, "cron")
    assert not already and first.status == "queued" and first.trigger == "cron"
    assert first.requested_by is None and before <= first.requested_at <= datetime.now(UTC)
    again, already = request_run(db, "api", requested_by="key:0123abcd")
    assert already and again == first

    claimed = claim_next(db)
    assert claimed.id == first.id and claimed.status == "running"
    assert claimed.started_at is not None and claim_next(db) is None
    # while one runs, a new request waits behind it as the next run
    second, already = request_run(db, "api", requested_by="key:0123abcd")
    assert not already and second.id != first.id and second.requested_by == "key:0123abcd"


def test_concurrent_requests_queue_one_run(open_db):
    schedulers = [open_db() for _ in range(4)]  # separate engines, as separate processes
    results = run_in_threads(lambda: request_run(schedulers.pop(), "api"), 4)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len({record.id for record, _ in results}) == 1
    assert sorted(already for _, already in results) == [False, True, True, True]


def test_a_run_is_claimed_by_exactly_one_scheduler(open_db):
    db = open_db()
    schedulers = [open_db() for _ in range(4)]
    for _round in range(3):
        queued, _ = request_run(db, "cron")
        pool = list(schedulers)
        results = run_in_threads(lambda pool=pool: claim_next(pool.pop()), 4)
        assert not [r for r in results if isinstance(r, BaseException)], results
        claimed = [record for record in results if record is not None]
        assert [record.id for record in claimed] == [queued.id]
        finish_run(db, queued.id, "published", exit_code=0, message="ok")


def test_finish_get_and_list(db):
    older, _ = request_run(db, "cron")
    claim_next(db)
    summary = {"run_id": older.id, "outcome": "refused", "gate": {"map": [0.1, 0.2]}}
    finished = finish_run(
        db, older.id, "refused", exit_code=3, message="worse than current", summary=summary
    )
    assert (finished.status, finished.exit_code, finished.message) == (
        "refused",
        3,
        "worse than current",
    )
    assert finished.finished_at >= finished.started_at and get_run(db, older.id) == finished
    assert get_run(db, older.id).summary == summary
    time.sleep(0.01)
    newer, _ = request_run(db, "cli")
    assert [run.id for run in list_runs(db, 10)] == [newer.id, older.id]
    assert [run.id for run in list_runs(db, 1)] == [newer.id]

    for missing in ("0" * 16, "x" * 10_000):
        with pytest.raises(RunNotFound):
            get_run(db, missing)
    with pytest.raises(RunNotFound):
        finish_run(db, "0" * 16, "failed", exit_code=1, message="gone")
    with pytest.raises(ValueError, match="trigger"):
        request_run(db, "nightly")
    with pytest.raises(ValueError, match="status"):
        finish_run(db, newer.id, "queued", exit_code=None, message="no")
    with pytest.raises(ValueError, match="limit"):
        list_runs(db, 0)


def test_runs_left_running_by_a_dead_scheduler_are_failed(db):
    run, _ = request_run(db, "cron")
    claim_next(db)
    assert fail_abandoned(db, timedelta(minutes=5)) == []  # its heartbeat is fresh
    time.sleep(0.05)
    heartbeat(db, run.id)
    renewed = get_run(db, run.id).heartbeat_at
    assert renewed > get_run(db, run.id).started_at
    assert fail_abandoned(db, timedelta(minutes=5)) == []

    time.sleep(0.05)
    assert fail_abandoned(db, timedelta(milliseconds=10)) == [run.id]
    failed = get_run(db, run.id)
    assert failed.status == "failed" and "abandoned" in failed.message
    assert failed.finished_at is not None
    assert fail_abandoned(db, timedelta(0)) == []  # finished rows are left alone


def test_an_activation_is_a_finished_run_naming_who_asked(db):
    queued, _ = request_run(db, "cron")
    time.sleep(0.01)
    record = record_activation(
        db, "api", "V1", "V2", requested_by="key:0123abcd", note="V2 recommends silence"
    )
    assert (record.status, record.trigger, record.requested_by) == (
        "activated",
        "api",
        "key:0123abcd",
    )
    assert record.version_id == "V1" and record.exit_code == 0
    assert record.message == "activated V1 (was V2): V2 recommends silence"
    assert record.finished_at == record.started_at == record.requested_at
    assert [run.id for run in list_runs(db, 10)] == [record.id, queued.id]
    assert claim_next(db).id == queued.id  # the queue is not disturbed by it
    first = record_activation(db, "cli", "V2", None)
    assert first.message == "activated V2 (was none)" and first.requested_by is None
    with pytest.raises(ValueError, match="trigger"):
        record_activation(db, "rollback", "V1", "V2")
    with pytest.raises(ValueError, match="requested_by"):
        record_activation(db, "api", "V1", "V2", requested_by="x" * 101)
