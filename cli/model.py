"""`coldstart model list` and `coldstart model use VERSION`: the registry's versions, and
making one of them current again (a rollback) without a retrain."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app

model_app = typer.Typer(help="The registry's model versions: list them, make one current.")
app.add_typer(model_app, name="model")

RegistryOption = Annotated[Path, typer.Option("--registry", help="Model registry folder (REG).")]


def _score(numbers: dict[str, float] | None) -> str:
    if not numbers:
        return "-"
    return f"{numbers['map']:.4f} / {numbers['auc']:.3f}"


@model_app.command("list")
def list_versions(
    registry: RegistryOption,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead.")] = False,
) -> None:
    """The versions, newest first: date, source, the cnn's and hybrid's mAP@500 / AUC at
    their gate (else their run's evaluation), and which is current (*) or withdrawn (rolled
    back from)."""
    from rich.console import Console
    from rich.table import Table

    from pipeline.registry import describe_versions

    versions = describe_versions(registry)
    if as_json:
        typer.echo(json.dumps([version.to_json() for version in versions], indent=1))
        return
    table = Table("", "version", "created", "source", "gate", "cnn mAP / AUC", "hybrid mAP / AUC")
    for version in versions:
        gate = version.gate or {}
        scores = gate.get("candidate") or version.evaluation
        verdict = "-" if not gate else ("passed" if gate.get("passed") else "refused")
        if gate.get("decided_by"):
            verdict += f" ({gate['decided_by']})"
        table.add_row(
            "*" if version.current else ("withdrawn" if version.withdrawn else ""),
            version.id,
            version.created_at[:19].replace("T", " "),
            version.source or "-",
            verdict,
            _score(scores.get("cnn")),
            _score(scores.get("hybrid")),
        )
    console = Console()
    if not console.is_terminal:  # a file or a pipe: rows whole, not cut at 80 columns
        console = Console(width=200)
    console.print(table)
    if not versions:
        console.print(f"no versions in {registry}")


@model_app.command("use")
def use_version(
    version: Annotated[str, typer.Argument(help="The version to make current.")],
    registry: RegistryOption,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Catalogue DB URL (or SQLite file) whose run history records it (default:"
            " COLDSTART_DATABASE_URL, if set).",
        ),
    ] = None,
    note: Annotated[str | None, typer.Option(help="Why, for the run history.")] = None,
) -> None:
    """Make VERSION current (a rollback, or a roll forward): the services swap to it at
    their next poll, the next nightly run compares its candidate with it, and the version
    rolled back from no longer counts toward the gate's floor. Recorded in the registry
    and, with a database, in the run history as asked by `cli:<login>`."""
    import getpass
    from contextlib import nullcontext

    from rich.console import Console

    from artifacts.manifest import ArtifactError
    from catalogue import open_catalogue
    from catalogue.db import DATABASE_URL_ENV, url_or_path
    from catalogue.runs import record_activation
    from pipeline.registry import activate_version

    console = Console(soft_wrap=True)
    database = database or os.environ.get(DATABASE_URL_ENV)
    requested_by = f"cli:{getpass.getuser()}"
    # The history opened first: a database this coldstart cannot write changes nothing.
    with open_catalogue(url_or_path(database)) if database else nullcontext() as catalogue:
        try:
            activation = activate_version(registry, version, requested_by, note)
        except ArtifactError as error:  # RegistryError (unknown version) included
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from error
        if not activation.changed:
            console.print(f"{version} is current already; nothing changed")
            return
        recorded = ""
        if catalogue is not None:
            run = record_activation(
                catalogue, "cli", version, activation.previous, requested_by, note
            )
            recorded = f"; run history: {run.id}"
    console.print(
        f"{version} is current (was {activation.previous or 'none'}){recorded};"
        " the services swap to it at their next poll"
    )
