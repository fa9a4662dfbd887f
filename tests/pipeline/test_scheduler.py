"""The scheduler: cron due times, settings refused early, runs executed as real child
processes and finished from their exit code and summary, a stop that ends a running child.

The child here is a small program that keeps `coldstart pipeline`'s contract (arguments,
`--summary` JSON, exit codes) with a chosen outcome, so every outcome can be reached in
seconds; `test_a_queued_run_executes_the_real_pipeline` runs the real command.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from artifacts.run_layout import LOG_FILE, RUNS_DIR, SUMMARY_FILE, WORK_DIR
from catalogue import open_catalogue
from catalogue.runs import get_run, list_runs, request_run
from cli.main import app
from pipeline.scheduler import Scheduler, SchedulerSettings, next_due

CONTRACT_PIPELINE = textwrap.dedent(
    """
    import argparse, json, os, signal, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--database")
    parser.add_argument("--dataset")
    parser.add_argument("--audio-store")
    parser.add_argument("--summary", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--exit", type=int, default=0)
    parser.add_argument("--no-summary", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--ignore-term", action="store_true")
    args = parser.parse_args()
    with open(args.summary + ".pid", "w") as f:
        f.write(str(os.getpid()))
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(args.sleep)
    outcome = {0: "published", 3: "refused", 75: "busy"}.get(args.exit, "failed")
    if not args.no_summary:
        with open(args.summary, "w") as f:
            json.dump({"run_id": args.run_id, "outcome": outcome, "exit_code": args.exit,
                       "message": f"{outcome} by contract", "source": args.dataset or args.database,
                       "audio_store": args.audio_store,
                       "version_id": "v-new" if args.exit == 0 else None, "steps": []}, f)
    print("pipeline done", flush=True)
    sys.exit(args.exit)
    """
)


@pytest.fixture()
def contract_pipeline(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "contract_pipeline.py"
    script.write_text(CONTRACT_PIPELINE)
    return (sys.executable, str(script))


@pytest.fixture()
def catalogue(tmp_path: Path):
    with open_catalogue(tmp_path / "catalogue.db") as opened:
        yield opened


def make_scheduler(tmp_path, catalogue, command, *args: str, **settings) -> Scheduler:
    config = SchedulerSettings(
        registry=tmp_path / "registry",
        database_url=str(catalogue.engine.url),
        audio_store=tmp_path / "audio",
        pipeline_args=" ".join(args),
        scheduler_poll_seconds=0.2,
        **settings,
    )
    return Scheduler(config, catalogue, command=command, terminate_grace_s=0.5)


def test_cron_due_times_cross_days_and_time_zones():
    nightly = "0 3 * * *"
    # Paris is UTC+1 in January: 03:00 local is 02:00 UTC, on the next day from 23:30 UTC
    assert next_due(nightly, "Europe/Paris", datetime(2024, 1, 1, 23, 30, tzinfo=UTC)) == (
        datetime(2024, 1, 2, 2, 0, tzinfo=UTC)
    )
    # strictly after: at the due time itself, the next one is a day later
    assert next_due(nightly, "Europe/Paris", datetime(2024, 1, 2, 2, 0, tzinfo=UTC)) == (
        datetime(2024, 1, 3, 2, 0, tzinfo=UTC)
    )
    # summer time (UTC+2): the same line is 01:00 UTC
    assert next_due(nightly, "Europe/Paris", datetime(2024, 7, 1, 0, 0, tzinfo=UTC)) == (
        datetime(2024, 7, 1, 1, 0, tzinfo=UTC)
    )
    # New York (UTC-4 in June): 03:00 local is already the next UTC day's 07:00
    assert next_due(nightly, "America/New_York", datetime(2024, 6, 1, 8, 0, tzinfo=UTC)) == (
        datetime(2024, 6, 2, 7, 0, tzinfo=UTC)
    )
    assert next_due("*/15 * * * *", "UTC", datetime(2024, 12, 31, 23, 50, tzinfo=UTC)) == (
        datetime(2025, 1, 1, 0, 0, tzinfo=UTC)
    )


def test_settings_from_the_environment_and_invalid_ones_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("COLDSTART_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("COLDSTART_PIPELINE_ARGS", "--epochs 3 --note 'two words'")
    settings = SchedulerSettings()
    assert settings.retrain_cron == "0 3 * * *" and settings.retrain_timezone == "UTC"
    assert settings.pipeline_args == ("--epochs", "3", "--note", "two words")
    assert settings.registry == tmp_path / "reg" and settings.scheduler_poll_seconds == 5

    for cron in ("61 3 * * *", "every night", "0 3 * *", "0 3 * * * 2030"):
        with pytest.raises(ValidationError, match="cron line"):
            SchedulerSettings(retrain_cron=cron)
    with pytest.raises(ValidationError, match="time zone"):
        SchedulerSettings(retrain_timezone="Mars/Olympus_Mons")

    monkeypatch.setenv("COLDSTART_RETRAIN_CRON", "0 25 * * *")
    result = CliRunner().invoke(app, ["scheduler"])
    assert result.exit_code == 2 and "not a 5-field cron line" in result.output


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        ((), "published", "published by contract"),
        (("--exit", "3"), "refused", "refused by contract"),
        (("--exit", "75"), "busy", "busy by contract"),
        (("--exit", "1"), "failed", "failed by contract"),
        (("--exit", "0", "--no-summary"), "failed", "pipeline exited with code 0, no summary"),
        (("--exit", "2", "--no-summary"), "failed", "pipeline exited with code 2, no summary"),
    ],
)
def test_a_claimed_run_gets_the_outcome_of_its_child(
    tmp_path, catalogue, contract_pipeline, args, status, message
):
    scheduler = make_scheduler(tmp_path, catalogue, contract_pipeline, *args)
    queued, _ = request_run(catalogue, "api", requested_by="key:abcd1234")
    finished = scheduler.poll()
    assert finished.id == queued.id and get_run(catalogue, queued.id) == finished
    assert (finished.status, finished.message) == (status, message)
    assert finished.exit_code == int(args[1] if args else 0)
    assert finished.version_id == ("v-new" if status == "published" else None)
    run_dir = tmp_path / "registry" / WORK_DIR / RUNS_DIR / queued.id
    if "--no-summary" in args:
        assert finished.summary is None
    else:
        assert finished.summary["run_id"] == queued.id
        assert finished.summary["source"] == str(catalogue.engine.url)  # --database passed
        assert finished.summary["audio_store"] == str(tmp_path / "audio")
        assert json.loads((run_dir / SUMMARY_FILE).read_text()) == finished.summary
    assert "pipeline done" in (run_dir / LOG_FILE).read_text()
    assert scheduler.poll() is None  # nothing left queued


def test_a_killed_pipeline_fails_its_run_and_the_scheduler_goes_on(
    tmp_path, catalogue, contract_pipeline
):
    dataset = tmp_path / "dataset"
    scheduler = make_scheduler(
        tmp_path, catalogue, contract_pipeline, "--sleep", "30", pipeline_dataset=dataset
    )
    queued, _ = request_run(catalogue, "cron")
    pid_file = tmp_path / "registry" / WORK_DIR / RUNS_DIR / queued.id / f"{SUMMARY_FILE}.pid"

    def kill_when_started() -> None:
        deadline = time.monotonic() + 20
        while not pid_file.is_file() or not pid_file.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        time.sleep(0.6)  # a few polls: the scheduler renews the heartbeat meanwhile
        os.kill(int(pid_file.read_text()), 9)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    finished = scheduler.poll()
    killer.join()
    assert finished.status == "failed" and finished.exit_code == -9
    assert finished.message == "pipeline exited with code -9, no summary"
    assert finished.heartbeat_at > finished.started_at  # it was renewed while the child ran

    scheduler.settings = SchedulerSettings(
        **{**scheduler.settings.model_dump(), "pipeline_args": ()}
    )
    request_run(catalogue, "cli")
    after = scheduler.poll()
    assert after.status == "published" and after.summary["source"] == str(dataset)
    assert after.summary["audio_store"] is None  # a dataset brings its own audio


@pytest.mark.parametrize("ignore_term", [False, True])
def test_a_stop_terminates_the_running_pipeline_and_fails_its_run(
    tmp_path, catalogue, contract_pipeline, ignore_term
):
    extra = ("--ignore-term",) if ignore_term else ()
    scheduler = make_scheduler(tmp_path, catalogue, contract_pipeline, "--sleep", "60", *extra)
    queued, _ = request_run(catalogue, "api")
    loop = threading.Thread(target=scheduler.run)
    started = time.monotonic()
    loop.start()
    pid_file = tmp_path / "registry" / WORK_DIR / RUNS_DIR / queued.id / f"{SUMMARY_FILE}.pid"
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() - started < 20, "the pipeline did not start"
        time.sleep(0.05)
    scheduler.stop()
    loop.join(timeout=20)
    assert not loop.is_alive() and time.monotonic() - started < 20
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # the child is gone (SIGKILL when it ignored TERM)
    run = get_run(catalogue, queued.id)
    assert run.status == "failed" and "scheduler stopped" in run.message
    assert run.exit_code == (-9 if ignore_term else -15)


def test_the_cron_time_queues_one_run(tmp_path, catalogue, contract_pipeline):
    scheduler = make_scheduler(tmp_path, catalogue, contract_pipeline)
    assert scheduler.next_cron > datetime.now(UTC)
    scheduler.next_cron = datetime(2024, 1, 1, 3, 0, tzinfo=UTC)  # long due
    executed = scheduler.poll()
    assert executed.trigger == "cron" and executed.status == "published"
    assert scheduler.next_cron > datetime.now(UTC)  # one run, not one per missed night
    assert scheduler.poll() is None and len(list_runs(catalogue)) == 1


@pytest.mark.slow
def test_a_queued_run_executes_the_real_pipeline(tmp_path, catalogue, tiny_world):
    """Needs `coldstart pipeline` (cli/pipeline.py): a run on the tiny world publishes."""
    settings = SchedulerSettings(
        registry=tmp_path / "registry",
        database_url=str(catalogue.engine.url),
        pipeline_dataset=tiny_world,
        pipeline_args="--factors 8 --epochs 1 --max-minutes 0.5 --workers 1",
        scheduler_poll_seconds=1.0,
    )
    scheduler = Scheduler(settings, catalogue)
    request_run(catalogue, "cli")
    finished = scheduler.poll()
    log = (tmp_path / "registry" / WORK_DIR / RUNS_DIR / finished.id / LOG_FILE).read_text()
    assert finished.status == "published", f"{finished.message}\n{log[-3000:]}"
    assert finished.exit_code == 0 and finished.summary["run_id"] == finished.id
    current = (tmp_path / "registry" / "current").read_text().strip()
    assert finished.version_id == current == finished.summary["version_id"]
    assert [step["status"] for step in finished.summary["steps"]]
