"""Fixtures shared by every test package: the real recordings and a tiny seeded world."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in process (`CliRunner`) may give the root logger a handler on the
    runner's stream (`coldstart pipeline` without a terminal), closed once the command
    returns; the next log line anywhere (py4j's, when a Spark gateway is collected) would
    then print a logging error into another test's output. Such handlers go after each test
    (pytest's own capture handlers stay)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: every HTTPS request goes to a proxy where nothing listens."""
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def musicnn_cache() -> Path:
    """The teacher's weights' cache root for the tests (`tests.teacher`), or a skip."""
    from tests.teacher import teacher_cache

    return teacher_cache()


@pytest.fixture(scope="session")
def audio_assets() -> Path:
    """`tests/assets/audio/`: short excerpts of real, freely licensed recordings (MANIFEST.md)."""
    return REPO_ROOT / "tests" / "assets" / "audio"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic dataset (seeded), generated once per test session."""
    from world.generate import generate_world

    out = tmp_path_factory.mktemp("tiny_world")
    generate_world(out, n_songs=120, n_users=300, clip_seconds=6.0, seed=7, workers=2)
    return out


@pytest.fixture(scope="session")
def trained_run(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on the tiny world, built once per session: featurize -> factorize ->
    a real (tiny, briefly trained) CNN -> evaluate. Returns the run folder, ready for
    `coldstart publish` (factorization/, models/cnn/, models/artist/, models/hybrid/,
    report.json)."""
    from audio.cache import featurize_dataset
    from evaluation.report import evaluate_run
    from factorization.run import factorize_run
    from factorization.wmf import WMFParams
    from tests.tiny import TINY_CNN
    from training.run import train_run

    run = tmp_path_factory.mktemp("trained_run")
    featurize_dataset(tiny_world, workers=2, progress=False)
    factorize_run(tiny_world, run, WMFParams(factors=16), seed=0, progress=False)
    cnn = dataclasses.replace(TINY_CNN, epochs=2, patience=2)
    train_run(
        run, dataset_root=tiny_world, seed=0, cnn=cnn, linear=None, kmeans=None, progress=False
    )
    evaluate_run(run, seed=0, progress=False, dataset_root=tiny_world)
    return run


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One Spark session on `local[2]` for every Spark test: the JVM and the Python workers
    (which import torch) start once, not once per module."""
    from cluster.spark import spark_session

    session = spark_session("local[2]", "coldstart-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The test PostgreSQL server's URL; the tests that need it skip, saying why, when none
    answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from tests.postgres import POSTGRES_URL

    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {str(error.orig).strip()[:200]}")
    finally:
        engine.dispose()
    return POSTGRES_URL
