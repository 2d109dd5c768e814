"""Benchmark: what issue 14 added to `nba train` → its time now against the same command before, same data.

Before: the held-out fit ships and no month is backtested within the run (`TrainOptions(ship_all_rows=False,
backtest_months=0)`). Now: the spend estimator and model refit on every labelled row and the latest
`TRAIN_BACKTEST_MONTHS` months backtested within the run (the defaults). `--pairs` pairs of runs alternate,
each in its own (spawned) child process, on a generated world under /tmp shared with bench_train.py; the
ratio of the medians is the figure (goal: at most 2), with the steps of the last run now, so the refit's
and the backtest months' share can be read. Prints the numbers and merges them into
bench/results/train_cost.json under the cardholder count, with the load average before and after: on
this shared 2-core machine a run beside other jobs is inflated, and says so.

    python bench/bench_train_cost.py                    # 20,000 cardholders, 3 pairs
    python bench/bench_train_cost.py --cardholders 100000 --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import ROOT, ensure_world, machine, train_once

sys.path.insert(0, str(ROOT))

RESULTS_PATH = ROOT / "bench" / "results" / "train_cost.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args(argv)
    from training.cli_options import TRAIN_BACKTEST_MONTHS

    data_dir, _ = ensure_world(args.cardholders, args.seed)
    load_before = [round(x, 2) for x in os.getloadavg()]
    before: list[float] = []
    now: list[float] = []
    steps: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nba-bench-train-cost-") as scratch:
        for i in range(args.pairs):
            for shipped_now, into in ((False, before), (True, now)):
                root = Path(scratch) / f"{'now' if shipped_now else 'before'}-{i}"
                root.mkdir()
                measured = train_once(data_dir, root, ship_all_rows=shipped_now)
                into.append(round(measured.seconds, 2))
                if shipped_now:
                    steps = measured.detail["timings_s"]
                print(f"  {'now   ' if shipped_now else 'before'} {measured.seconds:6.1f} s", flush=True)
    ratio = statistics.median(now) / statistics.median(before)
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "backtest_months": TRAIN_BACKTEST_MONTHS,
        "before_s": before,
        "now_s": now,
        "ratio_median": round(ratio, 3),
        "goal_ratio": 2.0,
        "meets_goal": ratio <= 2.0,
        "timings_s_now": steps,
    }
    print(
        f"nba train on {args.cardholders:,} cardholders: now {statistics.median(now):.1f} s (refit on every "
        f"row + {TRAIN_BACKTEST_MONTHS} backtest months) vs before {statistics.median(before):.1f} s = "
        f"{ratio:.2f}x (goal <= 2); steps now: " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
    )
    results = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    results[str(args.cardholders)] = result
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
