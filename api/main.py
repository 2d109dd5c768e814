"""The service: Settings → a FastAPI app (routes, errors, keys, metrics, logs, reload watching), served by uvicorn."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.asgi import ASGIApp, Message, Receive, Scope, Send
from api.decision_log import ContactLedger, DatabaseHealth, DecisionLog, journal_folder, metrics_folder
from api.deps import Services, freeze_heap
from api.errors import ErrorCode, code_of_status, error_body, install_error_handlers, json_syntax_detail
from api.keys import KeyRing
from api.logs import configure_logging, get_logger, request_id_var
from api.metrics import Metrics, share_counts_across_workers
from api.replicas import ContactFeed, Drain
from api.routes import admin, feedback, suggestions
from api.serving import ServingState
from api.settings import Settings
from nba.errors import DataError, NbaError, UnavailableError
from nba.feedback import DecisionBuffer, DecisionJournal, FeedbackStore

MAX_BODY_BYTES: Final = 16 * 1024
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
CLIENT_GONE: Final = 499  # counted under this status (nginx's); nothing is sent
SWITCH_INTERVAL_S: Final = 0.0005
# uvicorn's supervisor pings each worker over a pipe every 0.5 s and kills one that does not answer
# within this: its default, 5 s, killed workers still importing on a busy 2-core machine (imports take
# ~10 s there), over and over. A worker that dies is seen at its next ping, at once, unless it died
# with a ping in flight: the supervisor then waits this long for the answer (it holds both ends of the
# pipe, so it never sees the end of it).
WORKER_HEALTHCHECK_S: Final = 20
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
STATIC = resources.files("api") / "static"


class _RequestIds:
    """Request ids: this process's random prefix and a counter — unique, and no system call per request.

    A worker forked from `nba serve --workers`' supervisor draws a prefix of its own as it starts
    (`os.register_at_fork`): forked workers would otherwise count from one shared prefix.
    """

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.count = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.count):08x}"


_REQUEST_IDS: Final = _RequestIds()
os.register_at_fork(after_in_child=_REQUEST_IDS.restart)


def utc_now() -> datetime:
    return datetime.now(UTC)


class _TooLarge(Exception):
    pass


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def json_problem(body: bytes) -> str | None:
    """What is wrong with a JSON body, in the caller's terms: a syntax error (where, by line and column),
    a key twice in one object (the routes' parser keeps the last silently), bytes that are not UTF-8,
    nesting past the parser's depth. None for a well-formed body."""
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        key = exc.key if len(exc.key) <= 64 else exc.key[:61] + "..."
        return f"`{key}` (body): appears more than once in a JSON object; send each key once"
    except UnicodeDecodeError:
        return "the request body is not UTF-8 text"
    except RecursionError:
        return "the request body's JSON is nested too deeply"
    except json.JSONDecodeError as exc:
        return json_syntax_detail(exc.msg, exc.doc, exc.pos)
    return None


async def _send_json(
    send: Send, status: int, code: ErrorCode, detail: str, request_id: str, close: bool = False
) -> None:
    body = json.dumps(error_body(code, detail, request_id)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if close:  # the rest of the request was not read: the connection cannot carry another one
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body (None when the client went away), at most MAX_BODY_BYTES, else _TooLarge."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read, then whatever the connection says next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class RequestContext:
    """Pure ASGI middleware: a request id on every response and log line, body limits, JSON-only bodies,
    latency and counts per route template (never the path: it holds cardholder ids).

    A body is read whole here, before the app sees it: at most MAX_BODY_BYTES however it is sent
    (Content-Length or chunked: 413), within the settings' read deadline (408: a Content-Length longer than what is
    sent would otherwise hold the request open for ever), and a JSON object with a key twice is a 422
    naming the key (the parser behind the routes would keep the last one silently).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, read_deadline_s: float) -> None:
        self.app = app
        self.metrics = metrics
        self.read_deadline_s = read_deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else _REQUEST_IDS.next()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        method = scope["method"]
        try:
            if method in BODY_METHODS:
                problem = self._body_problem(scope["path"], headers)
                if problem is None:
                    problem, receive = await self._read_whole_body(receive)
                if problem is not None:
                    status, detail = problem
                    if status != CLIENT_GONE:
                        # A body the parser refused is invalid JSON; every other refusal is its status's.
                        code = ErrorCode.INVALID_JSON if status == 422 else code_of_status(status)
                        await _send_json(send, status, code, detail, request_id, close=status in (408, 413))
                    return

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
                await send(message)

            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.count_request(method, template, status, elapsed)
            logger = get_logger()
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "request",
                    extra={
                        "method": method,
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1e3, 3),
                    },
                )
            request_id_var.reset(token)

    async def _read_whole_body(self, receive: Receive) -> tuple[tuple[int, str] | None, Receive]:
        try:
            async with asyncio.timeout(self.read_deadline_s):
                body = await read_body(receive)
        except TimeoutError:
            return (408, f"the request body did not arrive within {self.read_deadline_s:g} s"), receive
        except _TooLarge:
            return (413, f"the request body is larger than {MAX_BODY_BYTES} bytes"), receive
        if body is None:
            return (CLIENT_GONE, "the client went away"), receive
        problem = json_problem(body) if body.strip() else None
        if problem is not None:
            return (422, problem), receive
        return None, replaying(body, receive)

    @staticmethod
    def _body_problem(path: str, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return 413, f"the request body is larger than {MAX_BODY_BYTES} bytes"
        has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if path.startswith("/v1/") and has_body and content_type != b"application/json":
            return 415, "send the body as application/json"
        return None


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    store: FeedbackStore | None = None,
    start_background: bool = True,
    fast_path: bool = True,
    collect_at_start: bool = True,
) -> FastAPI:
    """The service, configured by `settings`; nothing heavy happens until start-up.

    `clock` and `store` are injectable for tests; `start_background=False` leaves the decision-log writer
    and the CURRENT watcher off (tests drive them by hand, no sleeping); `fast_path=False` leaves every
    suggestions request to the route (tests compare the two); `collect_at_start=False` freezes the heap
    at start-up without a full collection first (for a process that builds many apps, as the tests do:
    each full collection walks everything the process holds, ~0.3 s in a test worker under load).

    Raises DataError when production mode has no API keys, or the keys are malformed.
    """
    configure_logging(settings.log_level)
    keys = load_keys(settings)
    if len(keys) == 0:
        get_logger().warning("no API keys configured: every caller is let in (development mode)")
    metrics = Metrics()
    state = ServingState(settings, clock)
    store = store or FeedbackStore(settings.database_url, clock=clock)
    journal = DecisionJournal(journal_folder(settings.buffer_path))
    log = DecisionLog(store, DecisionBuffer(settings.buffer_path), metrics, clock, journal=journal)
    health = DatabaseHealth(store)
    drain = Drain(settings.drain_s)
    ledger = ContactLedger()
    services = Services(
        settings,
        clock,
        state,
        store,
        log,
        ledger,
        keys,
        metrics,
        health,
        drain,
        collect_at_start=collect_at_start,
    )
    feed = ContactFeed(
        store,
        ledger,
        metrics,
        clock,
        lambda: state.serving.profile_as_of_time if state.serving else None,
        settings.contact_poll_s,
    )
    metrics.watch("nba_database_reachable", lambda: float(health.reachable))
    metrics.watch("nba_draining", lambda: float(drain.draining))
    metrics.watch_ages(
        clock,
        lambda: state.serving.model_created_at if state.serving else None,
        lambda: state.serving.profile_as_of_time if state.serving else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start_up(services)
        # Warmed in a thread, so that /readyz can say "warming" meanwhile; without background work
        # (tests driving the app by hand) before the first request instead.
        services.warming.set()
        warmer = (
            asyncio.create_task(asyncio.to_thread(suggestions.warm, services)) if start_background else None
        )
        if warmer is None:
            suggestions.warm(services)
        watcher = (
            asyncio.create_task(watch_current(services))
            if start_background and settings.watch_interval_s > 0
            else None
        )
        if start_background:
            log.start()
            feed.start()
            drain.install()
        try:
            yield
        finally:
            drain.uninstall()
            feed.stop()
            if warmer is not None:
                with suppress(Exception):  # it logged its own failure
                    await warmer
            if watcher is not None:
                watcher.cancel()
                with suppress(asyncio.CancelledError):
                    await watcher
            log.stop()
            health.close()
            store.dispose()
            gc.unfreeze()  # what start-up froze is collected as usual again (see freeze_heap)

    app = FastAPI(
        title="nba — next-best-conversation API",
        version="1",
        description=(
            "Talking points for the agent on a call: benefits the cardholder's card already includes but "
            "they are not using, in plain words with their own numbers; and what happened, for learning."
        ),
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(suggestions.router)
    app.include_router(feedback.router)
    app.include_router(admin.router)
    add_agent_page(app, settings.frame_ancestors)
    # Added first, so it runs inside RequestContext (request id, metrics, logs on its answers too).
    route = next(
        r for r in suggestions.router.routes if getattr(r, "path", None) == suggestions.SUGGESTIONS_PATH
    )
    if fast_path:
        app.add_middleware(
            suggestions.SuggestionsFastPath,
            services=services,
            route=route,
            overrides=app.dependency_overrides,
        )
    app.add_middleware(RequestContext, metrics=metrics, read_deadline_s=settings.read_deadline_s)
    return app


def load_keys(settings: Settings) -> KeyRing:
    """The API keys the settings name; DataError when they are malformed, or production mode has none."""
    keys = KeyRing.load(settings.api_keys_file, settings.api_keys)
    if settings.production and len(keys) == 0:
        raise DataError("production mode needs API keys: set NBA_API_KEYS_FILE or NBA_API_KEYS (see README)")
    return keys


def start_up(services: Services) -> None:
    """Migrations, the journal, the first load and the ledger: failures leave the service up and say why
    on /readyz. A database down now is migrated later by the decision-log writer, never by a request."""
    try:
        services.store.migrate()
    except UnavailableError as exc:
        get_logger().error("feedback database unavailable at start-up", extra={"reason": str(exc)})
    # What a process that died left unwritten goes to the buffer; the writer replays it.
    services.decisions.open_journal()
    services.state.load_at_start()
    services.publish_refusal()
    serving = services.state.serving
    if serving is None:
        get_logger().error(
            "nothing to serve",
            extra={"reason": services.state.problem, "detail": services.state.problem_detail},
        )
        return
    services.metrics.set_model_version(serving.model_version)
    services.publish_drift(serving)
    services.warm_ledger()
    freeze_heap(generation=2 if services.collect_at_start else 1)
    get_logger().info(
        "serving",
        extra={
            "model_version": serving.model_version,
            "profile_as_of": serving.profile_as_of.isoformat(),
            "cardholders": len(serving.engine.profiles),
        },
    )


async def watch_current(services: Services) -> None:
    """Reloads when models/CURRENT, profiles/CURRENT or the catalog change (checked every few seconds)."""
    while True:
        await asyncio.sleep(services.settings.watch_interval_s)
        await asyncio.to_thread(check_for_changes, services)


def check_for_changes(services: Services) -> bool:
    """One watch step: reload if something changed; a refused artifact is logged, the old one keeps serving."""
    try:
        changed = services.reload(retry_refused=False).changed
    except NbaError:
        return False
    if changed:  # milliseconds once the process is warm; the whole cost if nothing served at start
        suggestions.warm(services)
    return changed


def add_agent_page(app: FastAPI, frame_ancestors: str) -> None:
    """The agent panel: static HTML, CSS and JavaScript shipped in the package."""
    page = STATIC / "agent.html"
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    )

    @app.get("/agent", include_in_schema=False)
    async def agent_page() -> FileResponse:
        return FileResponse(str(page), media_type="text/html", headers={"Content-Security-Policy": csp})

    app.mount("/agent/assets", StaticFiles(directory=str(STATIC)), name="agent-assets")


def serve(settings: Settings) -> None:
    """Runs the service with uvicorn on settings.host:settings.port, logs as JSON lines.

    One worker: in this process. `settings.workers` > 1: uvicorn's supervisor binds the port once and
    runs that many worker processes on it, each building its own app from the environment
    (`app_from_environment`: the settings are handed down as NBA_ variables); it restarts a worker that
    dies, passes SIGTERM to every worker (each drains: see api/replicas.py) and, on SIGHUP, replaces the
    workers one by one, each new one serving before the old one stops. The workers are forked from the
    supervisor once it has imported everything they run (`_fork_workers_from_loaded_code`).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from api.http import GuardedHttpTools, uvicorn_config

    _log_uvicorn_as_json(settings)
    if settings.workers == 1:
        _tune_interpreter()
        uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()
        return
    load_keys(settings)  # refused here, in one line, rather than by every worker as it starts
    os.environ.update(settings_environment(settings))
    for name in Settings.model_fields:
        if getattr(settings, name) is None:
            os.environ.pop(f"NBA_{name.upper()}", None)
    share_counts_across_workers(metrics_folder(settings.buffer_path))
    _fork_workers_from_loaded_code()
    # The protocol class itself (a worker imports it again): its head deadline is set by the factory.
    config = uvicorn_config(
        f"{__name__}:app_from_environment",
        settings,
        factory=True,
        workers=settings.workers,
        http=GuardedHttpTools,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def _fork_workers_from_loaded_code() -> None:
    """Makes uvicorn's supervisor fork its workers from this process, which has imported what they run.

    uvicorn starts workers with multiprocessing's "spawn": each imports numpy, pandas, LightGBM, numba,
    DuckDB, scikit-learn and FastAPI anew, ~165 MB of heap per worker that no two share (and ~10 s of a
    core on a busy machine). Forked after those imports, with the heap frozen out of the collector's
    way (a collection would write to every object's header and unshare its page), the workers share
    those pages copy-on-write. Only modules are loaded here: no model, file, thread, lock or connection
    is opened before the fork (each worker builds its own app, as before), so nothing a worker holds is
    shared. A worker replaced on SIGHUP is forked from the same imports: new code takes a restart of
    the service, not a SIGHUP.

    uvicorn (pinned < 1) chooses the start method in one module attribute, `uvicorn._subprocess.spawn`,
    which it reads each time it starts a worker; a test checks the workers are forks.
    """
    import alembic.command  # noqa: F401  (each worker checks the store's migrations as it starts)
    import uvicorn._subprocess

    import api.http  # noqa: F401  (the protocol class every worker serves with)

    setattr(uvicorn._subprocess, "spawn", multiprocessing.get_context("fork"))  # noqa: B010
    freeze_heap()


def _log_uvicorn_as_json(settings: Settings) -> None:
    logger = configure_logging(settings.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers = list(logger.handlers)
        uv.propagate = False


def _tune_interpreter() -> None:
    # The event loop shares the GIL with the decision-log writer: with Python's default 5 ms switch
    # interval a request arriving during a write batch waits up to 5 ms for it; 0.5 ms bounds that.
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as the NBA_ environment variables that read back to it (None fields left out)."""
    values = settings.model_dump(mode="json", exclude_none=True)
    return {
        f"NBA_{name.upper()}": (str(value).lower() if isinstance(value, bool) else str(value))
        for name, value in values.items()
    }


def app_from_environment() -> FastAPI:
    """A worker's app (uvicorn's factory, one call per worker process): the NBA_ settings from the
    environment `serve` set."""
    from api.http import GuardedHttpTools

    settings = Settings()
    # This worker's copy of the protocol class: uvicorn gives it no per-server settings.
    GuardedHttpTools.head_deadline_s = settings.read_deadline_s
    _tune_interpreter()
    _log_uvicorn_as_json(settings)
    return create_app(settings)
