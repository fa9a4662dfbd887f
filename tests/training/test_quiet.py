"""The console of a training run shows our progress, not Lightning's advertising or
torch's deprecation notices about Lightning's own code."""

from __future__ import annotations

import logging
import warnings

import pytest
import pytorch_lightning as pl
from torch.utils._pytree import LeafSpec

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
