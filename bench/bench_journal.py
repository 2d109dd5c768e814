"""Benchmark: what a decision costs on the request path (`DecisionLog.add`) with the journal → µs per call.

Before the answer leaves, `DecisionLog.add` now appends the decision's JSON line to the local journal
(one `os.write` on an O_APPEND descriptor, no fsync) besides remembering it and queueing it for the
writer. This times `add` per call in the thread's CPU time and in wall time (the write is a system call)
for three versions in the same run, on the same decisions (3 suggestions of 210 + 21 features, as
`bench_decision_log.py` makes them):

- `before`: `api/feedback.py` as it was before the journal (git revision `--before`, loaded from git);
- `no journal`: today's `add` without a journal (the bookkeeping an outcome waits on);
- `journal`: today's `add` with the journal in a temp folder (on the disk of the system temp folder).

Nothing is written to the store (the writer thread is not started). Prints the medians of `--runs` runs and
writes bench/results/journal.json. Target: the journal adds at most 20 µs a call.

    python bench/bench_journal.py
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decision_log import make_decisions
from bench_train import ROOT, machine, save_run

from api.decision_log import DecisionLog
from api.metrics import Metrics
from nba.feedback import CallDecision, DecisionBuffer, DecisionJournal, FeedbackStore

RESULTS_PATH = ROOT / "bench" / "results" / "journal.json"
BEFORE = "dabeb91"  # the last commit before the journal


def load_before(revision: str) -> ModuleType:
    """api/feedback.py (now api/decision_log.py) at `revision`, as a module of its own (it imports today's nba and api otherwise)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:api/feedback.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = importlib.util.spec_from_loader("feedback_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{revision}:api/feedback.py", "exec"), module.__dict__)
    return module


def clock() -> datetime:
    return datetime.now(UTC)


def time_adds(log: Any, decisions: list[CallDecision]) -> tuple[float, float]:
    """Median CPU µs and wall µs of `log.add` per call."""
    cpu, wall = [], []
    for decision in decisions:
        started_cpu, started = time.thread_time_ns(), time.perf_counter_ns()
        log.add(decision)
        cpu.append((time.thread_time_ns() - started_cpu) / 1e3)
        wall.append((time.perf_counter_ns() - started) / 1e3)
    return statistics.median(cpu), statistics.median(wall)


def one_run(args: argparse.Namespace, seed: int, before: ModuleType) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    decisions = make_decisions(rng, args.calls, 3, 210, 21, 0)
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="nba-bench-journal-") as folder:
        store = FeedbackStore(f"sqlite:///{folder}/unused.db")  # never written: the writer is not started
        for name in ("before", "no journal", "journal"):
            buffer = DecisionBuffer(Path(folder) / f"{name}.jsonl")
            journal = None
            if name == "before":
                log = before.DecisionLog(store, buffer, Metrics(), clock)
            else:
                journal = DecisionJournal(Path(folder) / f"{name}.journal") if name == "journal" else None
                log = DecisionLog(store, buffer, Metrics(), clock, journal=journal)
                log.open_journal()
            time_adds(log, decisions[: args.warmup])
            results[name] = time_adds(log, decisions[args.warmup :])
            if journal is not None:
                journal.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=5000, help="decisions added per run (default 5000)")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--before", default=BEFORE, help="git revision of the code before (default %(default)s)"
    )
    args = parser.parse_args(argv)
    before = load_before(args.before)
    runs = [one_run(args, seed, before) for seed in range(args.runs)]
    result: dict[str, Any] = {"cardholders": 0, "machine": machine(), "calls": args.calls, "runs": args.runs}
    for name in ("before", "no journal", "journal"):
        cpu = statistics.median(run[name][0] for run in runs)
        wall = statistics.median(run[name][1] for run in runs)
        key = name.replace(" ", "_")
        result[f"{key}_cpu_us"] = round(cpu, 2)
        result[f"{key}_wall_us"] = round(wall, 2)
        print(f"{name:>11}: add {cpu:6.2f} µs CPU, {wall:6.2f} µs wall a call (median of {args.runs} runs)")
    added = result["journal_wall_us"] - result["before_wall_us"]
    result["journal_added_wall_us"] = round(added, 2)
    print(f"the journal and its bookkeeping add {added:.2f} µs wall a call to the code before (target ≤ 20)")
    save_run(result, RESULTS_PATH, "journal")


if __name__ == "__main__":
    main()
