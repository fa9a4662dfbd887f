"""Progress of a long command: a live display on a terminal, a line per step otherwise.

On a terminal (`Console.is_terminal`) each step is a row of a rich progress display
(spinner, what it has done so far, elapsed time); in a log file or a container's output,
where a redrawn bar is noise, each step prints one line when it starts and one when it
ends (with its count and seconds), and `update` prints a line at most every
`LINE_EVERY_S` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

LINE_EVERY_S = 30.0


class Step:
    """One step in progress: `update(done, detail)` says how far it is."""

    def __init__(self, steps: Steps, name: str, task: int | None) -> None:
        self.steps = steps
        self.name = name
        self.task = task
        self.started = time.monotonic()
        self.last_line = self.started
        self.detail = ""

    def update(self, detail: str) -> None:
        self.detail = detail
        progress = self.steps.progress
        if progress is not None and self.task is not None:
            progress.update(self.task, description=f"{self.name}: {detail}")
            return
        now = time.monotonic()
        if now - self.last_line >= LINE_EVERY_S:
            self.last_line = now
            self.steps.line(f"{self.name}: {detail} ({now - self.started:,.0f} s)")


class Steps:
    """The steps of one command, shown on `console` (see the module docstring)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        if console.is_terminal:
            self.progress = Progress(
                SpinnerColumn(finished_text="[green]done[/green]"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
            )

    def __enter__(self) -> Steps:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def line(self, text: str) -> None:
        """A line above the display on a terminal, else a plain line (never wrapped)."""
        self.console.print(text, soft_wrap=True, highlight=False, markup=False)

    def start(self, name: str) -> Step:
        """Show `name` as started."""
        task = None
        if self.progress is not None:
            task = self.progress.add_task(name, total=1)
        else:
            self.line(f"{name}: started")
        return Step(self, name, task)

    def finish(self, step: Step, failed: bool = False) -> None:
        """Show `step` as ended (its last `update` detail kept)."""
        seconds = time.monotonic() - step.started
        if self.progress is not None and step.task is not None:
            if failed:  # left unfinished: no "done" beside it
                self.progress.update(step.task, description=f"[red]{step.name}: failed[/red]")
                self.progress.stop_task(step.task)
            else:
                self.progress.update(step.task, completed=1)
            return
        verb = "failed after" if failed else "done in"
        detail = f" ({step.detail})" if step.detail else ""
        self.line(f"{step.name}: {verb} {seconds:,.1f} s{detail}")

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Show `name` while the block runs; its last `update` detail stays on the line."""
        step = self.start(name)
        try:
            yield step
        except BaseException:
            self.finish(step, failed=True)
            raise
        self.finish(step)
