"""HTTP: bytes on a connection → requests for the app, within limits on how big and how slow a request head may be.

uvicorn's httptools protocol sets no limit on the request line and headers (a 1 MB header was read in
whole) nor on how long they may take to arrive, and answers what it cannot parse in plain text. This
subclass refuses a head over MAX_HEAD_BYTES (431), closes a connection whose head has not arrived
within the settings' read deadline (408), and answers in the service's JSON error format. The body's limits (size,
read deadline) are RequestContext's, in api/main.py. `uvicorn_config` is the one configuration the
service and the tests that need real HTTP both use.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import code_of_status, error_body
from api.settings import Settings

# The request line and headers together: an agent desktop sends well under 2 KiB.
MAX_HEAD_BYTES: Final = 32 * 1024
# An idle keep-alive connection is closed after this (uvicorn's default).
KEEP_ALIVE_S: Final = 5


class _HeadTooLarge(Exception):
    pass


def error_bytes(status: int, reason: bytes, detail: str) -> bytes:
    """A whole HTTP/1.1 error response in the service's JSON format, closing the connection."""
    body = json.dumps(error_body(code_of_status(status), detail, "")).encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline on each request head, JSON errors."""

    head_deadline_s: float = 10.0  # set per service by `uvicorn_config`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the head's deadline: armed when a connection opens or a request begins, disarmed when its
    # headers are complete.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_deadline_s, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; the app's own deadlines apply
        detail = f"the request head did not arrive within {self.head_deadline_s:g} s"
        self.transport.write(error_bytes(408, b"Request Timeout", detail))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm_head_deadline()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge  # httptools stops parsing; data_received answers

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:  # a callback's error too: _HeadTooLarge is its context
            self._refuse(exc)

    def _refuse(self, exc: Exception) -> None:
        self._disarm_head_deadline()
        if self.transport.is_closing():
            return
        if isinstance(exc.__context__, _HeadTooLarge) or isinstance(exc, _HeadTooLarge):
            response = error_bytes(
                431,
                b"Request Header Fields Too Large",
                f"the request line and headers are larger than {MAX_HEAD_BYTES} bytes",
            )
        else:
            self.logger.warning("malformed HTTP request refused")
            response = error_bytes(400, b"Bad Request", "malformed HTTP request")
        if self.cycle is not None and not self.cycle.response_complete:
            # The app is answering this request: it cannot be answered twice; just end the connection.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self.transport.close()
            return
        self.transport.write(response)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self._refuse(ValueError(msg))


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The HTTP server's configuration for `app`: what `nba serve` runs, and what tests of HTTP edges use."""
    values: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "log_level": settings.log_level,
        "loop": "uvloop",
        "http": type("GuardedHttpTools", (GuardedHttpTools,), {"head_deadline_s": settings.read_deadline_s}),
        "timeout_keep_alive": KEEP_ALIVE_S,
        **overrides,
    }
    return uvicorn.Config(app, **values)
