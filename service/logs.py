"""The service's log lines, configured by the app itself, however it is started.

`uvicorn --factory service.app:create_app` (the compose deployment) configures uvicorn's own
loggers only, so without this every `coldstart.*` line below WARNING (the "now serving
model version ..." line among them) went nowhere. `configure_logging` gives the
`coldstart` loggers and uvicorn's (`uvicorn`, `uvicorn.access`) one handler on stderr, in
one format: `COLDSTART_LOG_FORMAT` "text" (`time level logger: message`) or "json" (one
object per line: time, level, logger, message, and the traceback as `exc_info`), at
`COLDSTART_LOG_LEVEL` for the `coldstart` loggers (uvicorn's keep the level uvicorn set).
Calling it again (another app in the process) replaces its handler, never adds a second.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOGGERS = ("coldstart", "uvicorn", "uvicorn.access")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time` (UTC, ISO 8601), `level`, `logger`, `message`,
    and `exc_info` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _ServiceHandler(logging.StreamHandler):
    """The handler `configure_logging` installs (found again by its class)."""


def configure_logging(level: LogLevel = "INFO", log_format: LogFormat = "text") -> None:
    """Route the `coldstart` and uvicorn loggers to stderr in `log_format`; the
    `coldstart` loggers at `level` (see the module docstring)."""
    handler = _ServiceHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old, _ServiceHandler) or name != "coldstart":
                logger.removeHandler(old)  # uvicorn's own handlers, or ours of an earlier app
        logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger("coldstart").setLevel(level)
