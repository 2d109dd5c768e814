"""Benchmark: the decision-log writer's batch insert (`FeedbackStore.log_decisions`) on SQLite → CPU µs per call.

What the service's background writer does every 20 ms: one `log_decisions` call with the calls served
since the last one (`--batch`, default 24: 1,200 requests/s × 20 ms). Each call carries `--suggestions`
(default 3) suggestions whose feature vectors have `--holder-features` cardholder columns (default 210)
and `--pair-features` pair columns (default 21), with NaN where the served ones have gaps; ids are
time-ordered as the service makes them (`api.routes.suggestions.new_ids`).

Each run uses a new SQLite file in WAL mode (as the service opens it) under the system temp folder,
writes `--warmup` batches, then times `--batches` batches in the thread's CPU time (`time.thread_time_ns`:
the writer's cost on the server's core, not time spent waiting for the disk or a core). Beside it, in the
same run, the floor: the sqlite3 module alone writing the same rows (one transaction, the store's
already-stored check, one executemany per table, rows built from the same records). Prints the median of
`--runs` runs and writes bench/results/decision_log.json.

    python bench/bench_decision_log.py
    python bench/bench_decision_log.py --batch 500      # a full batch (WRITE_BATCH)
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import ROOT, machine, save_run

from api.routes.suggestions import new_ids
from nba.feedback import CallDecision, FeedbackStore, ShownSuggestion

RESULTS_PATH = ROOT / "bench" / "results" / "decision_log.json"
T0 = datetime(2026, 8, 15, 10, 30, tzinfo=UTC)
BENEFITS = (
    "dining_4x",
    "grocery_4x",
    "travel_credit",
    "lounge_access",
    "streaming_credit",
    "cell_protection",
)


def make_decisions(
    rng: np.random.Generator, n: int, suggestions: int, holder_features: int, pair_features: int, start: int
) -> list[CallDecision]:
    """`n` calls as the service logs them: one cardholder row shared by the call's suggestions."""
    decisions = []
    for i in range(n):
        holder = rng.lognormal(3.0, 2.0, holder_features)
        holder[rng.random(holder_features) < 0.15] = np.nan
        ids = new_ids(suggestions + 1)
        shown = []
        for rank in range(1, suggestions + 1):
            pair = rng.lognormal(1.0, 1.5, pair_features)
            pair[rng.random(pair_features) < 0.1] = np.nan
            benefit = BENEFITS[(i + rank) % len(BENEFITS)]
            shown.append(
                ShownSuggestion(
                    suggestion_id=f"s_{ids[rank - 1]}",
                    rank=rank,
                    benefit_id=benefit,
                    benefit_name=benefit.replace("_", " ").title(),
                    talking_point=(
                        "Cardholders who dine out like you do spend about $3,100 a year at restaurants. "
                        "On your card that earns 4x points: about $93 a year."
                    ),
                    reasons=("dines out about 9 times a month", "no restaurant spend on this card yet"),
                    value_usd=93.0 + rank,
                    priority=float(rng.random()),
                    p_adopt=float(rng.random()),
                    logging_prob=1.0,
                    pair_features=pair.astype("<f8").tobytes(),
                )
            )
        decisions.append(
            CallDecision(
                call_id=f"c_{ids[-1]}",
                cardholder_id=f"C{start + i:07d}",
                call_reason="general",
                model_version="20260801T000000-ab12",
                profile_as_of="2026-08-14",
                served_at=T0 + timedelta(milliseconds=start + i),
                note=None,
                holder_features=holder.astype("<f8").tobytes(),
                suggestions=tuple(shown),
                agent_id=None,
            )
        )
    return decisions


def sqlite3_writer(path: Path) -> Callable[[Sequence[CallDecision]], None]:
    """The floor: the sqlite3 module writing the same rows the store writes, as the store opens SQLite."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("busy_timeout = 5000", "journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
        conn.execute(f"PRAGMA {pragma}")

    def write(decisions: Sequence[CallDecision]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        ids = [d.call_id for d in decisions]
        stored = {
            row[0]
            for row in conn.execute(
                f"SELECT call_id FROM calls WHERE call_id IN ({','.join('?' * len(ids))})", ids
            )
        }
        new = [d for d in decisions if d.call_id not in stored]
        conn.executemany(
            "INSERT INTO calls (call_id, cardholder_id, call_reason, agent_id, served_at, model_version, "
            "profile_as_of, note, holder_features_f64) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    d.call_id,
                    d.cardholder_id,
                    d.call_reason,
                    d.agent_id,
                    d.served_at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" "),
                    d.model_version,
                    date.fromisoformat(d.profile_as_of).isoformat(),
                    d.note,
                    d.holder_features,
                )
                for d in new
            ],
        )
        conn.executemany(
            "INSERT INTO suggestions (suggestion_id, call_id, rank, benefit_id, benefit_name, talking_point, "
            "reasons, value_usd, score, p_adopt, logging_prob, pair_features_f64) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    s.suggestion_id,
                    d.call_id,
                    s.rank,
                    s.benefit_id,
                    s.benefit_name,
                    s.talking_point,
                    orjson.dumps(s.reasons).decode(),
                    s.value_usd,
                    s.priority,
                    s.p_adopt,
                    s.logging_prob,
                    s.pair_features,
                )
                for d in new
                for s in d.suggestions
            ],
        )
        conn.execute("COMMIT")

    return write


def time_batches(
    write: Callable[[Sequence[CallDecision]], Any], batches: list[list[CallDecision]]
) -> list[float]:
    """CPU µs per call of each batch written."""
    out = []
    for batch in batches:
        started = time.thread_time_ns()
        write(batch)
        out.append((time.thread_time_ns() - started) / 1e3 / len(batch))
    return out


def one_run(args: argparse.Namespace, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    size = args.batch
    total = args.warmup + args.batches
    decisions = make_decisions(
        rng, size * total, args.suggestions, args.holder_features, args.pair_features, 0
    )
    batches = [decisions[i * size : (i + 1) * size] for i in range(total)]
    results = {}
    with tempfile.TemporaryDirectory(prefix="nba-bench-log-") as folder:
        for name in ("store", "sqlite3"):
            path = Path(folder) / f"{name}.db"
            store = FeedbackStore(f"sqlite:///{path}")
            store.migrate()
            write = store.log_decisions if name == "store" else sqlite3_writer(path)
            time_batches(write, batches[: args.warmup])
            results[name] = statistics.median(time_batches(write, batches[args.warmup :]))
            store.dispose()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch", type=int, default=24, help="calls per log_decisions call (default 24)")
    parser.add_argument("--batches", type=int, default=200, help="timed batches per run (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="batches before timing (default 20)")
    parser.add_argument("--runs", type=int, default=7, help="runs, each on a new database (default 7)")
    parser.add_argument("--suggestions", type=int, default=3, help="suggestions per call (default 3)")
    parser.add_argument("--holder-features", type=int, default=210, help="cardholder columns (default 210)")
    parser.add_argument("--pair-features", type=int, default=21, help="pair columns (default 21)")
    parser.add_argument("--no-save", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args(argv)
    for name in ("batch", "batches", "runs", "suggestions", "holder_features", "pair_features"):
        if getattr(args, name) < 1:
            parser.error(
                f"`--{name.replace('_', '-')}` must be a positive integer, got {getattr(args, name)}"
            )

    runs = [one_run(args, seed) for seed in range(args.runs)]
    store_us = statistics.median(run["store"] for run in runs)
    floor_us = statistics.median(run["sqlite3"] for run in runs)
    print(
        f"log_decisions, {args.batch} calls a batch, {args.suggestions} suggestions of "
        f"{args.holder_features}+{args.pair_features} features: {store_us:.1f} µs of CPU a call "
        f"(runs: {', '.join(format(run['store'], '.1f') for run in runs)}); sqlite3 alone: {floor_us:.1f} µs "
        f"({store_us / floor_us:.2f}×)"
    )
    if args.no_save:
        return
    result = {
        "cardholders": args.batch,  # save_run keys runs by this: here, the batch size
        "machine": machine(),
        "batch": args.batch,
        "suggestions": args.suggestions,
        "holder_features": args.holder_features,
        "pair_features": args.pair_features,
        "batches_timed": args.batches,
        "runs": len(runs),
        "store_cpu_us_per_call": round(store_us, 1),
        "sqlite3_cpu_us_per_call": round(floor_us, 1),
        "store_runs_us": [round(run["store"], 1) for run in runs],
        "sqlite3_runs_us": [round(run["sqlite3"], 1) for run in runs],
        "ratio": round(store_us / floor_us, 2),
    }
    save_run(result, RESULTS_PATH, "decision_log")


if __name__ == "__main__":
    main()
