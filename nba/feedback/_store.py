"""Feedback store: decisions shown to agents, their outcomes and NPS → a database → the training tables.

The API logs every decision it serves (`log_decision`), the agent records what happened to each
suggestion (`record_outcome`) and the survey its NPS (`record_nps`); `export` writes `calls`,
`conversations` and `nps` in the data contract so the next training run learns from them.

A call is open for outcome changes until its NPS is recorded or `call_open` has passed since it
was served; after that an outcome can no longer change (ConflictError). Outcomes keep their
history: a change adds a row and marks it current.

SQLite (`sqlite:///path`) serves one machine, PostgreSQL (`postgresql://...`, driven by psycopg 3)
several. Every database failure — down, unreachable, locked beyond the busy timeout — is raised as
UnavailableError with a one-line message that never shows the URL's password. `DecisionBuffer`
(`_buffer`) keeps decisions on local disk while the database is down and replays them later.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, StaticPool

from nba.errors import (
    CallNotFoundError,
    ConflictError,
    DataError,
    SuggestionNotFoundError,
    UnavailableError,
)
from nba.feedback._export import EXPORT_BATCH_ROWS, EXPORT_COLUMNS, ExportCounts, export_queries, write_table
from nba.feedback._records import (
    OUTCOME_COLUMNS,
    CallDecision,
    Claim,
    ContactEvent,
    NpsRecord,
    OutcomeRecord,
    check_decision,
)
from nba.feedback._rows import (
    insert_decision_if_new,
    insert_decisions,
    keep_as_repeat,
    outcome_record,
    outcome_target,
    read_back,
    read_decision,
    stored_call_ids,
    suggestion_ids_taken,
)
from nba.feedback._schema import (
    calls_table,
    conversations_join,
    json_dumps,
    nps_table,
    outcomes_table,
    suggestion_repeats_table,
    suggestions_table,
)
from nba.feedback._urls import parse_store_url, redact_url
from nba.vocab import OUTCOMES, UNMARKED

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


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
            self.url, connect_args=connect_args, pool_pre_ping=True, json_serializer=json_dumps, **pooling
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
                json_serializer=json_dumps,
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
            engine = create_engine(self.url, json_serializer=json_dumps, **pooling)

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
        reason = redact_url(_first_line(exc))
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
    def _claim_connection(self) -> Iterator[Connection]:
        """Where a claim runs: on PostgreSQL a pooled connection in autocommit (the claim is one statement,
        `insert_decision_if_new`, atomic by itself: a BEGIN and a COMMIT would be two more round trips on
        the request path); on SQLite a write transaction, as its two statements need."""
        if self._engine.dialect.name != "postgresql":
            with self._transaction(write=True) as conn:
                yield conn
            return
        with self._guard(), self._engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

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
        check_decision(decision)
        with self._suggestion_ids_checked(decision), self._transaction(write=True) as conn:
            if insert_decision_if_new(conn, decision):
                return read_back(decision)
            stored = read_decision(conn, decision.call_id)
            assert stored is not None  # the call id was taken: its call is there
            keep_as_repeat(conn, stored, decision)
        return stored

    def claim_decision(self, decision: CallDecision) -> Claim:
        """The decision the store holds for `decision`'s call id: `decision` itself, stored now, when the
        call id was free; else the one stored first (`decision` is then dropped, not kept as a repeat: it
        is never shown), with its outcomes so far and whether it is closed: one round trip answers a
        first request and a repeat alike.

        The call id's primary key arbitrates: of two processes claiming one call id at once, one insert
        commits and the other inserts nothing and reads the winner's. The service claims a call id its
        client supplied before answering, so concurrent first requests on two replicas get one answer.
        Raises as `log_decision`.
        """
        check_decision(decision)
        with self._suggestion_ids_checked(decision), self._claim_connection() as conn:
            if insert_decision_if_new(conn, decision):
                return Claim(read_back(decision), True)
            stored = read_decision(conn, decision.call_id)
            state = self._call_state(conn, decision.call_id)
        assert stored is not None and state is not None  # the call id was taken: its call is there
        return Claim(stored, False, *state)

    @contextmanager
    def _suggestion_ids_checked(self, decision: CallDecision) -> Iterator[None]:
        """ConflictError naming a suggestion id of `decision` that belongs to another call, when the insert
        inside fails on one (read in a transaction of its own: the failed one is unusable)."""
        try:
            yield
        except sa_exc.IntegrityError:
            with self._transaction() as conn:
                raise suggestion_ids_taken(conn, decision) from None

    def log_decisions(self, decisions: Sequence[CallDecision]) -> int:
        """Stores many served decisions in one transaction (the service's background writer); returns how
        many were new. The same idempotence as `log_decision`: calls already stored are skipped.

        On a conflict inside the batch (a suggestion id taken by another call) it falls back to one
        `log_decision` per decision, so the error names the decision at fault and the rest are stored.
        """
        for decision in decisions:
            check_decision(decision)
        if not decisions:
            return 0
        try:
            with self._transaction(write=True) as conn:
                stored = stored_call_ids(conn, dict.fromkeys(d.call_id for d in decisions))
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
                    insert_decisions(conn, list(new.values()))
                for decision in repeats:
                    first = new.get(decision.call_id) or read_decision(conn, decision.call_id)
                    assert first is not None
                    keep_as_repeat(conn, first, decision)
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
            return read_decision(conn, call_id)

    def call_state(self, call_id: str, *, fast: bool = False) -> tuple[dict[str, str], bool] | None:
        """A stored call's current outcomes (suggestion_id → outcome, for the suggestions that have one) and
        whether it is closed (its NPS is recorded or `call_open` has passed), read in one transaction; None
        for an unknown call. `fast` as in `find_decision`."""
        with self._transaction(fast=fast) as conn:
            return self._call_state(conn, call_id)

    def _call_state(self, conn: Connection, call_id: str) -> tuple[dict[str, str], bool] | None:
        row = conn.execute(
            select(calls_table.c.served_at, calls_table.c.closed_at).where(calls_table.c.call_id == call_id)
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
        SuggestionNotFoundError for an unknown suggestion.
        """
        if outcome not in OUTCOMES:
            raise DataError(f"`outcome` must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        if decline_reason is not None and outcome != "declined":
            raise DataError(f"`decline_reason` is only for outcome 'declined', got outcome {outcome!r}")
        with self._transaction(write=True) as conn:
            found = conn.execute(outcome_target(suggestion_id)).one_or_none()
            if found is None:
                stored_id = conn.scalar(
                    select(suggestion_repeats_table.c.suggestion_id).where(
                        suggestion_repeats_table.c.repeat_id == suggestion_id
                    )
                )
                if stored_id is not None:  # a repeat's suggestion: the outcome is the stored one's
                    suggestion_id = str(stored_id)
                    found = conn.execute(outcome_target(suggestion_id)).one_or_none()
            if found is None:
                raise SuggestionNotFoundError(f"unknown suggestion_id {suggestion_id!r}")
            current = conn.execute(
                select(outcomes_table).where(
                    outcomes_table.c.suggestion_id == suggestion_id, outcomes_table.c.is_current
                )
            ).one_or_none()
            if current is not None and current.outcome == outcome:
                return outcome_record(found, current._mapping, suggestion_id, changed=False, stored=False)
            if self._closed_since(found.served_at, found.closed_at) is not None:
                closed = self._closed_message(found.call_id, found.served_at, found.closed_at)
                stays = (
                    f"its outcome {current.outcome!r} (recorded {_show_time(current.recorded_at)}) stands"
                    if current is not None
                    else f"it was never marked, so it stays {UNMARKED!r}"
                )
                raise ConflictError(
                    f"cannot record {outcome!r} for suggestion {suggestion_id!r}: {closed}; {stays}"
                )
            if current is not None:
                conn.execute(
                    update(outcomes_table).where(outcomes_table.c.id == current.id).values(is_current=False)
                )
            values = dict(zip(OUTCOME_COLUMNS, (outcome, decline_reason, agent_id, self._now()), strict=True))
            conn.execute(
                outcomes_table.insert().values(suggestion_id=suggestion_id, is_current=True, **values)
            )
        return outcome_record(found, values, suggestion_id, changed=current is not None, stored=True)

    def record_nps(self, call_id: str, score: int) -> NpsRecord:
        """Records a call's NPS (0–10) and closes the call for outcome changes.

        The same score again writes nothing and returns the stored record; a different score raises
        ConflictError. Raises DataError for a score outside 0–10, CallNotFoundError for an unknown call.
        """
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
            raise DataError(f"`score` must be an int in [0, 10], got {score!r}")
        with self._transaction(write=True) as conn:
            call = conn.execute(
                select(calls_table.c.closed_at).where(calls_table.c.call_id == call_id).with_for_update()
            ).one_or_none()
            if call is None:
                raise CallNotFoundError(f"unknown call_id {call_id!r}")
            stored = conn.execute(select(nps_table).where(nps_table.c.call_id == call_id)).one_or_none()
            if stored is not None:
                if stored.score != score:
                    raise ConflictError(
                        f"call {call_id!r} already has NPS {stored.score} (recorded "
                        f"{_show_time(stored.recorded_at)}); got {score}"
                    )
                return NpsRecord(call_id, stored.score, stored.recorded_at, stored=False)
            now = self._now()
            conn.execute(nps_table.insert().values(call_id=call_id, score=score, recorded_at=now))
            if call.closed_at is None:
                conn.execute(
                    update(calls_table).where(calls_table.c.call_id == call_id).values(closed_at=now)
                )
        return NpsRecord(call_id, score, now)

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
                .select_from(conversations_join())
                .where(calls_table.c.served_at >= since, outcomes_table.c.outcome.is_not(None))
                .order_by(calls_table.c.served_at, calls_table.c.call_id, suggestions_table.c.rank)
            ).all()
        return tuple(
            (row.cardholder_id, row.suggestion_id, ContactEvent(row.benefit_id, row.outcome, row.served_at))
            for row in rows
        )

    def outcomes_after(
        self, after_id: int | None, served_since: datetime, recorded_since: datetime | None = None
    ) -> tuple[tuple[int, str, str, ContactEvent], ...]:
        """(outcome id, cardholder_id, suggestion_id, event) for every outcome row with an id above
        `after_id` (all when None) recorded at or after `recorded_since` (when given), of calls served at or
        after `served_since`, in id order: replaced outcomes too, so applying them in order leaves each
        suggestion's current one. What the service's workers and replicas read from each other several
        times a second (by the primary key; by the index on `recorded_at` before the first row is seen).
        """
        for name, value in (("served_since", served_since), ("recorded_since", recorded_since)):
            if value is not None and value.tzinfo is None:
                raise DataError(f"`{name}` must be timezone-aware, got {value.isoformat()}")
        query = (
            select(
                outcomes_table.c.id,
                calls_table.c.cardholder_id,
                suggestions_table.c.suggestion_id,
                suggestions_table.c.benefit_id,
                outcomes_table.c.outcome,
                calls_table.c.served_at,
            )
            .select_from(outcomes_table.join(suggestions_table).join(calls_table))
            .where(calls_table.c.served_at >= served_since)
            .order_by(outcomes_table.c.id)
        )
        if after_id is not None:
            query = query.where(outcomes_table.c.id > after_id)
        if recorded_since is not None:
            query = query.where(outcomes_table.c.recorded_at >= recorded_since)
        with self._transaction() as conn:
            rows = conn.execute(query).all()
        return tuple(
            (
                row.id,
                row.cardholder_id,
                row.suggestion_id,
                ContactEvent(row.benefit_id, row.outcome, row.served_at),
            )
            for row in rows
        )

    # -- export -----------------------------------------------------------------------------

    def export(self, out: Path, fmt: Literal["csv", "parquet"] = "csv") -> ExportCounts:
        """Writes `calls`, `conversations` and `nps` in the data contract into the folder `out`.

        `calls` has every call served (also those with nothing to suggest), `conversations` one row
        per suggestion shown with its current outcome (`unmarked` when never marked) and the
        model's `p_adopt` (an extra column), `nps` every
        answer. Timestamps are naive UTC (`2026-08-15 10:30:00`). The three tables are read in one
        transaction, so they agree with each other; each file is written beside its final name and
        renamed when complete. Raises DataError when the database has no feedback tables or `out`
        already holds a table in the other format (a data directory may not have both).
        """
        if fmt not in ("csv", "parquet"):
            raise DataError(f"`fmt` must be csv or parquet, got {fmt!r}")
        other = "parquet" if fmt == "csv" else "csv"
        for name in EXPORT_COLUMNS:
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
                for name, query in export_queries().items():
                    path = out / f"{name}.{fmt}"
                    result = conn.execution_options(yield_per=EXPORT_BATCH_ROWS).execute(query)
                    counts[name] = write_table(path, name, result.partitions(), fmt)
                    files.append(path)
        return ExportCounts(counts["calls"], counts["conversations"], counts["nps"], tuple(files))


def _show_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:g} minute{'s' if minutes != 1 else ''}"
