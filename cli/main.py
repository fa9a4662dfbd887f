"""Entry point of the `coldstart` console script: each import registers an area's commands."""

import cli.audio  # noqa: F401
import cli.demo  # noqa: F401
import cli.evaluate  # noqa: F401
import cli.factorize  # noqa: F401
import cli.model  # noqa: F401
import cli.pipeline  # noqa: F401
import cli.publish  # noqa: F401
import cli.scheduler  # noqa: F401
import cli.serve  # noqa: F401
import cli.teacher  # noqa: F401
import cli.train  # noqa: F401
import cli.validate  # noqa: F401
import cli.world  # noqa: F401
from cli.app import app

__all__ = ["app"]
