"""The import benchmark at a small size, so that it cannot rot: every contender runs, the
ratios are against the bare copy, and its definition is printed beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Two `coldstart import` processes (each starts the CLI) and a psql: tens of seconds.
pytestmark = pytest.mark.slow


def test_the_import_and_the_bare_copy_run_side_by_side(
    tmp_path: Path, postgres_admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy.engine import make_url

    from bench import import_listens

    libpq = make_url(postgres_admin_url).set(drivername="postgresql")
    url = libpq.render_as_string(hide_password=False)
    results = import_listens.main(
        ["--rows", "100000", "--repeat", "1", "--postgres", url, "--data", str(tmp_path)]
        + ["--sqlite"]
    )
    (size,) = results
    assert size["rows"] == 100_000
    assert set(size["median_seconds"]) == {"ours", "bare", "ours sqlite"}
    assert all(seconds > 0 for seconds in size["median_seconds"].values())
    # The report rounds seconds to 0.01 and ratios from the unrounded seconds: at a 0.3-s bare
    # copy the rounding alone moves the quotient of the rounded figures by up to 2%.
    assert size["ratio_to_bare"]["ours"] == pytest.approx(
        size["median_seconds"]["ours"] / size["median_seconds"]["bare"], rel=0.05
    )
    assert json.loads((tmp_path / "import-results.json").read_text()) == results
    printed = capsys.readouterr().out
    assert import_listens.BARE_TABLE in printed and "| 100,000 | ours |" in printed
