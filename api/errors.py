"""Errors: nba's error tree, validation failures and HTTP errors → JSON bodies with stable `detail` strings."""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.logs import get_logger, request_id_var
from nba.errors import ConflictError, DataError, ModelError, NbaError, NotFoundError, UnavailableError

RETRY_AFTER_S: Final = "5"
MAX_DETAIL: Final = 500
DATABASE_DOWN: Final = "feedback database unavailable"
DATABASE_UNAVAILABLE: Final = f"{DATABASE_DOWN}; retry after the Retry-After seconds"
# A last guard on what an answer shows: URLs and absolute file-system paths become `…` (messages are
# written in the caller's terms; this catches one that was not).
_INTERNAL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+|(?<![\w.:/])/(?:[^\s/'\"]+/)+[^\s'\"]*")

# The most specific class first.
STATUS_OF: Final[tuple[tuple[type[NbaError], int], ...]] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (UnavailableError, 503),
    (ModelError, 503),
    (DataError, 422),
    (NbaError, 422),
)


def public_detail(detail: str) -> str:
    """`detail` as an answer may show it: no URLs or file-system paths, at most MAX_DETAIL characters."""
    return _INTERNAL.sub("…", detail)[:MAX_DETAIL]


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"detail": public_detail(detail), "request_id": request_id_var.get() or ""}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(exc: NbaError) -> int:
    return next(status for cls, status in STATUS_OF if isinstance(exc, cls))


def describe_validation(errors: list[Any]) -> str:
    """The first validation error as one line: where, what rule, what value."""
    if not errors:
        return "invalid request"
    error = errors[0]
    loc = [str(part) for part in error.get("loc", ())]
    where = f"`{'.'.join(loc[1:])}` ({loc[0]})" if len(loc) >= 2 else "the request body"
    value = error.get("input")
    shown = "" if error.get("type") == "missing" or isinstance(value, dict) else f", got {str(value)[:80]!r}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {error.get('msg', 'invalid')}{shown}{more}"


def nba_error_response(exc: NbaError) -> JSONResponse:
    """The answer to an NbaError: its status (STATUS_OF) and message; an outage says only when to retry."""
    status = status_of(exc)
    if isinstance(exc, UnavailableError):
        # The caller learns what happened and when to retry; the driver's words and the database's
        # address are for the log. Only an outage passes by itself, so only it has a Retry-After.
        get_logger().warning("feedback database unavailable", extra={"reason": str(exc)})
        return error_response(status, DATABASE_UNAVAILABLE, {"Retry-After": RETRY_AFTER_S})
    return error_response(status, str(exc))


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """The answer to an HTTPException (401, 403, 404 of an unknown path...): its status, detail and headers."""
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    async def nba_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NbaError)
        return nba_error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, describe_validation(list(exc.errors())))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return http_error_response(exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        get_logger().error("unexpected error", exc_info=exc)
        return error_response(500, "unexpected error; it is logged with this request id")

    app.add_exception_handler(NbaError, nba_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
