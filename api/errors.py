"""Errors: nba's error tree, validation failures and HTTP errors → JSON bodies with a stable `code` and `detail`."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.logs import get_logger, request_id_var
from nba.errors import (
    CallNotFoundError,
    CardholderNotFoundError,
    ConflictError,
    DataError,
    ModelError,
    NbaError,
    NotFoundError,
    SuggestionNotFoundError,
    UnavailableError,
)

RETRY_AFTER_S: Final = "5"
MAX_DETAIL: Final = 500
DATABASE_DOWN: Final = "feedback database unavailable"
DATABASE_UNAVAILABLE: Final = f"{DATABASE_DOWN}; retry after the Retry-After seconds"
# A last guard on what an answer shows: URLs and absolute file-system paths become `…` (messages are
# written in the caller's terms; this catches one that was not).
_INTERNAL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+|(?<![\w.:/])/(?:[^\s/'\"]+/)+[^\s'\"]*")


class ErrorCode(StrEnum):
    """Every `code` an error body carries: a closed set, for programs (the panel) to branch on; `detail`
    is for people. The docs' table of codes (docs/service.md) lists exactly these, with their status."""

    INVALID_REQUEST = "invalid_request"  # 422: a parameter or body field breaks its rule
    INVALID_JSON = "invalid_json"  # 422: the body is not JSON, not UTF-8, too deep, or has a key twice
    UNAUTHORIZED = "unauthorized"  # 401: no API key, or an unknown one
    FORBIDDEN = "forbidden"  # 403: the key's role may not do this
    UNKNOWN_CARDHOLDER = "unknown_cardholder"  # 404: not in the profile snapshot in service
    UNKNOWN_CALL = "unknown_call"  # 404: a call id the feedback store does not hold
    UNKNOWN_SUGGESTION = "unknown_suggestion"  # 404: a suggestion id the feedback store does not hold
    NOT_FOUND = "not_found"  # 404: no such path
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    REQUEST_TIMEOUT = "request_timeout"  # 408: the body did not arrive in time
    CONFLICT = "conflict"  # 409: a call id reused, an ended call, a second NPS, a refused reload
    BODY_TOO_LARGE = "body_too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415: a body that is not application/json
    BAD_REQUEST = "bad_request"  # any other 4xx the HTTP layer answers
    INTERNAL_ERROR = "internal_error"  # 500: unexpected; logged with the request id
    NOT_READY = "not_ready"  # 503: no model or profile snapshot in service
    DATABASE_UNAVAILABLE = "database_unavailable"  # 503: retry after the Retry-After seconds


# The most specific class first.
ANSWER_OF: Final[tuple[tuple[type[NbaError], int, ErrorCode], ...]] = (
    (CardholderNotFoundError, 404, ErrorCode.UNKNOWN_CARDHOLDER),
    (CallNotFoundError, 404, ErrorCode.UNKNOWN_CALL),
    (SuggestionNotFoundError, 404, ErrorCode.UNKNOWN_SUGGESTION),
    (NotFoundError, 404, ErrorCode.NOT_FOUND),
    (ConflictError, 409, ErrorCode.CONFLICT),
    (UnavailableError, 503, ErrorCode.DATABASE_UNAVAILABLE),
    (ModelError, 503, ErrorCode.NOT_READY),
    (DataError, 422, ErrorCode.INVALID_REQUEST),
    (NbaError, 422, ErrorCode.INVALID_REQUEST),
)
# HTTP errors raised by the framework or the key check, by status.
CODE_OF_STATUS: Final[dict[int, ErrorCode]] = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    413: ErrorCode.BODY_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def public_detail(detail: str) -> str:
    """`detail` as an answer may show it: no URLs or file-system paths, at most MAX_DETAIL characters."""
    return _INTERNAL.sub("…", detail)[:MAX_DETAIL]


def error_body(code: ErrorCode, detail: str, request_id: str) -> dict[str, str]:
    """The one error format: a stable `code`, a `detail` for people, the request id."""
    return {"code": code.value, "detail": public_detail(detail), "request_id": request_id}


def error_response(
    status: int, code: ErrorCode, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = error_body(code, detail, request_id_var.get() or "")
    return JSONResponse(body, status_code=status, headers=headers)


def answer_of(exc: NbaError) -> tuple[int, ErrorCode]:
    """The status and code of an NbaError (ANSWER_OF)."""
    return next((status, code) for cls, status, code in ANSWER_OF if isinstance(exc, cls))


def json_syntax_detail(message: str, document: str | bytes, position: int) -> str:
    """A JSON syntax error in the caller's terms: what the parser said, at which line and column."""
    text = document.decode("utf-8", "replace") if isinstance(document, bytes) else document
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return f"request body is not valid JSON: {message} at line {line} column {column}"


def describe_validation(errors: list[Any]) -> str:
    """The first validation error as one line: where, what rule, what value. (A body that is not JSON
    never gets here: RequestContext answers it, by line and column.)"""
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
    """The answer to an NbaError: its status and code (ANSWER_OF) and message; an outage says only when
    to retry."""
    status, code = answer_of(exc)
    if isinstance(exc, UnavailableError):
        # The caller learns what happened and when to retry; the driver's words and the database's
        # address are for the log. Only an outage passes by itself, so only it has a Retry-After.
        get_logger().warning("feedback database unavailable", extra={"reason": str(exc)})
        return error_response(status, code, DATABASE_UNAVAILABLE, {"Retry-After": RETRY_AFTER_S})
    return error_response(status, code, str(exc))


def code_of_status(status: int) -> ErrorCode:
    """The code of an error answered by its status alone (an HTTPException, the HTTP layer's refusals)."""
    return CODE_OF_STATUS.get(status, ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.BAD_REQUEST)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """The answer to an HTTPException (401, 403, 404 of an unknown path...): its status, code, detail and
    headers."""
    status = exc.status_code
    return error_response(status, code_of_status(status), str(exc.detail), dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    async def nba_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NbaError)
        return nba_error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, ErrorCode.INVALID_REQUEST, describe_validation(list(exc.errors())))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return http_error_response(exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        get_logger().error("unexpected error", exc_info=exc)
        return error_response(
            500, ErrorCode.INTERNAL_ERROR, "unexpected error; it is logged with this request id"
        )

    app.add_exception_handler(NbaError, nba_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
