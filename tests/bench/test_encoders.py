"""bench.encoders: its table and its embedding timer (the training it drives is the one the
tests of every encoder run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.encoders import KINDS, embed_ms, measure, table
from tests.tiny import TINY_CNN
from training.encoders import build_encoder


def test_the_table_sets_each_encoder_beside_the_first() -> None:
    row = {
        "scores": {"all": {"map": 0.1, "auc": 0.8}, "cold_artist": {"map": 0.05, "auc": 0.7}},
        "weights": 1000,
        "trainable": 1000,
        "train_s": 60.0,
        "embed_ms": 10.0,
    }
    slower = {**row, "weights": 5000, "trainable": 200, "train_s": 120.0, "embed_ms": 50.0}
    lines = table({"a": row, "b": slower, "c": "skipped: no weights"})
    assert len(lines) == 4
    assert "0.1000/0.8000" in lines[1] and " - " in lines[1] and "(1.0x)" in lines[1]
    assert "5,000 (200)" in lines[2] and "(2.0x)" in lines[2] and "(5.0x)" in lines[2]
    assert lines[3].split() == ["c", "skipped:", "no", "weights"]


def test_embedding_time_is_measured() -> None:
    assert embed_ms(build_encoder("dieleman", n_factors=4).eval(), seconds=3.0, repeats=2) > 0


@pytest.mark.slow
def test_an_encoder_is_trained_scored_and_timed(trained_run: Path, tmp_path: Path) -> None:
    row = measure(trained_run, tmp_path, "dieleman", TINY_CNN)
    assert isinstance(row, dict)
    assert set(row["scores"]) == set(KINDS)  # the run's split names the test songs' kinds
    for score in row["scores"].values():
        assert 0.0 <= score["map"] <= 1.0 and 0.0 <= score["auc"] <= 1.0
    assert row["weights"] == row["trainable"] > 0 and row["train_s"] > 0 and row["embed_ms"] > 0
    models = tmp_path / "dieleman" / "models"
    assert (models / "cnn" / "encoder.json").is_file()
    assert sorted(p.name for p in models.iterdir()) == ["cnn"]  # no classical model's time in it
