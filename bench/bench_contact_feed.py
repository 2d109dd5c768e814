"""Benchmark: the contact feed shared by workers and replicas (`ContactFeed.poll`) on SQLite → CPU µs per request.

The cross-replica contact policy adds nothing to the request path itself (the ledger look-up is the one
a single process made already); its cost is the feed thread's: one read of the outcomes recorded in the
last OVERLAP_S every `contact_poll_s`, holding the GIL while it turns rows into ledger entries. Per
request that is (CPU of one poll) / (requests served per poll interval). This bench fills a SQLite store
with `--rate` calls per second for `--seconds` seconds, each with one outcome, then times `--polls` polls
in the thread's CPU time (`time.thread_time_ns`), `rate` × `poll_s` new outcomes before each (what a live
feed finds at that rate), and prints the median
poll and its share per request at `--rate` requests/s. The budget (issue 16): ≤ 50 µs per request.

    python bench/bench_contact_feed.py
    python bench/bench_contact_feed.py --rate 500 --poll-s 0.2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decision_log import T0, make_decisions
from bench_train import ROOT, machine, save_run

from api.decision_log import ContactLedger
from api.metrics import Metrics
from api.replicas import OVERLAP_S, ContactFeed
from nba.feedback import FeedbackStore

RESULTS_PATH = ROOT / "bench" / "results" / "contact_feed.json"


def run(rate: int, seconds: int, poll_s: float, polls: int) -> dict[str, Any]:
    calls = rate * seconds
    with tempfile.TemporaryDirectory(prefix="nba-bench-feed-") as folder:
        clock_now = [T0]
        store = FeedbackStore(f"sqlite:///{Path(folder) / 'feedback.db'}", clock=lambda: clock_now[0])
        store.migrate()
        rng = np.random.default_rng(7)
        decisions = make_decisions(rng, calls, 3, 210, 21, 0)
        for start in range(0, calls, 500):
            store.log_decisions(decisions[start : start + 500])
        for i, decision in enumerate(decisions):
            # Outcomes spread evenly over the seconds: `rate` a second.
            clock_now[0] = T0 + timedelta(seconds=i / rate)
            store.record_outcome(decision.suggestions[0].suggestion_id, "declined")
        end = clock_now[0]
        feed = ContactFeed(store, ContactLedger(), Metrics(), lambda: end, lambda: T0, poll_s)
        cpu_us: list[float] = []
        rows = 0
        # The first read (by time, the last OVERLAP_S) sets the id cursor; each timed read after it
        # finds the outcomes of one poll interval (`rate` × `poll_s` new rows), as a live feed would.
        feed.poll()
        new_per_poll = int(rate * poll_s)
        for _ in range(polls):
            for decision in decisions[:new_per_poll]:
                clock_now[0] = end
                store.record_outcome(decision.suggestions[1].suggestion_id, "declined")
            decisions = decisions[new_per_poll:]
            started = time.thread_time_ns()
            rows = feed.poll()
            cpu_us.append((time.thread_time_ns() - started) / 1e3)
        store.dispose()
    poll_us = statistics.median(cpu_us)
    per_request_us = poll_us / (rate * poll_s)
    return {
        "cardholders": calls,
        "rate_per_s": rate,
        "poll_s": poll_s,
        "overlap_s": OVERLAP_S,
        "rows_per_poll": rows,
        "poll_cpu_us_median": round(poll_us, 1),
        "poll_cpu_us_p90": round(sorted(cpu_us)[int(0.9 * len(cpu_us))], 1),
        "per_request_us": round(per_request_us, 2),
        "budget_per_request_us": 50,
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=500, help="requests (and outcomes) per second")
    parser.add_argument("--seconds", type=int, default=4, help="seconds of outcomes in the store")
    parser.add_argument("--poll-s", type=float, default=0.2, help="the feed's poll interval")
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args(argv)
    result = run(args.rate, args.seconds, args.poll_s, args.polls)
    print(
        f"contact feed: {result['rows_per_poll']} rows a poll, {result['poll_cpu_us_median']:.0f} µs CPU a "
        f"poll (p90 {result['poll_cpu_us_p90']:.0f}); at {args.rate} req/s polled every {args.poll_s} s: "
        f"{result['per_request_us']:.1f} µs per request (budget 50)"
    )
    save_run(result, RESULTS_PATH, "contact_feed")


if __name__ == "__main__":
    main()
