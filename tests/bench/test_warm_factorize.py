"""The warm-night factorize benchmark at a tiny fraction, so that it cannot rot: a first
night searches, the second nights search and reuse in turn, and the projection follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # three WMF fits with their searches: tens of seconds


def test_the_second_night_searches_and_reuses_in_turn(tmp_path: Path) -> None:
    from bench import warm_factorize

    (size,) = warm_factorize.main(
        ["--fraction", "0.002", "--repeat", "1", "--full-searched-s", "1000", "--data"]
        + [str(tmp_path)]
    )
    assert size["lambda"] in (1.0, 10.0, 100.0, 1000.0)  # the first night's search chose it
    assert size["listens"] > 0.99 * 96_747  # nearly every listen trains WMF, as at scale
    assert len(size["seconds"]["searched"]) == len(size["seconds"]["reused"]) == 1
    ratio = size["median_s"]["reused"] / size["median_s"]["searched"]
    assert size["reused_over_searched"] == pytest.approx(ratio, abs=0.01)
    assert size["projected_full_reused_s"] == pytest.approx(1000 * ratio, abs=10)
    saved = json.loads((tmp_path / "warm-factorize-results.json").read_text())
    assert saved == [size]


def test_reused_only_runs_no_searched_night_and_projects_nothing(tmp_path: Path) -> None:
    from bench import warm_factorize

    (size,) = warm_factorize.main(
        ["--fraction", "0.002", "--repeat", "1", "--reused-only", "--data", str(tmp_path)]
    )
    assert list(size["seconds"]) == ["reused"] and len(size["seconds"]["reused"]) == 1
    assert size["reused_over_searched"] is None and size["projected_full_reused_s"] is None
    assert "| 0.002 |" in warm_factorize.table([size], 1000.0)
