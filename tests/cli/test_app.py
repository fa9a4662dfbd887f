"""`--encoder` on every command that takes it: the names in the help, and a clear one-line
error (exit code 2, no traceback) for a name the table does not have."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from training.encoders import available_encoders


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    """Each command with --encoder, and the other arguments it needs to get that far."""
    return {
        "train": ["train", "--run", str(tmp_path / "run")],
        "featurize": ["featurize", str(tmp_path / "dataset")],
        "pipeline": ["pipeline", "--registry", str(tmp_path / "reg"), "--dataset", str(tmp_path)],
        "demo": ["demo", "--workdir", str(tmp_path), "--no-serve"],
    }


@pytest.mark.parametrize("command", ["train", "featurize", "pipeline", "demo"])
def test_an_unknown_encoder_is_a_clear_error(command: str, tmp_path: Path) -> None:
    args = _commands(tmp_path)[command]
    result = CliRunner().invoke(app, [*args, "--encoder", "wavenet"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.replace("│", " ").split())  # the error box's lines, unwrapped
    assert "unknown encoder architecture 'wavenet'" in said
    assert f"available: {', '.join(available_encoders())}" in said
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # refused before anything was made


@pytest.mark.parametrize("command", ["train", "featurize", "pipeline", "demo"])
def test_the_help_lists_the_encoders(command: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--encoder" in result.output
    assert all(name in result.output for name in available_encoders())


def test_an_encoder_given_twice_is_refused(tmp_path: Path) -> None:
    name = available_encoders()[0]
    args = [*_commands(tmp_path)["train"], "--encoder", name, "--encoder", name]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and f"{name} given twice" in result.output
