"""The console of a training run shows our progress, not Lightning's advertising or
torch's deprecation notices about Lightning's own code."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
from torch.utils._pytree import LeafSpec
from typer.testing import CliRunner

from cli.main import app
from training.encoder_fit import quiet_lightning


def test_a_quiet_trainer_logs_no_tip_and_no_placement(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    quiet_lightning()
    pl.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False)
    lightning = [r for r in caplog.records if r.name.startswith(("pytorch_lightning", "lightning"))]
    assert lightning == []


def test_only_the_chatter_warnings_are_dropped() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_lightning()
        LeafSpec()
        warnings.warn("a real problem", UserWarning, stacklevel=1)
    assert [str(warning.message) for warning in caught] == ["a real problem"]


def test_train_prints_lightnings_model_summary_only_when_verbose(
    trained_run: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(trained_run, tmp_path / "run")
    train = ["train", "--run", str(run), "--epochs", "1", "--crops-per-song", "1"]
    train += ["--no-linear", "--no-kmeans", "--no-hybrid"]
    quiet = CliRunner().invoke(app, train)
    assert quiet.exit_code == 0, quiet.output
    assert "validation mAP@500" in quiet.output
    assert "Total params" not in quiet.output
    verbose = CliRunner().invoke(app, [*train, "--verbose"])
    assert verbose.exit_code == 0, verbose.output
    assert "Total params" in verbose.output
