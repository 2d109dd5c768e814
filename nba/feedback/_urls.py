"""Store URLs: a feedback database URL → the driver the store uses, and its password masked in messages."""

from __future__ import annotations

import re
from typing import Final

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from nba.errors import DataError

_PASSWORD_IN_URL: Final = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact_url(text_: str) -> str:
    return _PASSWORD_IN_URL.sub(r"\1***@", text_)


def parse_store_url(url: str) -> URL:
    """Checks a feedback database URL and returns it with the driver the store uses.

    `sqlite:///path/to/file.db` (also `sqlite://` in memory, for tests), `postgresql://...` or
    `postgresql+psycopg://...` (psycopg 3). Raises DataError for anything else.
    """
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        raise DataError(
            "the feedback database URL must look like sqlite:///var/feedback.db or "
            f"postgresql://user@host:5432/nba, got {redact_url(url)!r}"
        ) from None
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+pysqlite")
    if driver in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise DataError(
        "the feedback database URL must start with sqlite:/// or postgresql:// (psycopg 3), "
        f"got {driver}:// in "
        f"{parsed.render_as_string(hide_password=True)!r}"
    )
