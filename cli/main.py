"""Entry point of the `coldstart` console script: imports every command module."""

from cli.app import app

# Each import registers that area's commands on `app`.
# (areas are added here as they land)

__all__ = ["app"]
