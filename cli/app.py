"""The one Typer application behind the `coldstart` console script.

Each area registers its commands in its own module (`cli/<area>.py`) on this `app`;
heavy imports (torch, implicit, faiss) stay inside the command bodies so that
`coldstart --help` answers at once.
"""

from typing import Any

import typer

from training.encoders import (
    DEFAULT_ENCODER,
    UnknownEncoderError,
    available_encoders,
    check_encoder_name,
)

# For the help texts of every command that takes --encoder (the table imports no torch).
ENCODER_NAMES = ", ".join(available_encoders())


class _App(typer.Typer):
    """The Typer app, saying in one line (exit code 1) that the catalogue database is newer
    than this coldstart, whichever command opened it, instead of a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            from catalogue.errors import SchemaTooNew

            if not isinstance(error, SchemaTooNew):
                raise
            typer.echo(f"error: {error}", err=True)
            raise SystemExit(1) from error


app = _App(
    name="coldstart",
    help="Cold-start music recommendation: world -> features -> WMF -> CNN -> index -> API.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main() -> None:
    """Content-based cold-start music recommendation (van den Oord et al., NIPS 2013)."""


def given(**options: Any) -> dict[str, Any]:
    """The options a user gave: those not None. A command's numeric and text options
    default to None and pass only these on, so that the settings dataclass (`WMFParams`,
    `PipelineSettings`, ...) stays the one source of every default."""
    return {name: value for name, value in options.items() if value is not None}


def encoders_given(names: list[str] | None) -> list[str]:
    """The `--encoder` values as given (the default encoder when none), each once;
    `typer.BadParameter` (one line, exit code 2) naming the available ones otherwise."""
    try:
        checked = [check_encoder_name(name) for name in names or [DEFAULT_ENCODER]]
    except UnknownEncoderError as error:
        raise typer.BadParameter(str(error), param_hint="--encoder") from error
    repeated = sorted({name for name in checked if checked.count(name) > 1})
    if repeated:
        raise typer.BadParameter(
            f"{', '.join(repeated)} given twice: each encoder trains once", param_hint="--encoder"
        )
    return checked
