"""Feedback store: decisions shown to agents, their outcomes and NPS → a database → the training tables.

The API logs every decision it serves (`log_decision`), the agent records what happened to each
suggestion (`record_outcome`) and the survey its NPS (`record_nps`); `export` writes `calls`,
`conversations` and `nps` in the data contract so the next training run learns from them.

A call is open for outcome changes until its NPS is recorded or `call_open` has passed since it
was served; after that an outcome can no longer change (ConflictError). Outcomes keep their
history: a change adds a row and marks it current.

SQLite (`sqlite:///path`) serves one machine, PostgreSQL (`postgresql://...`, driven by psycopg 3)
several. Every database failure — down, unreachable, locked beyond the busy timeout — is raised as
UnavailableError with a one-line message that never shows the URL's password. `DecisionBuffer` keeps
decisions on local disk while the database is down and replays them later.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import json
import math
import os
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Dialect,
    Double,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    create_engine,
    event,
    func,
    inspect,
    literal,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, StaticPool

if TYPE_CHECKING:
    from nba.decision._engine import Suggestion

from nba.errors import ConflictError, DataError, NotFoundError, UnavailableError
from nba.vocab import CALL_REASONS, OUTCOMES

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
# How long a SQLite writer waits for another one before the store gives up (UnavailableError).
SQLITE_BUSY_TIMEOUT_MS: Final = 5_000
# How long PostgreSQL connection attempts may take before the database counts as unreachable.
PG_CONNECT_TIMEOUT_S: Final = 5
# How long a thread waits for a pooled PostgreSQL connection: with the server paused every connection
# can be stuck, and the default 30 s would hold a thread that long.
PG_POOL_TIMEOUT_S: Final = 2.0
# Every statement on the store's own connections has a deadline on the server too (a lock held by a
# stuck session, a slow disk): past it PostgreSQL cancels the statement and the store says unavailable.
PG_STATEMENT_TIMEOUT_MS: Final = 10_000
PG_LOCK_TIMEOUT_MS: Final = 2_000
# The request path's reads (the call-id look-up): the same limits, a request's worth. The caller also
# waits for them with a deadline of its own (a paused server does not answer at all).
FAST_READ_TIMEOUT_MS: Final = 5
EXPORT_BATCH_ROWS: Final = 10_000
REPLAY_BATCH: Final = 500
NOT_DISCUSSED: Final = "not_discussed"


def _utc_now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class ShownSuggestion:
    """One suggestion as the agent saw it, with what offline evaluation needs about it later.

    `pair_features` is the part of the model's input row after the cardholder's columns, as
    little-endian float64 bytes; `CallDecision.features_of` gives the whole row (`feature_values` reads
    it): exact, NaN and infinities kept.
    """

    suggestion_id: str
    rank: int
    benefit_id: str
    benefit_name: str
    talking_point: str
    reasons: tuple[str, ...]
    value_usd: float
    score: float
    p_adopt: float
    logging_prob: float
    pair_features: bytes

    @classmethod
    def of(cls, suggestion_id: str, suggestion: Suggestion, holder_bytes: int) -> ShownSuggestion:
        """The engine's suggestion as shown under `suggestion_id` (the fields are the engine's, by name),
        with its feature row after the first `holder_bytes` (the cardholder's columns, kept by the call)."""
        values = [getattr(suggestion, _ENGINE_NAMES.get(name, name)) for name in _SHARED_WITH_ENGINE]
        values.append(suggestion.features[holder_bytes:])
        return cls(suggestion_id, *values)


# ShownSuggestion's fields between suggestion_id and pair_features, in order: the engine's Suggestion
# has them by name.
_SHARED_WITH_ENGINE: Final = tuple(f.name for f in fields(ShownSuggestion))[1:-1]
# The store's `score` column (the contract's name) holds what the engine calls the suggestion's priority.
_ENGINE_NAMES: Final = {"score": "priority"}


@dataclass(frozen=True, slots=True)
class CallDecision:
    """Everything served on one call: the context and the suggestions shown (possibly none).

    `holder_features` is the leading part of every suggestion's model input row that they all share
    (the cardholder's columns), little-endian float64 bytes, held and stored once per call rather than
    once per suggestion; empty when there is none.
    """

    call_id: str
    cardholder_id: str
    call_reason: str
    model_version: str
    profile_as_of: str
    served_at: datetime
    note: str | None
    holder_features: bytes
    suggestions: tuple[ShownSuggestion, ...]
    agent_id: str | None = None

    def features_of(self, suggestion: ShownSuggestion) -> bytes:
        """The model's whole input row for one of the call's suggestions, as float64 bytes.

        Example:
            >>> [feature_values(decision.features_of(s)) for s in decision.suggestions]
        """
        return self.holder_features + suggestion.pair_features


@dataclass(frozen=True)
class OutcomeRecord:
    """The current outcome of a suggestion; `changed` says it replaced an earlier, different one."""

    suggestion_id: str
    call_id: str
    cardholder_id: str
    benefit_id: str
    outcome: str
    decline_reason: str | None
    agent_id: str | None
    recorded_at: datetime
    changed: bool


@dataclass(frozen=True)
class NpsRecord:
    """A call's Net Promoter Score answer."""

    call_id: str
    score: int
    recorded_at: datetime


@dataclass(frozen=True)
class ContactEvent:
    """A benefit presented to a cardholder (`at` = when it was served) and its current outcome."""

    benefit_id: str
    outcome: str
    at: datetime


@dataclass(frozen=True)
class ExportCounts:
    """What `FeedbackStore.export` wrote: rows per table and the files."""

    calls: int
    conversations: int
    nps: int
    files: tuple[Path, ...]

    def __str__(self) -> str:
        return f"{self.calls:,} calls, {self.conversations:,} conversations, {self.nps:,} NPS answers"


# ---------------------------------------------------------------------------------------------
# Schema (the migrations in nba/feedback/migrations create it; these are the store's view of it)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out; SQLite, which has no time zones, holds it as naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise DataError(f"datetimes must be timezone-aware, got naive {value.isoformat()}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def feature_bytes(values: Sequence[float] | npt.NDArray[np.floating[Any]]) -> bytes:
    """A feature vector as stored: little-endian float64 bytes."""
    return np.asarray(values, dtype="<f8").tobytes()


def feature_values(blob: bytes) -> tuple[float, ...]:
    """The numbers of a stored feature vector (see `feature_bytes`)."""
    return tuple(np.frombuffer(blob, dtype="<f8").tolist())


_metadata = MetaData()
calls_table: Final = Table(
    "calls",
    _metadata,
    Column("call_id", String(), primary_key=True),
    Column("cardholder_id", String(), nullable=False),
    Column("call_reason", String(), nullable=False),
    Column("agent_id", String()),
    Column("served_at", UtcDateTime(), nullable=False),
    Column("model_version", String(), nullable=False),
    Column("profile_as_of", Date(), nullable=False),
    Column("note", Text()),
    Column("closed_at", UtcDateTime()),
    # The leading part of each of the call's suggestions' feature vectors (CallDecision.holder_features).
    Column("holder_features_f64", LargeBinary(), nullable=False),
)
suggestions_table: Final = Table(
    "suggestions",
    _metadata,
    Column("suggestion_id", String(), primary_key=True),
    Column("call_id", String(), ForeignKey("calls.call_id"), nullable=False),
    Column("rank", Integer(), nullable=False),
    Column("benefit_id", String(), nullable=False),
    Column("benefit_name", String(), nullable=False),
    Column("talking_point", Text(), nullable=False),
    Column("reasons", JSON(), nullable=False),
    Column("value_usd", Double(), nullable=False),
    Column("score", Double(), nullable=False),
    Column("p_adopt", Double(), nullable=False),
    Column("logging_prob", Double(), nullable=False),
    # The rest of the feature vector: calls.holder_features_f64 + this is the whole one (feature_bytes).
    Column("pair_features_f64", LargeBinary(), nullable=False),
)
outcomes_table: Final = Table(
    "outcomes",
    _metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("suggestion_id", String(), ForeignKey("suggestions.suggestion_id"), nullable=False),
    Column("outcome", String(), nullable=False),
    Column("decline_reason", Text()),
    Column("agent_id", String()),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("is_current", Boolean(), nullable=False),
)
# A later decision served under a call id already stored: its suggestion ids (repeat_id) → the stored
# decision's suggestions (migration 0004).
suggestion_repeats_table: Final = Table(
    "suggestion_repeats",
    _metadata,
    Column("repeat_id", String(), primary_key=True),
    Column("suggestion_id", String(), ForeignKey("suggestions.suggestion_id"), nullable=False),
)
nps_table: Final = Table(
    "nps",
    _metadata,
    Column("call_id", String(), ForeignKey("calls.call_id"), primary_key=True),
    Column("score", Integer(), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
)


# ---------------------------------------------------------------------------------------------
# URLs and errors

_PASSWORD_IN_URL: Final = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _redact(text_: str) -> str:
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
            f"postgresql://user@host:5432/nba, got {_redact(url)!r}"
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


# Alembic's `context` is a module-level proxy shared by every thread: one migration per process at a time.
_MIGRATION_LOCK: Final = threading.Lock()

_UNAVAILABLE_ERRORS: Final = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return lines[0] if lines else type(inner).__name__


# ---------------------------------------------------------------------------------------------
# The store


class FeedbackStore:
    """Logs decisions, outcomes and NPS in SQLite or PostgreSQL, and exports them for training.

    Takes the database URL, a clock (returns an aware datetime; injectable for tests) and how long a
    call stays open for outcome changes after it was served. Nothing is connected until first use.

    Example:
        >>> store = FeedbackStore("sqlite:///var/feedback.db")
        >>> store.migrate()
        >>> store.log_decision(decision)
        >>> store.record_outcome(decision.suggestions[0].suggestion_id, "accepted")
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        call_open: timedelta = timedelta(minutes=30),
    ) -> None:
        if call_open < timedelta(0):
            raise DataError(f"`call_open` must not be negative, got {call_open}")
        self.url = parse_store_url(url)
        self.clock = clock
        self.call_open = call_open
        self._shown_url = self.url.render_as_string(hide_password=True)
        self._password = self.url.password if isinstance(self.url.password, str) else None
        self._in_memory = self._is_in_memory()
        self._engine = self._create_engine("background")
        # The request path's reads go through their own small pool with request-sized limits, so a
        # slow or paused database holds at most that pool, never the writer's or the outcomes'.
        self._fast_engine = self._engine if self._in_memory else self._create_engine("fast", pool_size=4)
        # SQLite is a file on this machine and, in WAL mode, readers never wait for the writer: a
        # primary-key read takes ~0.1 ms, less than handing it to a worker thread. PostgreSQL is a
        # network round trip away.
        self.reads_are_local: bool = self.url.get_backend_name() == "sqlite"
        # Set once this process has brought the schema to head (`migrate`).
        self.migrated = False

    def _is_in_memory(self) -> bool:
        database = self.url.database or ""
        return self.url.get_backend_name() == "sqlite" and (
            database in ("", ":memory:") or database.startswith("file::memory:")
        )

    def _create_engine(
        self, kind: Literal["background", "fast", "unbounded"], pool_size: int | None = None
    ) -> Engine:
        """An engine on the store's URL with the limits of its `kind`: `fast` for the request path's reads
        (a lock waited for at most FAST_READ_TIMEOUT_MS), `background` for the service's writer and
        feedback, `unbounded` without a statement deadline for work that may take long and is not on a
        request (a migration, which also waits for another process's; the export; the start-up's read of
        the outcomes); `pool_size=0`: a connection of its own per use."""
        if self.url.get_backend_name() == "sqlite":
            busy_ms = FAST_READ_TIMEOUT_MS if kind == "fast" else SQLITE_BUSY_TIMEOUT_MS
            return self._create_sqlite_engine(busy_ms, pool_size)
        statement_ms, lock_ms = {
            "fast": (FAST_READ_TIMEOUT_MS, FAST_READ_TIMEOUT_MS),
            "background": (PG_STATEMENT_TIMEOUT_MS, PG_LOCK_TIMEOUT_MS),
            "unbounded": (0, 0),  # 0: no limit
        }[kind]
        timeouts = f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms}"
        given = self.url.query.get("options")  # the URL's own options come first; ours are added
        if isinstance(given, str) and given:
            timeouts = f"{given} {timeouts}"
        connect_args: dict[str, Any] = {"options": timeouts}
        if "connect_timeout" not in self.url.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        pooling: dict[str, Any] = {"pool_timeout": PG_POOL_TIMEOUT_S}
        if pool_size == 0:
            pooling = {"poolclass": NullPool}
        elif pool_size is not None:
            pooling["pool_size"] = pool_size
            pooling["max_overflow"] = 0
        # pre_ping: after a database restart the first request gets a fresh connection, not an error.
        return create_engine(
            self.url, connect_args=connect_args, pool_pre_ping=True, json_serializer=_json_dumps, **pooling
        )

    def _create_sqlite_engine(self, busy_ms: int, pool_size: int | None) -> Engine:
        database = self.url.database or ""
        in_memory = self._in_memory
        if in_memory:
            # One shared connection, or every pooled connection would see its own empty database.
            engine = create_engine(
                self.url,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
                json_serializer=_json_dumps,
            )
        else:
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UnavailableError(
                    f"feedback database {self._shown_url}: cannot create folder {folder}: {exc.strerror}"
                ) from None
            pooling: dict[str, Any] = {"poolclass": NullPool} if pool_size == 0 else {}
            engine = create_engine(self.url, json_serializer=_json_dumps, **pooling)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            # SQLAlchemy, not the sqlite3 module, emits BEGIN (below): SELECTs are then transactional
            # too, and writers can take the write lock up front instead of failing to upgrade later.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
                if not in_memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                    # WAL + NORMAL: a commit is not fsynced, checkpoints are. The database stays
                    # consistent; a power cut may lose the last commits — no more than the service
                    # already holds in memory between decision-log batches. Halves the writer's cost.
                    cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("nba_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    # -- plumbing ---------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> UnavailableError:
        reason = _redact(_first_line(exc))
        if self._password:
            reason = reason.replace(self._password, "***")
        return UnavailableError(f"feedback database {self._shown_url} is unavailable: {reason}")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE_ERRORS as exc:
            raise self._unavailable(exc) from None
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise self._unavailable(exc) from None
            raise

    @contextmanager
    def _transaction(self, *, write: bool = False, fast: bool = False) -> Iterator[Connection]:
        engine = self._fast_engine if fast else self._engine
        with self._guard(), engine.connect() as conn:
            if write:
                conn.execution_options(nba_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _unbounded_connection(self) -> Iterator[Connection]:
        """A connection of its own without a statement deadline (see `_create_engine`), closed after."""
        engine = self._engine if self._in_memory else self._create_engine("unbounded", pool_size=0)
        try:
            with self._guard(), engine.connect() as conn:
                yield conn
        finally:
            if engine is not self._engine:
                engine.dispose()

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise DataError(f"the store's clock must return an aware datetime, got {now.isoformat()}")
        return now.astimezone(UTC)

    # -- lifecycle --------------------------------------------------------------------------

    def migrate(self) -> None:
        """Brings the schema to the newest revision (Alembic `upgrade head`); a no-op when it is there.

        One migration at a time: in this process (Alembic's `context` is one module-level object shared
        by every thread, so two threads migrating at once run on each other's connections), on this
        machine for a SQLite file (a lock file beside it) and across machines for PostgreSQL (an
        advisory lock, nba/feedback/migrations/env.py). It runs on a connection of its own, never a pooled one.
        The service calls it at start-up and from its one background writer, never on a request.

        Raises UnavailableError when the database cannot be reached, DataError when it holds a
        revision this version of nba does not know (a newer nba migrated it).
        """
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        config = Config()
        # Config options go through ConfigParser interpolation: a '%' in the path must be doubled.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        engine = self._engine if self._in_memory else self._create_engine("unbounded", pool_size=0)
        try:
            with _MIGRATION_LOCK, self._migration_file_lock(), self._guard(), engine.connect() as conn:
                conn.execution_options(nba_write=True)
                config.attributes["connection"] = conn
                try:
                    command.upgrade(config, "head")
                except CommandError as exc:
                    raise DataError(f"feedback database {self._shown_url}: cannot migrate: {exc}") from None
                conn.commit()
        finally:
            if engine is not self._engine:
                engine.dispose()
        self.migrated = True

    @contextmanager
    def _migration_file_lock(self) -> Iterator[None]:
        """For a SQLite file: an exclusive lock on `<file>.migrate.lock` (other processes wait)."""
        if self.url.get_backend_name() != "sqlite" or self._in_memory:
            yield
            return
        database = Path(self.url.database or "").expanduser()
        with database.with_name(database.name + ".migrate.lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def revision(self) -> str | None:
        """The schema's Alembic revision (None before the first migration)."""
        with self._transaction() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            value = conn.scalar(text("SELECT version_num FROM alembic_version"))
        return None if value is None else str(value)

    @property
    def shown_url(self) -> str:
        """The URL with its password masked, for messages and logs."""
        return self._shown_url

    def ping(self) -> None:
        """Raises UnavailableError unless the database answers a trivial query."""
        with self._transaction() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Closes every pooled connection; the store reconnects if used again."""
        self._engine.dispose()
        if self._fast_engine is not self._engine:
            self._fast_engine.dispose()

    # -- decisions --------------------------------------------------------------------------

    def log_decision(self, decision: CallDecision) -> CallDecision:
        """Stores a served decision once; returns the stored one.

        Idempotent on `call_id`: when the call is already stored the stored decision is returned and
        is the call (so a retry or a buffer replay cannot duplicate a call). A different decision served
        under the same call id (the service answered without finding the stored one in time) is kept
        as a repeat of it: each of its suggestion ids leads to the stored suggestion of the same benefit,
        else of the same rank (`record_outcome` follows it). Raises DataError
        for an invalid decision, ConflictError when a suggestion id already belongs to another call,
        UnavailableError when the database is down.
        """
        _check_decision(decision)
        with self._transaction(write=True) as conn:
            stored = _read_decision(conn, decision.call_id)
            if stored is not None:
                _keep_as_repeat(conn, stored, decision)
                return stored
            try:
                with conn.begin_nested():
                    _insert_decisions(conn, [decision])
            except sa_exc.IntegrityError:
                stored = _read_decision(conn, decision.call_id)
                if stored is not None:  # another process logged the same call a moment ago
                    return stored
                ids = [s.suggestion_id for s in decision.suggestions]
                taken = conn.scalars(
                    select(suggestions_table.c.suggestion_id).where(
                        suggestions_table.c.suggestion_id.in_(ids)
                    )
                ).all()
                raise ConflictError(
                    f"call {decision.call_id!r}: suggestion_id {taken[0] if taken else ids!r} "
                    "already belongs to another call"
                ) from None
        return _read_back(decision)

    def log_decisions(self, decisions: Sequence[CallDecision]) -> int:
        """Stores many served decisions in one transaction (the service's background writer); returns how
        many were new. The same idempotence as `log_decision`: calls already stored are skipped.

        On a conflict inside the batch (a suggestion id taken by another call) it falls back to one
        `log_decision` per decision, so the error names the decision at fault and the rest are stored.
        """
        for decision in decisions:
            _check_decision(decision)
        if not decisions:
            return 0
        try:
            with self._transaction(write=True) as conn:
                stored = _stored_call_ids(conn, dict.fromkeys(d.call_id for d in decisions))
                new: dict[str, CallDecision] = {}
                repeats: list[CallDecision] = []
                for decision in decisions:
                    if decision.call_id not in stored and decision.call_id not in new:
                        new[decision.call_id] = decision
                    else:
                        repeats.append(decision)
                if new:
                    # No savepoint: a failed insert rolls the whole batch back, and the fallback below
                    # logs the decisions one by one.
                    _insert_decisions(conn, list(new.values()))
                for decision in repeats:
                    first = new.get(decision.call_id) or _read_decision(conn, decision.call_id)
                    assert first is not None
                    _keep_as_repeat(conn, first, decision)
                return len(new)
        except sa_exc.IntegrityError:
            written = 0
            conflict: ConflictError | None = None
            for decision in decisions:
                before = self.find_decision(decision.call_id)
                try:
                    self.log_decision(decision)
                except ConflictError as exc:
                    conflict = conflict or exc
                    continue
                written += before is None
            if conflict is not None:
                raise conflict from None
            return written

    def find_decision(self, call_id: str, *, fast: bool = False) -> CallDecision | None:
        """The stored decision of a call, or None when the call is unknown.

        `fast`: through the request path's pool, whose statements wait at most FAST_READ_TIMEOUT_MS for
        a lock (UnavailableError past it).
        """
        with self._transaction(fast=fast) as conn:
            return _read_decision(conn, call_id)

    def call_state(self, call_id: str, *, fast: bool = False) -> tuple[dict[str, str], bool] | None:
        """A stored call's current outcomes (as `current_outcomes`) and whether it is closed (as
        `is_closed`), read in one transaction; None for an unknown call. `fast` as in `find_decision`."""
        with self._transaction(fast=fast) as conn:
            row = conn.execute(
                select(calls_table.c.served_at, calls_table.c.closed_at).where(
                    calls_table.c.call_id == call_id
                )
            ).one_or_none()
            if row is None:
                return None
            outcomes = conn.execute(
                select(outcomes_table.c.suggestion_id, outcomes_table.c.outcome)
                .join(suggestions_table)
                .where(suggestions_table.c.call_id == call_id, outcomes_table.c.is_current)
            ).all()
        closed = self._closed_since(row.served_at, row.closed_at) is not None
        return {o.suggestion_id: o.outcome for o in outcomes}, closed

    def current_outcomes(self, call_id: str) -> dict[str, str]:
        """suggestion_id → current outcome, for the call's suggestions that have one (unmarked: left out).

        Raises NotFoundError for an unknown call.
        """
        with self._transaction() as conn:
            if conn.scalar(select(calls_table.c.call_id).where(calls_table.c.call_id == call_id)) is None:
                raise NotFoundError(f"unknown call_id {call_id!r}")
            rows = conn.execute(
                select(outcomes_table.c.suggestion_id, outcomes_table.c.outcome)
                .join(suggestions_table)
                .where(suggestions_table.c.call_id == call_id, outcomes_table.c.is_current)
            ).all()
        return {row.suggestion_id: row.outcome for row in rows}

    def is_closed(self, call_id: str) -> bool:
        """Whether a call no longer takes outcome changes: its NPS is recorded or `call_open` has passed.

        Raises NotFoundError for an unknown call.
        """
        with self._transaction() as conn:
            row = conn.execute(
                select(calls_table.c.served_at, calls_table.c.closed_at).where(
                    calls_table.c.call_id == call_id
                )
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"unknown call_id {call_id!r}")
        return self._closed_since(row.served_at, row.closed_at) is not None

    def _closed_since(self, served_at: datetime, closed_at: datetime | None) -> datetime | None:
        expires = served_at + self.call_open
        if closed_at is not None:
            return min(closed_at, expires)
        return expires if self._now() >= expires else None

    def _closed_message(self, call_id: str, served_at: datetime, closed_at: datetime | None) -> str:
        since = self._closed_since(served_at, closed_at)
        assert since is not None
        expires = served_at + self.call_open
        why = (
            "its NPS was recorded"
            if closed_at is not None and closed_at < expires
            else f"{_minutes(self.call_open)} after it was served"
        )
        return f"call {call_id!r} closed at {_show_time(since)} ({why})"

    # -- outcomes and NPS -------------------------------------------------------------------

    def record_outcome(
        self,
        suggestion_id: str,
        outcome: str,
        *,
        decline_reason: str | None = None,
        agent_id: str | None = None,
    ) -> OutcomeRecord:
        """Records what happened to a suggestion and returns its current outcome.

        The same outcome as the current one writes nothing and returns the current record
        (`changed=False`), also after the call closed. A different outcome while the call is open
        becomes the current one, the earlier staying in the history (`changed=True`). Once the call
        is closed a different outcome raises ConflictError, and so does a first outcome. Raises
        DataError for an outcome outside `nba.vocab.OUTCOMES` or a decline reason on another outcome,
        NotFoundError for an unknown suggestion.
        """
        if outcome not in OUTCOMES:
            raise DataError(f"`outcome` must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        if decline_reason is not None and outcome != "declined":
            raise DataError(f"`decline_reason` is only for outcome 'declined', got outcome {outcome!r}")
        with self._transaction(write=True) as conn:
            found = conn.execute(_outcome_target(suggestion_id)).one_or_none()
            if found is None:
                stored_id = conn.scalar(
                    select(suggestion_repeats_table.c.suggestion_id).where(
                        suggestion_repeats_table.c.repeat_id == suggestion_id
                    )
                )
                if stored_id is not None:  # a repeat's suggestion: the outcome is the stored one's
                    suggestion_id = str(stored_id)
                    found = conn.execute(_outcome_target(suggestion_id)).one_or_none()
            if found is None:
                raise NotFoundError(f"unknown suggestion_id {suggestion_id!r}")
            current = conn.execute(
                select(outcomes_table).where(
                    outcomes_table.c.suggestion_id == suggestion_id, outcomes_table.c.is_current
                )
            ).one_or_none()
            if current is not None and current.outcome == outcome:
                return _outcome_record(found, current, suggestion_id, changed=False)
            if self._closed_since(found.served_at, found.closed_at) is not None:
                closed = self._closed_message(found.call_id, found.served_at, found.closed_at)
                stays = (
                    f"its outcome {current.outcome!r} (recorded {_show_time(current.recorded_at)}) stands"
                    if current is not None
                    else f"it was never marked, so it counts as {NOT_DISCUSSED!r}"
                )
                raise ConflictError(
                    f"cannot record {outcome!r} for suggestion {suggestion_id!r}: {closed}; {stays}"
                )
            if current is not None:
                conn.execute(
                    update(outcomes_table).where(outcomes_table.c.id == current.id).values(is_current=False)
                )
            now = self._now()
            conn.execute(
                outcomes_table.insert().values(
                    suggestion_id=suggestion_id,
                    outcome=outcome,
                    decline_reason=decline_reason,
                    agent_id=agent_id,
                    recorded_at=now,
                    is_current=True,
                )
            )
        return OutcomeRecord(
            suggestion_id=suggestion_id,
            call_id=found.call_id,
            cardholder_id=found.cardholder_id,
            benefit_id=found.benefit_id,
            outcome=outcome,
            decline_reason=decline_reason,
            agent_id=agent_id,
            recorded_at=now,
            changed=current is not None,
        )

    def record_nps(self, call_id: str, score: int) -> NpsRecord:
        """Records a call's NPS (0–10) and closes the call for outcome changes.

        The same score again writes nothing and returns the stored record; a different score raises
        ConflictError. Raises DataError for a score outside 0–10, NotFoundError for an unknown call.
        """
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
            raise DataError(f"`score` must be an int in [0, 10], got {score!r}")
        with self._transaction(write=True) as conn:
            call = conn.execute(
                select(calls_table.c.closed_at).where(calls_table.c.call_id == call_id).with_for_update()
            ).one_or_none()
            if call is None:
                raise NotFoundError(f"unknown call_id {call_id!r}")
            stored = conn.execute(select(nps_table).where(nps_table.c.call_id == call_id)).one_or_none()
            if stored is not None:
                if stored.score != score:
                    raise ConflictError(
                        f"call {call_id!r} already has NPS {stored.score} (recorded "
                        f"{_show_time(stored.recorded_at)}); got {score}"
                    )
                return NpsRecord(call_id, stored.score, stored.recorded_at)
            now = self._now()
            conn.execute(nps_table.insert().values(call_id=call_id, score=score, recorded_at=now))
            if call.closed_at is None:
                conn.execute(
                    update(calls_table).where(calls_table.c.call_id == call_id).values(closed_at=now)
                )
        return NpsRecord(call_id, score, now)

    def recent_contacts(self, cardholder_id: str, since: datetime) -> tuple[ContactEvent, ...]:
        """Every suggestion shown to a cardholder on calls served at or after `since`, oldest first.

        Each comes with its current outcome (`not_discussed` when it was never marked) and the time it
        was served: what the contact policy needs (declined lately, presented twice in 90 days).
        """
        if since.tzinfo is None:
            raise DataError(f"`since` must be timezone-aware, got {since.isoformat()}")
        outcome = func.coalesce(outcomes_table.c.outcome, literal(NOT_DISCUSSED))
        with self._transaction() as conn:
            rows = conn.execute(
                select(suggestions_table.c.benefit_id, outcome.label("outcome"), calls_table.c.served_at)
                .select_from(_conversations_join())
                .where(calls_table.c.cardholder_id == cardholder_id, calls_table.c.served_at >= since)
                .order_by(calls_table.c.served_at, calls_table.c.call_id, suggestions_table.c.rank)
            ).all()
        return tuple(ContactEvent(row.benefit_id, row.outcome, row.served_at) for row in rows)

    def outcomes_since(self, since: datetime) -> tuple[tuple[str, str, ContactEvent], ...]:
        """(cardholder_id, suggestion_id, event) for every marked suggestion of calls served at or after
        `since`, with its current outcome: what a restarted service replays into its contact policy."""
        if since.tzinfo is None:
            raise DataError(f"`since` must be timezone-aware, got {since.isoformat()}")
        with self._unbounded_connection() as conn, conn.begin():
            rows = conn.execute(
                select(
                    calls_table.c.cardholder_id,
                    suggestions_table.c.suggestion_id,
                    suggestions_table.c.benefit_id,
                    outcomes_table.c.outcome,
                    calls_table.c.served_at,
                )
                .select_from(_conversations_join())
                .where(calls_table.c.served_at >= since, outcomes_table.c.outcome.is_not(None))
                .order_by(calls_table.c.served_at, calls_table.c.call_id, suggestions_table.c.rank)
            ).all()
        return tuple(
            (row.cardholder_id, row.suggestion_id, ContactEvent(row.benefit_id, row.outcome, row.served_at))
            for row in rows
        )

    # -- export -----------------------------------------------------------------------------

    def export(self, out: Path, fmt: Literal["csv", "parquet"] = "csv") -> ExportCounts:
        """Writes `calls`, `conversations` and `nps` in the data contract into the folder `out`.

        `calls` has every call served (also those with nothing to suggest), `conversations` one row
        per suggestion shown with its current outcome (`not_discussed` when never marked) and the
        model's `p_adopt` (an extra column), `nps` every
        answer. Timestamps are naive UTC (`2026-08-15 10:30:00`). The three tables are read in one
        transaction, so they agree with each other; each file is written beside its final name and
        renamed when complete. Raises DataError when the database has no feedback tables or `out`
        already holds a table in the other format (a data directory may not have both).
        """
        if fmt not in ("csv", "parquet"):
            raise DataError(f"`fmt` must be csv or parquet, got {fmt!r}")
        other = "parquet" if fmt == "csv" else "csv"
        for name in _EXPORT_COLUMNS:
            clash = out / f"{name}.{other}"
            if clash.exists():
                raise DataError(
                    f"{clash}: already there; a data directory holds {name}.csv or {name}.parquet, "
                    f"not both (remove it or export as {other})"
                )
        counts: dict[str, int] = {}
        files: list[Path] = []
        with self._unbounded_connection() as conn:
            if conn.dialect.name == "postgresql":
                # One snapshot for the three tables (SQLite's transaction is one already).
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                if not inspect(conn).has_table("calls"):
                    raise DataError(
                        f"feedback database {self._shown_url} has no feedback tables: it was never "
                        "migrated (FeedbackStore.migrate creates them)"
                    )
                out.mkdir(parents=True, exist_ok=True)
                for name, query in _export_queries().items():
                    path = out / f"{name}.{fmt}"
                    result = conn.execution_options(yield_per=EXPORT_BATCH_ROWS).execute(query)
                    counts[name] = _write_table(path, name, result.partitions(), fmt)
                    files.append(path)
        return ExportCounts(counts["calls"], counts["conversations"], counts["nps"], tuple(files))


# ---------------------------------------------------------------------------------------------
# Decisions ↔ rows


def _check_decision(decision: CallDecision) -> None:
    where = f"call {decision.call_id!r}"
    for name in ("call_id", "cardholder_id", "model_version"):
        value = getattr(decision, name)
        if not isinstance(value, str) or not value:
            raise DataError(f"{where}: `{name}` must be a non-empty string, got {value!r}")
    if decision.call_reason not in CALL_REASONS:
        raise DataError(
            f"{where}: `call_reason` must be one of {', '.join(CALL_REASONS)}, got {decision.call_reason!r}"
        )
    if decision.served_at.tzinfo is None:
        raise DataError(f"{where}: `served_at` must be timezone-aware, got {decision.served_at.isoformat()}")
    _parse_as_of(decision.profile_as_of, where)
    if not _is_float64_bytes(decision.holder_features):
        raise DataError(
            f"{where}: `holder_features` must be float64 bytes (see feature_bytes), "
            f"got {_shown_type(decision.holder_features)}"
        )
    seen_ids: set[str] = set()
    seen_benefits: set[str] = set()
    for s in decision.suggestions:
        at = f"{where}, suggestion {s.suggestion_id!r}"
        if not s.suggestion_id or s.suggestion_id in seen_ids:
            raise DataError(f"{at}: `suggestion_id` must be non-empty and unique within the call")
        if s.benefit_id in seen_benefits:
            raise DataError(f"{at}: `benefit_id` {s.benefit_id!r} is shown twice on the call")
        seen_ids.add(s.suggestion_id)
        seen_benefits.add(s.benefit_id)
        if isinstance(s.rank, bool) or not isinstance(s.rank, int) or s.rank < 1:
            raise DataError(f"{at}: `rank` must be a positive integer, got {s.rank!r}")
        if not _is_float64_bytes(s.pair_features):
            raise DataError(
                f"{at}: `pair_features` must be float64 bytes (see feature_bytes), "
                f"got {_shown_type(s.pair_features)}"
            )
        if not 0.0 < s.logging_prob <= 1.0:
            raise DataError(f"{at}: `logging_prob` must be a float in (0, 1], got {s.logging_prob!r}")
        for name in ("value_usd", "score", "p_adopt"):
            value = getattr(s, name)
            if not math.isfinite(value):
                raise DataError(f"{at}: `{name}` must be a finite number, got {value!r}")


def _is_float64_bytes(value: object) -> bool:
    return isinstance(value, bytes) and len(value) % 8 == 0


def _shown_type(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__


def _parse_as_of(value: str, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise DataError(
            f"{where}: `profile_as_of` must be a date in YYYY-MM-DD form, got {value!r}"
        ) from None


def _json_dumps(value: Any) -> str:
    # The JSON columns (reasons) and the buffer file: orjson is several times faster than the standard
    # library, and writes NaN and ±inf as null (JSON has neither; PostgreSQL rejects them).
    return orjson.dumps(value).decode()


def _features_from_json(values: Sequence[float | None]) -> tuple[float, ...]:
    return tuple(math.nan if x is None else float(x) for x in values)


def _placeholder(dialect: Dialect) -> str:
    """The driver's positional placeholder: `?` for sqlite3, `%s` for psycopg."""
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise AssertionError(f"unexpected paramstyle {dialect.paramstyle!r}")  # the store makes neither


def _stored_call_ids(conn: Connection, call_ids: Collection[str]) -> set[str]:
    """Which of the call ids the store already holds (one query; SQL text, as `_BatchInsert` runs it)."""
    marks = ", ".join([_placeholder(conn.dialect)] * len(call_ids))
    result = conn.exec_driver_sql(f"SELECT call_id FROM calls WHERE call_id IN ({marks})", tuple(call_ids))
    return {row[0] for row in result}


class _BatchInsert:
    """An INSERT of some of a table's columns, run as the driver's own executemany of plain tuples.

    `conn.execute(table.insert(), [dict, ...])` spent more CPU in SQLAlchemy than in the database: per
    row it matched the dict's keys to the compiled statement's parameters and ran every column's bind
    processor (with the expanding `IN` of the already-stored check and a savepoint, log_decisions cost
    ~3.8× the sqlite3 module alone writing the same rows; now ~1.7×, bench/bench_decision_log.py). Here
    the statement text is made once per dialect and only the columns whose type converts values
    (timestamps, dates, JSON) go through their bind processor, the very one SQLAlchemy would run, so
    the stored values are the same (tested against SQLAlchemy's insert on both databases).
    """

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._prepared: dict[str, tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]] = {}

    def _prepare(self, dialect: Dialect) -> tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]:
        placeholder = _placeholder(dialect)
        quote = dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(self.table.name)} ({', '.join(quote(name) for name in self.columns)}) "
            f"VALUES ({', '.join([placeholder] * len(self.columns))})"
        )
        processors = []
        for i, name in enumerate(self.columns):
            process = self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((i, process))
        prepared = sql, tuple(processors)
        self._prepared[dialect.name] = prepared
        return prepared

    def execute(self, conn: Connection, rows: list[list[Any]]) -> None:
        """Inserts `rows` (each a list of values in `columns` order; converted in place)."""
        sql, processors = self._prepared.get(conn.dialect.name) or self._prepare(conn.dialect)
        for i, process in processors:
            for row in rows:
                row[i] = process(row[i])
        conn.exec_driver_sql(sql, [tuple(row) for row in rows])


_INSERT_CALLS: Final = _BatchInsert(
    calls_table,
    (
        "call_id",
        "cardholder_id",
        "call_reason",
        "agent_id",
        "served_at",
        "model_version",
        "profile_as_of",
        "note",
        "holder_features_f64",
    ),
)
_INSERT_SUGGESTIONS: Final = _BatchInsert(
    suggestions_table,
    (
        "suggestion_id",
        "call_id",
        "rank",
        "benefit_id",
        "benefit_name",
        "talking_point",
        "reasons",
        "value_usd",
        "score",
        "p_adopt",
        "logging_prob",
        "pair_features_f64",
    ),
)


def _insert_decisions(conn: Connection, decisions: Sequence[CallDecision]) -> None:
    """Inserts calls and their suggestions with one executemany per table."""
    _INSERT_CALLS.execute(
        conn,
        [
            [
                d.call_id,
                d.cardholder_id,
                d.call_reason,
                d.agent_id,
                d.served_at,
                d.model_version,
                date.fromisoformat(d.profile_as_of),
                d.note,
                d.holder_features,
            ]
            for d in decisions
        ],
    )
    rows = [
        [
            s.suggestion_id,
            d.call_id,
            s.rank,
            s.benefit_id,
            s.benefit_name,
            s.talking_point,
            list(s.reasons),
            float(s.value_usd),
            float(s.score),
            float(s.p_adopt),
            float(s.logging_prob),
            s.pair_features,
        ]
        for d in decisions
        for s in d.suggestions
    ]
    if rows:
        _INSERT_SUGGESTIONS.execute(conn, rows)


def _outcome_target(suggestion_id: str) -> Select[Any]:
    """A suggestion's call, benefit, cardholder and the call's times, its call row locked: changes to
    one call's outcomes and its closing happen one at a time."""
    return (
        select(
            suggestions_table.c.call_id,
            suggestions_table.c.benefit_id,
            calls_table.c.cardholder_id,
            calls_table.c.served_at,
            calls_table.c.closed_at,
        )
        .join(calls_table)
        .where(suggestions_table.c.suggestion_id == suggestion_id)
        .with_for_update(of=calls_table)
    )


def _keep_as_repeat(conn: Connection, stored: CallDecision, later: CallDecision) -> None:
    """Points the suggestion ids of `later`, served under `stored`'s call id, at `stored`'s suggestions:
    the one of the same benefit, else of the same rank. Nothing for a replay of `stored` itself, nor
    for a decision about another cardholder (its outcomes stay unknown: 404)."""
    if later.cardholder_id != stored.cardholder_id:
        return
    stored_ids = {s.suggestion_id for s in stored.suggestions}
    by_benefit = {s.benefit_id: s.suggestion_id for s in stored.suggestions}
    by_rank = {s.rank: s.suggestion_id for s in stored.suggestions}
    pairs = {
        s.suggestion_id: by_benefit.get(s.benefit_id) or by_rank.get(s.rank)
        for s in later.suggestions
        if s.suggestion_id not in stored_ids
    }
    pairs = {repeat: target for repeat, target in pairs.items() if target is not None}
    if not pairs:
        return
    known = set(
        conn.scalars(
            select(suggestion_repeats_table.c.repeat_id).where(
                suggestion_repeats_table.c.repeat_id.in_(list(pairs))
            )
        )
    )
    rows = [{"repeat_id": r, "suggestion_id": t} for r, t in pairs.items() if r not in known]
    if rows:
        conn.execute(suggestion_repeats_table.insert(), rows)


def _read_decision(conn: Connection, call_id: str) -> CallDecision | None:
    call = conn.execute(select(calls_table).where(calls_table.c.call_id == call_id)).one_or_none()
    if call is None:
        return None
    rows = conn.execute(
        select(suggestions_table)
        .where(suggestions_table.c.call_id == call_id)
        .order_by(suggestions_table.c.rank, suggestions_table.c.suggestion_id)
    ).all()
    return CallDecision(
        call_id=call.call_id,
        cardholder_id=call.cardholder_id,
        call_reason=call.call_reason,
        model_version=call.model_version,
        profile_as_of=call.profile_as_of.isoformat(),
        served_at=call.served_at,
        note=call.note,
        suggestions=tuple(
            ShownSuggestion(
                suggestion_id=row.suggestion_id,
                rank=row.rank,
                benefit_id=row.benefit_id,
                benefit_name=row.benefit_name,
                talking_point=row.talking_point,
                reasons=tuple(row.reasons),
                value_usd=row.value_usd,
                score=row.score,
                p_adopt=row.p_adopt,
                logging_prob=row.logging_prob,
                pair_features=bytes(row.pair_features_f64),
            )
            for row in rows
        ),
        agent_id=call.agent_id,
        holder_features=bytes(call.holder_features_f64),
    )


def _read_back(decision: CallDecision) -> CallDecision:
    """The decision as the database now holds it (UTC time, floats), without a query."""
    return CallDecision(
        call_id=decision.call_id,
        cardholder_id=decision.cardholder_id,
        call_reason=decision.call_reason,
        model_version=decision.model_version,
        profile_as_of=date.fromisoformat(decision.profile_as_of).isoformat(),
        served_at=decision.served_at.astimezone(UTC),
        note=decision.note,
        suggestions=tuple(
            ShownSuggestion(
                suggestion_id=s.suggestion_id,
                rank=s.rank,
                benefit_id=s.benefit_id,
                benefit_name=s.benefit_name,
                talking_point=s.talking_point,
                reasons=tuple(s.reasons),
                value_usd=float(s.value_usd),
                score=float(s.score),
                p_adopt=float(s.p_adopt),
                logging_prob=float(s.logging_prob),
                pair_features=bytes(s.pair_features),
            )
            for s in sorted(decision.suggestions, key=lambda s: (s.rank, s.suggestion_id))
        ),
        agent_id=decision.agent_id,
        holder_features=bytes(decision.holder_features),
    )


def _outcome_record(
    found: Row[Any, Any, Any, Any, Any], current: Row[Any], suggestion_id: str, *, changed: bool
) -> OutcomeRecord:
    return OutcomeRecord(
        suggestion_id=suggestion_id,
        call_id=found.call_id,
        cardholder_id=found.cardholder_id,
        benefit_id=found.benefit_id,
        outcome=current.outcome,
        decline_reason=current.decline_reason,
        agent_id=current.agent_id,
        recorded_at=current.recorded_at,
        changed=changed,
    )


def _show_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:g} minute{'s' if minutes != 1 else ''}"


# ---------------------------------------------------------------------------------------------
# Export


def _conversations_join() -> Any:
    current = and_(
        outcomes_table.c.suggestion_id == suggestions_table.c.suggestion_id, outcomes_table.c.is_current
    )
    return suggestions_table.join(calls_table).outerjoin(outcomes_table, current)


_EXPORT_COLUMNS: Final[dict[str, dict[str, pa.DataType]]] = {
    "calls": {
        "call_id": pa.string(),
        "cardholder_id": pa.string(),
        "started_at": pa.timestamp("us"),
        "call_reason": pa.string(),
        "agent_id": pa.string(),
    },
    "conversations": {
        "call_id": pa.string(),
        "cardholder_id": pa.string(),
        "benefit_id": pa.string(),
        "presented_at": pa.timestamp("us"),
        "outcome": pa.string(),
        "agent_id": pa.string(),
        "rank": pa.int64(),
        "call_reason": pa.string(),
        "logging_prob": pa.float64(),
        # An extra column (the contract allows them): what the model predicted, for `nba drift` to set
        # beside the adoption observed once the 30 days have passed.
        "p_adopt": pa.float64(),
    },
    "nps": {"call_id": pa.string(), "score": pa.int64(), "responded_at": pa.timestamp("us")},
}


def _export_queries() -> dict[str, Select[Any]]:
    c, s, o, n = calls_table.c, suggestions_table.c, outcomes_table.c, nps_table.c
    return {
        "calls": select(
            c.call_id, c.cardholder_id, c.served_at.label("started_at"), c.call_reason, c.agent_id
        ).order_by(c.served_at, c.call_id),
        "conversations": select(
            c.call_id,
            c.cardholder_id,
            s.benefit_id,
            c.served_at.label("presented_at"),
            func.coalesce(o.outcome, literal(NOT_DISCUSSED)).label("outcome"),
            # The agent who recorded the outcome, else the one the call was served to.
            func.coalesce(o.agent_id, c.agent_id).label("agent_id"),
            s.rank,
            c.call_reason,
            s.logging_prob,
            s.p_adopt,
        )
        .select_from(_conversations_join())
        .order_by(c.served_at, c.call_id, s.rank),
        "nps": select(n.call_id, n.score, n.recorded_at.label("responded_at")).order_by(
            n.recorded_at, n.call_id
        ),
    }


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _write_table(
    path: Path, name: str, batches: Iterator[Sequence[Row[Any]]], fmt: Literal["csv", "parquet"]
) -> int:
    columns = _EXPORT_COLUMNS[name]
    timestamps = [i for i, t in enumerate(columns.values()) if pa.types.is_timestamp(t)]
    partial = path.with_name(path.name + ".partial")
    rows_written = 0
    try:
        if fmt == "csv":
            with partial.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                for batch in batches:
                    for row in batch:
                        values: list[Any] = list(row)
                        for i in timestamps:
                            if values[i] is not None:
                                # 2026-08-15 10:30:00 (microseconds only when there are some)
                                values[i] = _naive_utc(values[i]).isoformat(sep=" ")
                        writer.writerow(values)
                    rows_written += len(batch)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            schema = pa.schema(list(columns.items()))
            with pq.ParquetWriter(partial, schema) as parquet:
                for batch in batches:
                    data: dict[str, list[Any]] = {key: [] for key in columns}
                    for row in batch:
                        for key, value in zip(columns, row, strict=True):
                            data[key].append(_naive_utc(value) if isinstance(value, datetime) else value)
                    parquet.write_table(pa.table(data, schema=schema))
                    rows_written += len(batch)
                if rows_written == 0:
                    parquet.write_table(schema.empty_table())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows_written


# ---------------------------------------------------------------------------------------------
# Local buffer


class DecisionBuffer:
    """Decisions the store could not take yet, one JSON line each on local disk, until `replay`.

    Safe across threads and processes sharing the file (an exclusive lock file beside it). A line
    that cannot be read back, or a decision the store refuses as invalid, goes to `<path>.rejected`
    rather than blocking the rest: nothing is lost, nothing is replayed forever.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(self.path.name + ".rejected")

    @contextmanager
    def _locked(self, suffix: str = ".lock") -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(self.path.name + suffix).open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def append(self, decision: CallDecision) -> None:
        """Adds a decision as one JSON line, flushed and fsynced before returning.

        Checked by the store's rules first (DataError), so the buffer never holds what the store refuses.
        """
        self.append_many([decision])

    def append_many(self, decisions: Sequence[CallDecision]) -> None:
        """Adds decisions as JSON lines, in order, with one fsync (each checked as `append` does).

        Raises OSError when the disk refuses them (full, read-only): then none is counted as added.
        """
        for decision in decisions:
            _check_decision(decision)
        self.append_lines(b"".join(decision_line(d) for d in decisions))

    def append_lines(self, lines: bytes) -> None:
        """Adds JSON lines as they are (a journal segment's), flushed and fsynced before returning."""
        if not lines:
            return
        with self._locked(), self.path.open("ab") as handle:
            size = handle.tell()
            try:
                handle.write(lines if lines.endswith(b"\n") else lines + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                handle.truncate(size)  # nothing half added: the caller keeps them and tries again
                raise

    def pending(self) -> int:
        """How many decisions wait in the buffer."""
        with self._locked():
            return len(self._read_lines()[0])

    def _read_lines(self) -> tuple[list[str], int]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        # A line torn by a crash mid-write may end inside a character: it is set aside, not fatal.
        text_ = data.decode("utf-8", errors="replace")
        return [line for line in text_.splitlines() if line.strip()], len(data)

    def replay(self, store: FeedbackStore) -> int:
        """Logs every buffered decision into the store, then removes them from the buffer; returns how many.

        `log_decision` is idempotent, so a crash halfway only means some are logged twice to no effect.
        If the store is unavailable the file is left as it was and UnavailableError is raised.
        Decisions appended while the replay runs stay for the next one.
        """
        # One replay at a time (it alone shortens the file); appends only wait for the short swaps.
        with self._locked(".replay.lock"):
            return self._replay(store)

    def _replay(self, store: FeedbackStore) -> int:
        with self._locked():
            lines, size = self._read_lines()
        if not lines:
            return 0
        rejected: list[str] = []
        readable: list[tuple[str, CallDecision]] = []
        for line in lines:
            try:
                readable.append((line, decision_from_json(json.loads(line))))
            except (ValueError, KeyError, TypeError) as exc:
                rejected.append(json.dumps({"line": line, "error": f"unreadable: {exc}"}))
        logged = 0
        for start in range(0, len(readable), REPLAY_BATCH):
            batch = readable[start : start + REPLAY_BATCH]
            try:
                # One transaction per batch: a few thousand buffered decisions replay in seconds.
                store.log_decisions([decision for _, decision in batch])
                logged += len(batch)
                continue
            except (DataError, ConflictError):
                pass  # one at a time below, so the one at fault is set aside and the rest logged
            for line, decision in batch:
                try:
                    store.log_decision(decision)
                except (DataError, ConflictError) as exc:
                    rejected.append(json.dumps({"line": line, "error": str(exc)}))
                    continue
                logged += 1
        with self._locked():
            if rejected:
                with self.rejected_path.open("a", encoding="utf-8") as handle:
                    handle.write("".join(f"{item}\n" for item in rejected))
                    handle.flush()
                    os.fsync(handle.fileno())
            # Keep whatever was appended after the read; swap the file atomically.
            rest = self.path.read_bytes()[size:]
            if rest:
                temp = self.path.with_name(self.path.name + ".tmp")
                with temp.open("wb") as handle:
                    handle.write(rest)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, self.path)
            else:
                self.path.unlink()
            _fsync_dir(self.path.parent)
        return logged


def decision_line(decision: CallDecision) -> bytes:
    """A decision as one JSON line (`decision_to_json`), as the buffer and the journal hold it."""
    return orjson.dumps(decision_to_json(decision)) + b"\n"


class DecisionJournal:
    """Every decision answered, appended to a local file before the answer leaves: what a restart
    replays after the process died with decisions not yet in the store (`kill -9`, a crash).

    One `os.write` on an O_APPEND descriptor per decision, no fsync: the bytes are in the kernel's page
    cache when the call returns, so they survive the process (not a power cut: the last few seconds of
    decisions, until the kernel writes them back, may be lost then). Segments `<pid>-<n>.jsonl` in
    `folder`; the owner holds an exclusive `flock` on each open one, so a process starting later takes
    over (`adopt_orphans`) exactly the segments whose owner is gone. The owner rotates to a new segment
    (`rotate`) and removes a closed one once every decision in it is stored (`remove`).

    Not thread-safe by itself: the caller serialises `append` and `rotate` (DecisionLog holds its lock).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fd = -1
        self._path: Path | None = None
        self._count = 0
        self._adopted: dict[Path, int] = {}  # segments taken over from a dead process: their locked fd
        self.bytes_written = 0

    def adopt_orphans(self) -> list[Path]:
        """The segments no living process holds (left by one that died), oldest first, now locked by
        this journal until `remove`d; call before `open`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        orphans: list[tuple[float, Path]] = []
        for path in self.folder.glob("*.jsonl"):
            if path in self._adopted:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # its owner is alive
                continue
            self._adopted[path] = fd
            orphans.append((os.fstat(fd).st_mtime, path))
        return [path for _, path in sorted(orphans)]

    def open(self) -> None:
        """Starts a new segment for `append` (raises OSError when the folder cannot take it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count += 1
        path = self.folder / f"{os.getpid()}-{self._count:06d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd, self._path, self.bytes_written = fd, path, 0

    def append(self, line: bytes) -> None:
        """Appends one decision's line (`decision_line`); raises OSError (disk full, no segment)."""
        written = os.write(self._fd, line)
        if written != len(line):  # a short write: the disk is full; the torn line is skipped on replay
            raise OSError(f"journal {self._path}: wrote {written} of {len(line)} bytes")
        self.bytes_written += written

    def rotate(self) -> Path | None:
        """Closes the current segment (its path is returned, to `remove` once all of it is stored) and
        opens a new one. On OSError the current segment stays in use."""
        old_fd, old_path = self._fd, self._path
        self.open()
        if old_fd >= 0:
            os.close(old_fd)
        return old_path

    def remove(self, path: Path) -> None:
        """Deletes a closed (or adopted) segment whose decisions are all stored or in the buffer."""
        path.unlink(missing_ok=True)
        fd = self._adopted.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> Path | None:
        """Closes the current segment and returns its path (removed by the caller once stored)."""
        path = self._path
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._path, self.bytes_written = -1, None, 0
        return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def decision_to_json(decision: CallDecision) -> dict[str, Any]:
    """A decision as plain JSON values (served_at in ISO 8601, feature vectors as base64 float64 bytes).

    Version 2. Version 1 (before the feedback store kept the cardholder's features once per call) held
    each suggestion's whole vector as a list with NaN and ±inf as null; `decision_from_json` reads both.
    """
    return {
        "v": 2,
        "call_id": decision.call_id,
        "cardholder_id": decision.cardholder_id,
        "call_reason": decision.call_reason,
        "model_version": decision.model_version,
        "profile_as_of": decision.profile_as_of,
        "served_at": decision.served_at.isoformat(),
        "note": decision.note,
        "agent_id": decision.agent_id,
        "holder_features": base64.b64encode(decision.holder_features).decode("ascii"),
        "suggestions": [
            {
                "suggestion_id": s.suggestion_id,
                "rank": s.rank,
                "benefit_id": s.benefit_id,
                "benefit_name": s.benefit_name,
                "talking_point": s.talking_point,
                "reasons": list(s.reasons),
                "value_usd": s.value_usd,
                "score": s.score,
                "p_adopt": s.p_adopt,
                "logging_prob": s.logging_prob,
                "pair_features": base64.b64encode(s.pair_features).decode("ascii"),
            }
            for s in decision.suggestions
        ],
    }


def decision_from_json(body: Mapping[str, Any]) -> CallDecision:
    """The inverse of `decision_to_json`; raises KeyError, TypeError or ValueError on a malformed body."""
    version = body.get("v")
    if version not in (1, 2):
        raise ValueError(f"unknown buffer record version {version!r}")
    if version == 1:
        # A vector kept whole on its suggestion and none on the call is exact too: only more bytes.
        holder = b""
        pairs = [feature_bytes(_features_from_json(s["features"])) for s in body["suggestions"]]
    else:
        holder = base64.b64decode(body["holder_features"], validate=True)
        pairs = [base64.b64decode(s["pair_features"], validate=True) for s in body["suggestions"]]
    return CallDecision(
        call_id=body["call_id"],
        cardholder_id=body["cardholder_id"],
        call_reason=body["call_reason"],
        model_version=body["model_version"],
        profile_as_of=body["profile_as_of"],
        served_at=datetime.fromisoformat(body["served_at"]),
        note=body["note"],
        agent_id=body["agent_id"],
        suggestions=tuple(
            ShownSuggestion(
                suggestion_id=s["suggestion_id"],
                rank=s["rank"],
                benefit_id=s["benefit_id"],
                benefit_name=s["benefit_name"],
                talking_point=s["talking_point"],
                reasons=tuple(s["reasons"]),
                value_usd=s["value_usd"],
                score=s["score"],
                p_adopt=s["p_adopt"],
                logging_prob=s["logging_prob"],
                pair_features=pair,
            )
            for s, pair in zip(body["suggestions"], pairs, strict=True)
        ),
        holder_features=holder,
    )


__all__ = [
    "CallDecision",
    "ContactEvent",
    "DecisionBuffer",
    "DecisionJournal",
    "ExportCounts",
    "FeedbackStore",
    "NpsRecord",
    "OutcomeRecord",
    "ShownSuggestion",
    "decision_from_json",
    "decision_line",
    "decision_to_json",
    "feature_bytes",
    "feature_values",
    "parse_store_url",
]
