"""Replicas: outcomes recorded by other workers and replicas → this worker's contact policy; SIGTERM → a drain.

The service runs as several worker processes per machine and several machines over one feedback store.
What one worker must know of the others goes through that store, never a second database:

- `ContactFeed` reads the outcomes recorded since its last read (by anyone; by outcome id) every
  `contact_poll_s` on a thread of its own and records them in this worker's `ContactLedger`. The request
  path stays as it was (a dict look-up in the ledger): the cost is off it. An outcome recorded anywhere
  applies everywhere within `contact_poll_s` plus one read (bound stated in docs/replicas.md).
- `Drain`: on SIGTERM the load balancer's health check (/healthz/lb) answers 503 for `drain_s` while
  requests are still served, then uvicorn's own shutdown runs (in-flight requests finish, the decision
  log flushes).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, Final

from api.decision_log import ContactLedger
from api.logs import get_logger
from api.metrics import Metrics
from nba.errors import UnavailableError
from nba.feedback import FeedbackStore

# Outcome ids come from one sequence but commit in any order on PostgreSQL: an id missing below the
# newest one seen is waited for (read again from the id before it) for this long, then given up as a
# rolled-back insert. Also how far back the first read goes (outcomes stamped by a replica's clock
# before their commit).
OVERLAP_S: Final = 1.0


class ContactFeed:
    """Every `poll_s`: the outcomes recorded since the last read → `ledger`.

    `served_since` gives the profile snapshot's time in service (None while nothing serves): older calls
    are in the snapshot already. Runs on a daemon thread between `start` and `stop`; `poll` is one step
    (tests call it by hand).
    """

    def __init__(
        self,
        store: FeedbackStore,
        ledger: ContactLedger,
        metrics: Metrics,
        clock: Callable[[], datetime],
        served_since: Callable[[], datetime | None],
        poll_s: float,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.metrics = metrics
        self.clock = clock
        self.served_since = served_since
        self.poll_s = poll_s
        # Start-up's `warm_ledger` read everything before now; the first read goes back OVERLAP_S from
        # here (by time), later ones read the ids above `_low_id`, every id up to which was seen.
        self._first_since = clock() - timedelta(seconds=OVERLAP_S)
        self._low_id: int | None = None
        self._seen_above: set[int] = set()
        self._gap_since: tuple[int, float] | None = None  # the missing id waited for, since when
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def poll(self) -> int:
        """Reads the outcomes recorded since the last read into the ledger; returns how many rows were
        read (0 too when the database is down or nothing serves: the next step tries again)."""
        since = self.served_since()
        if since is None or not self.store.migrated:
            return 0
        try:
            if self._low_id is None:
                rows = self.store.outcomes_after(None, since, recorded_since=self._first_since)
            else:
                rows = self.store.outcomes_after(self._low_id, since)
        except UnavailableError as exc:
            if not self._failing:
                get_logger().warning("contact feed: database unavailable", extra={"reason": str(exc)})
            self._failing = True
            return 0
        self._failing = False
        for outcome_id, cardholder_id, suggestion_id, event in rows:
            if outcome_id in self._seen_above:
                continue  # read again while waiting for a gap below it
            self._seen_above.add(outcome_id)
            self.ledger.record(cardholder_id, suggestion_id, event.benefit_id, event.outcome, event.at)
        self._advance(rows[0][0] - 1 if rows and self._low_id is None else self._low_id)
        self.metrics.contact_feed_rows.inc(len(rows))
        return len(rows)

    def _advance(self, low_id: int | None) -> None:
        """Moves `_low_id` up over the ids seen; past a missing one once it has been missing OVERLAP_S."""
        if low_id is None:
            return
        now = time.monotonic()
        while self._seen_above:
            if low_id + 1 in self._seen_above:
                low_id += 1
                self._seen_above.discard(low_id)
                continue
            if self._gap_since is None or self._gap_since[0] != low_id + 1:
                self._gap_since = (low_id + 1, now)
            if now - self._gap_since[1] < OVERLAP_S:
                break
            low_id += 1  # given up: a rolled-back insert, or later than the bound says
        self._low_id = low_id

    def start(self) -> None:
        if self.poll_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="nba-contact-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # the feed must survive anything; the ledger keeps what it has
                get_logger().exception("contact feed failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class Drain:
    """Whether this worker is draining: set by the first SIGTERM, which reaches uvicorn `drain_s` later.

    `install` (at start-up, in the main thread, after uvicorn took SIGTERM) puts `_on_term` in front of
    uvicorn's handler: the load balancer sees /healthz/lb turn 503 and stops sending while requests still
    arrive and are served; then uvicorn stops accepting, finishes what is in flight, and the app's
    shutdown flushes the decision log. A second SIGTERM (or drain_s 0) goes to uvicorn at once.
    """

    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.started: float | None = None  # time.monotonic() of the SIGTERM
        self._previous: Any = None
        self._timer: threading.Timer | None = None

    @property
    def draining(self) -> bool:
        return self.started is not None

    def install(self) -> bool:
        """Takes SIGTERM in front of the handler in place (uvicorn's); False outside the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return False  # no server behind us to hand the signal to (an app in a test's thread)
        self._previous = previous
        signal.signal(signal.SIGTERM, self._on_term)
        return True

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self.started is not None or self.drain_s <= 0:
            self._hand_over(signum, frame)
            return
        self.started = time.monotonic()
        get_logger().info("SIGTERM: draining", extra={"drain_s": self.drain_s})
        # uvicorn's handler only sets a flag its main loop reads: calling it from a timer thread is safe.
        self._timer = threading.Timer(self.drain_s, self._hand_over, args=(signum, None))
        self._timer.daemon = True
        self._timer.start()

    def _hand_over(self, signum: int, frame: FrameType | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if callable(self._previous):
            self._previous(signum, frame)

    def uninstall(self) -> None:
        """Gives SIGTERM back to uvicorn (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        if (
            self._previous is not None
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == self._on_term
        ):
            signal.signal(signal.SIGTERM, self._previous)
