"""Logs: one JSON object per line for log shippers, plain text when a person watches a terminal.

Why these fields: an SRE following a milestone greps by account, milestone or approval id; every
log call in the product passes them as `extra`. Bodies of emails and secrets are never logged.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FIELDS = ("agent", "account_id", "milestone_id", "approval_id", "kind", "title", "stage", "reason", "origin",
          "purpose", "attempt", "drafted_by", "error")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update({f: getattr(record, f) for f in FIELDS if hasattr(record, f)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def config(level: str, stream: TextIO | None = None) -> dict[str, Any]:
    """A logging dictConfig (Faust's worker takes one): JSON unless the stream is a terminal."""
    stream = stream or sys.stderr
    formatter = ({"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"} if stream.isatty()
                 else {"()": JsonFormatter})
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"default": formatter},
            "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                     "stream": stream}},
            "root": {"level": level.upper(), "handlers": ["default"]}}


def configure(level: str) -> None:
    import logging.config

    logging.config.dictConfig(config(level))
