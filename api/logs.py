"""Logs: the service's events → JSON lines on stderr, each with the request id it belongs to.

Nothing that identifies a cardholder or a key is logged: requests are logged by route template
(`/v1/cardholders/{cardholder_id}/suggestions`), never by path or query. The password part of any URL
in a line (a database URL in a driver's error) is masked, whoever wrote it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

LOGGER_NAME: Final = "nba.api"
request_id_var: ContextVar[str | None] = ContextVar("nba_request_id", default=None)
# `scheme://user:password@host` → `scheme://user:***@host` (the rule nba.feedback._urls applies to its own messages).
_PASSWORD_IN_URL: Final = re.compile(r"(://[^:/@\s\"]*:)[^@\s\"]*@")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, request id and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "color_message" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(entry, default=str))


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text) if "://" in text else text


def configure_logging(level: str) -> logging.Logger:
    """The service's logger, writing JSON lines to stderr (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level.upper())
    if not any(getattr(h, "_nba_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._nba_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
