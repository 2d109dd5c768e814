"""Decision log: decisions shown → the store, in the background; outcomes → the contact policy.

Suggestions never wait for the database beyond a deadline. A decision is appended to a local journal
before it is answered (a restart replays what the store does not have: a crash loses nothing),
remembered in memory (a repeated request for the same call gets the same answer) and written by one
background thread. While the database is down, decisions go to a local buffer file, and the same thread
migrates the schema if it never could, then replays the buffer, in order, once the database is back.
Requests never migrate nor replay: an outcome for a decision not stored yet waits for the writer
within its deadline, else is answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar

from api.errors import DATABASE_DOWN
from api.logs import get_logger
from api.metrics import Metrics
from nba.decision import RecentContact
from nba.errors import NbaError, NotFoundError, UnavailableError
from nba.feedback import (
    CallDecision,
    Claim,
    DecisionBuffer,
    DecisionJournal,
    FeedbackStore,
    NpsRecord,
    OutcomeRecord,
    decision_line,
)

T = TypeVar("T")

# Repeats of a call come within minutes; older ones are found in the store. ~4 KB a call held (the
# cardholder's feature columns once, not once per suggestion).
MAX_CACHED_CALLS: Final = 20_000
# How often the writer tries again while the database (or the disk) refuses: the buffer is replayed
# at most this long after the database is back (the target is 10 s).
RETRY_EVERY: Final = timedelta(seconds=2)
WRITE_BATCH: Final = 500
# The writer wakes this often (or at a full batch): one transaction for many calls instead of one per
# call, which would cost a commit and a thread switch on every request; and short bursts (at 500
# calls/s, ~1 ms of writing) rather than long ones that hold up requests behind them.
WRITE_EVERY_S: Final = 0.02
# A read of the store on the request path (a call's outcomes after a lost claim; the call itself when
# no claim can be made): past this the read counts as missing (late ones: nba_call_lookups_late_total).
LOOKUP_DEADLINE_S: Final = 0.005
# Look-ups waiting on PostgreSQL at once (each holds a thread and a connection of the fast pool); more
# are answered as new decisions at once: with the server paused they would only wait too.
MAX_LOOKUPS_IN_FLIGHT: Final = 4
# Claiming a call id the client supplied (the store's insert arbitrates between replicas): past this
# deadline, or with CLAIM_THREADS claims waiting, the call is answered as before claims (its decision
# queued for the writer; a concurrent first request elsewhere may then answer differently), and no
# claim is tried for CLAIM_BACKOFF_S: a paused or failing database costs one request the deadline.
CLAIM_DEADLINE_S: Final = 0.25
CLAIM_THREADS: Final = 8
CLAIM_BACKOFF_S: Final = 2.0
# Outcome and NPS posts: answered within this (503 + Retry-After past it). The agent panel gives up
# after 2 s.
FEEDBACK_DEADLINE_S: Final = 1.5
FEEDBACK_THREADS: Final = 8
# A journal segment is closed, and removed once all of it is stored, after this many bytes (~300 calls).
JOURNAL_SEGMENT_BYTES: Final = 1 << 20
POLL_S: Final = 0.005

# An outcome for a suggestion the store does not know, whose id says it was issued this recently (by
# another worker or replica: its writer has not stored it yet), is asked for again every
# NOT_FOUND_RETRY_S until the deadline (then 503 + Retry-After), rather than answered 404.
ISSUED_RECENTLY: Final = timedelta(seconds=30)
NOT_FOUND_RETRY_S: Final = 0.025
NOT_STORED_YET: Final = "feedback database unavailable: the call is not stored yet; try again"
NO_ANSWER: Final = "feedback database unavailable: it did not answer in time"


class ContactLedger:
    """Outcomes recorded since the profile snapshot, per cardholder: one current outcome per suggestion."""

    def __init__(self) -> None:
        self._by_holder: dict[str, dict[str, tuple[datetime, RecentContact]]] = {}
        self._lock = threading.Lock()

    def record(
        self, cardholder_id: str, suggestion_id: str, benefit_id: str, outcome: str, at: datetime
    ) -> None:
        with self._lock:
            self._by_holder.setdefault(cardholder_id, {})[suggestion_id] = (
                at,
                RecentContact(benefit_id, outcome),
            )

    def recent(self, cardholder_id: str, since: datetime) -> list[RecentContact]:
        events = self._by_holder.get(cardholder_id)
        if not events:
            return []
        return [contact for at, contact in list(events.values()) if at >= since]

    def forget_before(self, since: datetime) -> None:
        """Drops what a newer profile snapshot already contains."""
        with self._lock:
            for holder in list(self._by_holder):
                kept = {k: v for k, v in self._by_holder[holder].items() if v[0] >= since}
                if kept:
                    self._by_holder[holder] = kept
                else:
                    del self._by_holder[holder]


class DecisionLog:
    """Decisions shown to agents: journaled, kept in memory for repeats, written to the store by one
    background thread; and the request path's bounded reads and writes of the store."""

    def __init__(
        self,
        store: FeedbackStore,
        buffer: DecisionBuffer,
        metrics: Metrics,
        clock: Callable[[], datetime],
        max_cached: int = MAX_CACHED_CALLS,
        journal: DecisionJournal | None = None,
    ) -> None:
        self.store = store
        self.buffer = buffer
        self.metrics = metrics
        self.clock = clock
        self.max_cached = max_cached
        self.journal = journal
        self._cache: OrderedDict[str, CallDecision] = OrderedDict()
        self._pending: deque[CallDecision] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._next_retry: datetime | None = None
        self._next_write: datetime | None = None
        # Decisions answered but not yet in the store: call id → True once in the buffer file; and
        # their suggestion ids → call id. An outcome for one of them waits for the writer.
        self._unstored_calls: dict[str, bool] = {}
        self._unstored_suggestions: dict[str, str] = {}
        self._replaying = False
        # Journal bookkeeping: decisions added and decisions written (to the store or the buffer), in
        # order; a closed segment is removed once everything added before it closed is written.
        self._added = 0
        self._done = 0
        self._closed_segments: deque[tuple[Path, int]] = deque()
        self._journal_failing = False
        self._writes_failing = False
        self._feedback_pool = ThreadPoolExecutor(FEEDBACK_THREADS, thread_name_prefix="nba-feedback")
        self._lookup_pool = ThreadPoolExecutor(MAX_LOOKUPS_IN_FLIGHT, thread_name_prefix="nba-lookup")
        self._lookups_in_flight = 0
        self._claim_pool = ThreadPoolExecutor(CLAIM_THREADS, thread_name_prefix="nba-claim")
        self._claims_in_flight = 0
        self._claims_paused_until = 0.0
        # Reading the buffer file takes a lock and a read: remember whether it may hold anything instead.
        self._buffer_in_use = self.buffer.pending() > 0
        self.metrics.watch(
            "nba_decision_buffer_pending",
            lambda: float(self.buffer.pending()) if self._buffer_in_use else 0.0,
        )
        self.metrics.watch("nba_decisions_pending", lambda: float(len(self._pending)))

    def open_journal(self) -> int:
        """At start-up: what a process that died left in the journal goes to the buffer file (the writer
        replays it), and a new segment is opened. Returns how many bytes were taken over."""
        if self.journal is None:
            return 0
        taken = 0
        try:
            for path in self.journal.adopt_orphans():
                lines = path.read_bytes()
                self.buffer.append_lines(lines)
                self.journal.remove(path)
                taken += len(lines)
            self.journal.open()
        except OSError as exc:
            get_logger().error("decision journal unavailable", extra={"reason": str(exc)})
            self._journal_failing = True
        if taken:
            self._buffer_in_use = True
            get_logger().info("decisions left by a previous process will be replayed", extra={"bytes": taken})
        return taken

    # --- the request path -------------------------------------------------------------------------
    def cached(self, call_id: str) -> CallDecision | None:
        with self._cond:
            return self._cache.get(call_id)

    def forget_cached(self) -> None:
        """Forgets the decisions held in memory for repeats: a call asked again is then looked up in the
        store, as after a restart or on another replica."""
        with self._cond:
            self._cache.clear()

    async def call_state(self, call_id: str) -> tuple[dict[str, str], bool]:
        """A call's current outcomes and whether it is closed, from the store within the look-up's
        deadline; none and open when the store does not know the call yet or does not answer in time
        (no outcome can have been recorded then: an outcome waits for its decision to be stored)."""
        state = await self._read_fast(functools.partial(self.store.call_state, call_id, fast=True))
        return state if state is not None else ({}, False)

    async def _read_fast(self, read: Callable[[], T | None]) -> T | None:
        """`read()` within LOOKUP_DEADLINE_S, else None. SQLite inline (its fast pool's busy timeout is
        the deadline; a local primary-key read costs less than a thread hop); PostgreSQL on a worker
        thread, since a paused server never answers and only a deadline in this thread holds."""
        if not self.store.migrated:  # down since start-up: no schema to read yet (the writer migrates)
            return None
        if self.store.reads_are_local:
            try:
                return read()
            except UnavailableError:
                self.metrics.lookups_late.inc()
                return None
        if self._lookups_in_flight >= MAX_LOOKUPS_IN_FLIGHT:
            self.metrics.lookups_late.inc()
            return None
        self._lookups_in_flight += 1
        future = self._lookup_pool.submit(read)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._lookup_done))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), LOOKUP_DEADLINE_S)
        except (TimeoutError, UnavailableError):
            self.metrics.lookups_late.inc()
            return None

    def _lookup_done(self) -> None:
        self._lookups_in_flight -= 1

    async def claim(self, decision: CallDecision) -> Claim:
        """The decision to answer for a call id the client supplied and this worker does not know
        (`FeedbackStore.claim_decision`): `decision`, stored now when the store held none for the call id;
        else the one stored first, with its outcomes so far. When the store cannot say within
        CLAIM_DEADLINE_S (or is down, or its buffer holds decisions), `decision` is queued for the writer as
        `add` does and answered: then the store keeps the first one written and the other as a repeat; but
        a call the store already holds, read within LOOKUP_DEADLINE_S, is still answered as first stored."""
        if (
            not self.store.migrated
            or self._buffer_in_use
            or self._claims_in_flight >= CLAIM_THREADS
            or time.monotonic() < self._claims_paused_until
        ):
            call_id = decision.call_id
            stored = await self._read_fast(functools.partial(self.store.find_decision, call_id, fast=True))
            if stored is not None:
                self.remember(stored)
                return Claim(stored, False, *await self.call_state(call_id))
            self.add(decision)
            return Claim(decision, True)
        self._claims_in_flight += 1
        future = self._claim_pool.submit(self.store.claim_decision, decision)
        loop = asyncio.get_running_loop()

        def done(_: Future[Claim]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed before a late claim ended
                loop.call_soon_threadsafe(self._claim_done)

        future.add_done_callback(done)
        try:
            claim = await asyncio.wait_for(asyncio.wrap_future(future), CLAIM_DEADLINE_S)
        except (TimeoutError, UnavailableError):
            # The claim may still land: then the writer's write of `decision` finds it stored (a replay).
            self._claims_paused_until = time.monotonic() + CLAIM_BACKOFF_S
            self.metrics.claims_late.inc()
            self.add(decision)
            return Claim(decision, True)
        self.remember(claim.decision)
        return claim

    def _claim_done(self) -> None:
        self._claims_in_flight -= 1

    def remember(self, decision: CallDecision) -> None:
        """Keeps a stored decision in memory for repeats (nothing to write)."""
        with self._cond:
            self._cache[decision.call_id] = decision
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)

    def add(self, decision: CallDecision) -> None:
        """Journals the decision (before it is answered), remembers it and queues it for the writer."""
        line = decision_line(decision) if self.journal is not None else b""
        with self._cond:
            if self.journal is not None:
                try:
                    self.journal.append(line)
                    self._journal_failing = False
                except OSError as exc:
                    # The answer still goes out (the decision is in memory, written by the writer);
                    # only a crash before then would lose it. Logged once per failing spell.
                    if not self._journal_failing:
                        get_logger().error("decision journal write failed", extra={"reason": str(exc)})
                    self._journal_failing = True
            self._cache[decision.call_id] = decision
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            self._pending.append(decision)
            self._added += 1
            self._unstored_calls[decision.call_id] = False
            for s in decision.suggestions:
                self._unstored_suggestions[s.suggestion_id] = decision.call_id
            if len(self._pending) >= WRITE_BATCH:
                self._cond.notify_all()

    async def record_outcome(
        self, suggestion_id: str, outcome: str, decline_reason: str | None, agent_id: str | None
    ) -> OutcomeRecord:
        """`FeedbackStore.record_outcome` within FEEDBACK_DEADLINE_S, once the suggestion's decision is
        stored; UnavailableError (503) when that or the database takes longer."""
        deadline = time.monotonic() + FEEDBACK_DEADLINE_S
        await self._until_stored(self._unstored_suggestions.get(suggestion_id), deadline)
        write = functools.partial(
            self.store.record_outcome,
            suggestion_id,
            outcome,
            decline_reason=decline_reason,
            agent_id=agent_id,
        )
        while True:
            try:
                return await self._in_time(write, deadline)
            except NotFoundError:
                if self._buffer_in_use or self.buffer.path.exists():  # a worker's buffer may hold it
                    raise UnavailableError(NOT_STORED_YET) from None
                if not issued_within(suggestion_id, self.clock(), ISSUED_RECENTLY):
                    raise
                # Served a moment ago by another worker or replica, whose writer stores it within
                # WRITE_EVERY_S or so: asked again until the deadline.
                if time.monotonic() + NOT_FOUND_RETRY_S >= deadline:
                    raise UnavailableError(NOT_STORED_YET) from None
                await asyncio.sleep(NOT_FOUND_RETRY_S)

    async def record_nps(self, call_id: str, score: int) -> NpsRecord:
        """`FeedbackStore.record_nps` with the same deadline and waiting as `record_outcome`."""
        deadline = time.monotonic() + FEEDBACK_DEADLINE_S
        await self._until_stored(call_id, deadline)
        try:
            return await self._in_time(functools.partial(self.store.record_nps, call_id, score), deadline)
        except NotFoundError:
            if self._buffer_in_use:
                raise UnavailableError(NOT_STORED_YET) from None
            raise

    async def _until_stored(self, call_id: str | None, deadline: float) -> None:
        """Waits while the call's decision is queued for the writer or being replayed; UnavailableError
        at the deadline, or at once when it waits in the buffer for a database that is down or the
        writer could write it nowhere."""
        if self._thread is None and call_id in self._unstored_calls:
            self.write_pending()  # no background writer (tests drive it by hand): write the queue now
        while call_id is not None and call_id in self._unstored_calls:
            in_buffer = self._unstored_calls.get(call_id, False)
            # The writer backs off after neither the database nor the disk took a batch: no use waiting.
            refused = self._next_write is not None or (in_buffer and not self._replaying)
            if refused or time.monotonic() >= deadline:
                raise UnavailableError(NOT_STORED_YET)
            await asyncio.sleep(POLL_S)

    async def _in_time(self, call: Callable[[], T], deadline: float) -> T:
        """`call()` on a feedback thread, answered by the deadline (UnavailableError past it: a paused
        database holds the thread, not the request)."""
        if not self.store.migrated:  # the writer migrates once the database is back; never a request
            raise UnavailableError(DATABASE_DOWN)
        future = self._feedback_pool.submit(call)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise UnavailableError(NO_ANSWER) from None

    # --- writing (the writer thread; by hand in tests) -------------------------------------------
    def write_pending(self) -> int:
        """Writes what is queued, in batches, to the store or, while it is down, to the buffer file.

        A batch that neither takes (the disk refuses too) goes back to the front of the queue and is
        tried again after RETRY_EVERY. Returns how many were written.
        """
        written = 0
        now = self.clock()
        if self._next_write is not None and now < self._next_write:
            return 0
        while True:
            with self._cond:
                if not self._pending:
                    break
                batch = [self._pending.popleft() for _ in range(min(WRITE_BATCH, len(self._pending)))]
            try:
                with self.metrics.decision_write_seconds.time():
                    self._write_batch(batch)
            except BaseException as exc:
                with self._cond:
                    self._pending.extendleft(reversed(batch))
                self._next_write = self.clock() + RETRY_EVERY
                if isinstance(exc, UnavailableError):  # neither the database nor the disk took them
                    return written
                raise
            with self._cond:
                self._done += len(batch)
            written += len(batch)
        self._next_write = None
        self._trim_journal()
        return written

    def _write_batch(self, batch: list[CallDecision]) -> None:
        if not self._buffer_in_use and self._migrated():
            try:
                self.store.log_decisions(batch)
                self._stored(batch)
                self.metrics.decisions_written.labels(to="store").inc(len(batch))
                return
            except UnavailableError as exc:
                get_logger().warning("database unavailable; buffering decisions", extra={"reason": str(exc)})
                self._next_retry = self.clock() + RETRY_EVERY
            except NbaError:
                self._write_one_by_one(batch)  # one refused decision must not take the batch with it
                return
        # Behind earlier buffered decisions (or with the database down): keep the order, lose nothing.
        try:
            self.buffer.append_many(batch)
            self._writes_failing = False
        except OSError as exc:
            if not self._writes_failing:
                get_logger().error(
                    "decision buffer write failed; decisions kept in memory", extra={"reason": str(exc)}
                )
            self._writes_failing = True
            raise UnavailableError(DATABASE_DOWN) from None
        self._buffer_in_use = True
        with self._cond:
            for decision in batch:
                self._unstored_calls[decision.call_id] = True
        self.metrics.decisions_written.labels(to="buffer").inc(len(batch))

    def _migrated(self) -> bool:
        """Whether the schema is at head, migrating it first (at most every RETRY_EVERY) when the
        database was down at start-up. Only the writer thread and start-up migrate."""
        if self.store.migrated:
            return True
        now = self.clock()
        if self._next_retry is not None and now < self._next_retry:
            return False
        try:
            self.store.migrate()
        except UnavailableError:
            self._next_retry = now + RETRY_EVERY
            return False
        get_logger().info("feedback database migrated by the decision log writer")
        return True

    def _stored(self, decisions: list[CallDecision]) -> None:
        with self._cond:
            for decision in decisions:
                self._unstored_calls.pop(decision.call_id, None)
                for s in decision.suggestions:
                    self._unstored_suggestions.pop(s.suggestion_id, None)

    def _write_one_by_one(self, batch: list[CallDecision]) -> None:
        for decision in batch:
            try:
                self.store.log_decision(decision)
                self._stored([decision])
                self.metrics.decisions_written.labels(to="store").inc()
            except UnavailableError:
                self._buffer_in_use = True
                self.buffer.append(decision)
                with self._cond:
                    self._unstored_calls[decision.call_id] = True
                self.metrics.decisions_written.labels(to="buffer").inc()
            except NbaError as exc:
                self._stored([decision])  # refused for good: nothing to wait for
                get_logger().error("decision refused by the store", extra={"reason": str(exc)})

    def _trim_journal(self) -> None:
        """Closes a full journal segment and removes the closed ones whose decisions are all written."""
        journal = self.journal
        if journal is None:
            return
        if journal.bytes_written >= JOURNAL_SEGMENT_BYTES:
            with self._cond:
                try:
                    closed = journal.rotate()
                except OSError:
                    closed = None  # the disk refuses a new segment: the current one stays in use
                if closed is not None:
                    self._closed_segments.append((closed, self._added))
        while self._closed_segments and self._closed_segments[0][1] <= self._done:
            journal.remove(self._closed_segments.popleft()[0])

    def retry_buffer(self, force: bool = False) -> int:
        """Replays the buffer file into the store when it is due (or `force`); returns how many were
        written. The writer thread's job (and start-up's): never called on a request."""
        if not self._buffer_in_use:
            return 0
        now = self.clock()
        if not force and self._next_retry is not None and now < self._next_retry:
            return 0
        self._replaying = True
        try:
            if not self._migrated():
                return 0
            replayed = self.buffer.replay(self.store)
        except UnavailableError:
            self._next_retry = now + RETRY_EVERY
            return 0
        finally:
            self._replaying = False
        self._next_retry = None
        self._buffer_in_use = self.buffer.pending() > 0
        if not self._buffer_in_use:
            with self._cond:
                buffered = [call_id for call_id, in_buffer in self._unstored_calls.items() if in_buffer]
                for call_id in buffered:
                    del self._unstored_calls[call_id]
                self._unstored_suggestions = {
                    s: c for s, c in self._unstored_suggestions.items() if c in self._unstored_calls
                }
        get_logger().info("replayed buffered decisions", extra={"decisions": replayed})
        return replayed

    # --- the background thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nba-decision-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: len(self._pending) >= WRITE_BATCH or self._stop, timeout=WRITE_EVERY_S
                )
                stop = self._stop
            try:
                self.write_pending()
                self.retry_buffer()
                self._migrated()  # a database down at start-up is migrated once it is back
            except Exception:  # the writer must survive anything; the error is logged, decisions are kept
                get_logger().exception("decision log writer failed")
            if stop:
                return

    def stop(self) -> None:
        """Writes what is left, stops the thread and closes the journal (removed when all is written)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._next_write = None
        try:
            self.write_pending()
        except Exception:
            get_logger().exception("decision log: decisions left unwritten stay in the journal")
        if self.journal is not None:
            with self._cond:
                last = self.journal.close()
                if last is not None:
                    self._closed_segments.append((last, self._added))
            self._trim_journal()
        self._feedback_pool.shutdown(wait=False, cancel_futures=True)
        self._lookup_pool.shutdown(wait=False, cancel_futures=True)
        self._claim_pool.shutdown(wait=False, cancel_futures=True)


class DatabaseHealth:
    """What /readyz says about the feedback database, within its 100 ms whatever the database does: a
    ping runs on a thread of its own and the answer is the last one known (a ping still waiting after
    PING_STALE_S counts as unreachable)."""

    PING_WAIT_S: Final = 0.05
    PING_STALE_S: Final = 1.0

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="nba-db-ping")
        self._future: Future[None] | None = None
        self._started = 0.0
        self.reachable = False
        self._logged: bool | None = None

    def _ping(self) -> None:
        try:
            self.store.ping()
            self.reachable = True
            if self._logged is not True:
                get_logger().info("feedback database reachable")
        except UnavailableError as exc:
            self.reachable = False
            if self._logged is not False:
                get_logger().warning("feedback database unavailable", extra={"reason": str(exc)})
        except Exception:
            self.reachable = False
            get_logger().exception("feedback database ping failed")
        self._logged = self.reachable

    async def state(self) -> tuple[bool, str | None]:
        """(reachable, reason when not): waits up to PING_WAIT_S for a ping it starts itself; while an
        earlier one is still waiting (the database does not answer) it answers at once."""
        future = self._future
        if future is None or future.done():
            self._started = time.monotonic()
            future = self._future = self._pool.submit(self._ping)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.PING_WAIT_S)
        if not future.done() and time.monotonic() - self._started > self.PING_STALE_S:
            return False, "feedback database unavailable: it does not answer"
        return (True, None) if self.reachable else (False, DATABASE_DOWN)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def issued_within(suggestion_id: str, now: datetime, window: timedelta) -> bool:
    """Whether a suggestion id made by the service (`s_` + its time in milliseconds as 12 hex digits +
    64 random bits: api/routes/suggestions.py's `new_ids`) was issued within `window` of `now` (either
    side: replicas' clocks differ a little); False for an id in any other form."""
    if len(suggestion_id) != 30 or not suggestion_id.startswith("s_"):
        return False
    try:
        issued_ms = int(suggestion_id[2:14], 16)
    except ValueError:
        return False
    return abs(now.timestamp() * 1000 - issued_ms) <= window.total_seconds() * 1000


def journal_folder(buffer_path: Path) -> Path:
    """Where the decision journal lives: beside the buffer file (`<buffer>.journal/`)."""
    return buffer_path.with_name(buffer_path.name + ".journal")


def metrics_folder(buffer_path: Path) -> Path:
    """Where `nba serve --workers`' shared counter files live: beside the buffer file (`<buffer>.metrics/`)."""
    return buffer_path.with_name(buffer_path.name + ".metrics")
