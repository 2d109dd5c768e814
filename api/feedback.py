"""Feedback on the request path: decisions shown → the store in the background; outcomes → the contact policy.

Suggestions never wait for the database: a decision is remembered in memory (so a repeated request
for the same call gets the same answer) and written by a background thread. While the database is
down, decisions go to a local buffer file and are replayed, in order, once it is back; nothing is lost.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from api.logs import get_logger
from api.metrics import Metrics
from nba.engine import RecentContact
from nba.errors import NbaError, UnavailableError
from nba.store import CallDecision, DecisionBuffer, FeedbackStore

# Repeats of a call come within minutes; older ones are found in the store. ~4 KB a call held (the
# cardholder's feature columns once, not once per suggestion).
MAX_CACHED_CALLS: Final = 20_000
RETRY_EVERY: Final = timedelta(seconds=5)
WRITE_BATCH: Final = 500
# The writer wakes this often (or at a full batch, or when asked to flush): one transaction for many
# calls instead of one per call, which would cost a commit and a thread switch on every request; and
# short bursts (at 500 calls/s, ~1 ms of writing) rather than long ones that hold up requests behind them.
WRITE_EVERY_S: Final = 0.02


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
    """Decisions shown to agents: kept in memory for repeats, written to the store by one background thread."""

    def __init__(
        self,
        store: FeedbackStore,
        buffer: DecisionBuffer,
        metrics: Metrics,
        clock: Callable[[], datetime],
        max_cached: int = MAX_CACHED_CALLS,
    ) -> None:
        self.store = store
        self.buffer = buffer
        self.metrics = metrics
        self.clock = clock
        self.max_cached = max_cached
        self._cache: OrderedDict[str, CallDecision] = OrderedDict()
        self._pending: deque[CallDecision] = deque()
        self._busy = 0
        self._cond = threading.Condition()
        self._stop = False
        self._flush_wanted = False
        self._thread: threading.Thread | None = None
        self._next_retry: datetime | None = None
        # Reading the buffer file takes a lock and a read: remember whether it may hold anything instead.
        self._buffer_in_use = self.buffer.pending() > 0
        self.metrics.buffered.set_function(
            lambda: float(self.buffer.pending()) if self._buffer_in_use else 0.0
        )
        self.metrics.decisions_pending.set_function(lambda: float(len(self._pending)))

    # --- the request path -------------------------------------------------------------------------
    def lookup(self, call_id: str) -> CallDecision | None:
        """The decision already shown on this call: from memory, else from the store (None if unreachable)."""
        with self._cond:
            cached = self._cache.get(call_id)
        if cached is not None:
            return cached
        try:
            return self.store.find_decision(call_id)
        except UnavailableError:
            return None

    def add(self, decision: CallDecision) -> None:
        with self._cond:
            self._cache[decision.call_id] = decision
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            self._pending.append(decision)
            if len(self._pending) >= WRITE_BATCH:
                self._cond.notify_all()

    # --- writing ----------------------------------------------------------------------------------
    def write_pending(self) -> int:
        """Writes what is queued, in batches (to the store, or to the buffer file while it is down)."""
        written = 0
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.notify_all()
                    return written
                batch = [self._pending.popleft() for _ in range(min(WRITE_BATCH, len(self._pending)))]
                self._busy += 1
            try:
                self._write(batch)
                written += len(batch)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _write(self, batch: list[CallDecision]) -> None:
        with self.metrics.decision_write_seconds.time():
            self._write_batch(batch)

    def _write_batch(self, batch: list[CallDecision]) -> None:
        if not self._buffer_in_use:
            try:
                self.store.log_decisions(batch)
                self.metrics.decisions_written.labels(to="store").inc(len(batch))
                return
            except UnavailableError as exc:
                get_logger().warning("database unavailable; buffering decisions", extra={"reason": str(exc)})
                self._next_retry = self.clock() + RETRY_EVERY
            except NbaError:
                self._write_one_by_one(batch)  # one refused decision must not take the batch with it
                return
        # Behind earlier buffered decisions (or with the database down): keep the order, lose nothing.
        self._buffer_in_use = True
        for decision in batch:
            self.buffer.append(decision)
        self.metrics.decisions_written.labels(to="buffer").inc(len(batch))

    def _write_one_by_one(self, batch: list[CallDecision]) -> None:
        for decision in batch:
            try:
                self.store.log_decision(decision)
                self.metrics.decisions_written.labels(to="store").inc()
            except UnavailableError:
                self._buffer_in_use = True
                self.buffer.append(decision)
                self.metrics.decisions_written.labels(to="buffer").inc()
            except NbaError as exc:
                get_logger().error("decision refused by the store", extra={"reason": str(exc)})

    def retry_buffer(self, force: bool = False) -> int:
        """Replays the buffer file into the store when it is due (or `force`); returns how many were written."""
        if not self._buffer_in_use:
            return 0
        now = self.clock()
        if not force and self._next_retry is not None and now < self._next_retry:
            return 0
        try:
            # The database may have been down since start-up, so never migrated: a no-op when it is.
            self.store.migrate()
            replayed = self.buffer.replay(self.store)
        except UnavailableError:
            self._next_retry = now + RETRY_EVERY
            return 0
        self._next_retry = None
        self._buffer_in_use = self.buffer.pending() > 0
        get_logger().info("replayed buffered decisions", extra={"decisions": replayed})
        return replayed

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Waits until everything queued has been written (used before an outcome refers to it)."""
        with self._cond:
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._pending and self._busy == 0, timeout=timeout_s)

    def ensure_written(self) -> None:
        """Before an outcome: the decisions it may refer to are in the store, or UnavailableError."""
        if self._thread is None:
            self.write_pending()
        elif not self.flush():
            raise UnavailableError("the decision log is still writing; try again")
        if self._buffer_in_use:
            self.retry_buffer(force=True)
            if self._buffer_in_use:
                raise UnavailableError("the feedback database is unavailable")

    # --- the background thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nba-decision-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: len(self._pending) >= WRITE_BATCH or self._flush_wanted or self._stop,
                    timeout=WRITE_EVERY_S,
                )
                stop = self._stop
                self._flush_wanted = False
            try:
                self.write_pending()
                self.retry_buffer()
            except Exception:  # the writer must survive anything; the error is logged, decisions are buffered
                get_logger().exception("decision log writer failed")
            if stop:
                return

    def stop(self) -> None:
        """Writes what is left and stops the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.write_pending()
