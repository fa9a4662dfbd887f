"""Progress of a long command: live on a terminal, a line per step in a log."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from cli.progress import LINE_EVERY_S, Steps


def run_steps(console: Console) -> None:
    with Steps(console) as steps:
        with steps.step("songs (3)") as step:
            step.update("3 added")
        with pytest.raises(RuntimeError), steps.step("listens") as step:
            step.update("1,000 listens read (block 1)")
            raise RuntimeError("a bad row")


def test_a_log_gets_a_line_as_each_step_starts_and_ends() -> None:
    out = io.StringIO()
    run_steps(Console(file=out, force_terminal=False, width=40))
    lines = out.getvalue().splitlines()
    assert lines[0] == "songs (3): started"
    assert re.fullmatch(r"songs \(3\): done in \d+\.\d s \(3 added\)", lines[1])
    assert lines[2] == "listens: started"
    assert re.fullmatch(
        r"listens: failed after \d+\.\d s \(1,000 listens read \(block 1\)\)", lines[3]
    )  # never cut at the console's width
    assert len(lines) == 4  # updates within LINE_EVERY_S print nothing
    assert LINE_EVERY_S >= 10


def test_a_terminal_gets_a_live_display() -> None:
    out = io.StringIO()
    run_steps(Console(file=out, force_terminal=True, width=100))
    shown = out.getvalue()
    assert "\x1b[" in shown  # redrawn in place
    assert "songs (3): 3 added" in shown and "listens: failed" in shown
    assert "started" not in shown  # no log lines on a terminal
