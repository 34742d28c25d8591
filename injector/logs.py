"""Logging set-up: text for people, ``--log-format json`` for pipelines, values never logged.

The libraries whose debug logs print response bodies (botocore prints ``SecretString``) are pinned
at WARNING whatever ``--log-level`` says, and every record passes the redaction filter.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO

from injector.redact import RedactingFilter

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "configure_logging"]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
_PINNED = ("botocore", "boto3", "s3transfer", "urllib3", "hvac", "requests", "watchfiles", "moto", "werkzeug")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def _utc(seconds: float | None) -> time.struct_time:
    return time.gmtime(seconds)


class _TextFormatter(logging.Formatter):
    converter = staticmethod(_utc)

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")


def configure_logging(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Sends injector's logs to ``stream`` (stderr) in ``fmt`` at ``level``; idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_injector", False):
            root.removeHandler(old)
    handler._injector = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in _PINNED:
        logging.getLogger(name).setLevel(logging.WARNING)
