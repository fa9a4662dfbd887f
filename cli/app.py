"""The one Typer application behind the `coldstart` console script.

Each area registers its commands in its own module (`cli/<area>.py`) on this `app`;
heavy imports (torch, implicit, faiss) stay inside the command bodies so that
`coldstart --help` answers at once.
"""

import typer

app = typer.Typer(
    name="coldstart",
    help="Cold-start music recommendation: world -> features -> WMF -> CNN -> index -> API.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main() -> None:
    """Content-based cold-start music recommendation (van den Oord et al., NIPS 2013)."""
