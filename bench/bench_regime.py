"""Benchmark: learning under a regime shift → per month after the shift, the model that ships (refit on every
labelled row before the month) beside the held-out fit alone (no newest rows) and the best baseline.

Generates (or reuses) a regime-shift world under /tmp (`nba generate --regime-shift`), then backtests its
last `--months` months twice with the same seed: once as `nba train` ships models (`ship_all_rows=True`)
and once shipping the held-out fit, which never sees the newest ~30% of labelled rows (what `nba train`
shipped before). Each month: AUC, IPS adoptions per call (95% interval), the oracle ratio from the truth
as of the month's first day, and the best baseline's, plus wall time. Prints a table and writes
bench/results/regime.json.

    python bench/bench_regime.py                                   # 12,000 cardholders, shift 2026-05-01
    python bench/bench_regime.py --cardholders 30000 --months 3
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from training.backtest_job import backtest_frame, run_backtest
from training.synth import generate_world
from training.training_run import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "regime.json"


def _world(cardholders: int, seed: int, shift: date) -> tuple[Path, Path]:
    folder = Path(f"/tmp/nba-bench-regime/{cardholders}-{seed}-{shift}")
    data, oracle = folder / "data", folder / "oracle.parquet"
    marker = folder / "_complete"
    if not marker.exists():
        generate_world(cardholders, seed, data, fmt="parquet", oracle_path=oracle, regime_shift=shift)
        marker.touch()
    return data, oracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cardholders", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--shift", type=date.fromisoformat, default=date(2026, 5, 1))
    parser.add_argument("--months", type=int, default=2)
    args = parser.parse_args()
    data, oracle = _world(args.cardholders, args.seed, args.shift)
    options = TrainOptions(oracle=oracle)
    runs: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    for name, ship_all in (("shipped_refit_on_every_row", True), ("held_out_fit_only", False)):
        started = time.perf_counter()
        result = run_backtest(
            data, replace(options, ship_all_rows=ship_all), args.months, check_features=False
        )
        seconds[name] = round(time.perf_counter() - started, 1)
        runs[name] = backtest_frame(result).drop(columns=["note"]).to_dict(orient="records")
    print(f"regime shift on {args.shift}, {args.cardholders:,} cardholders, seed {args.seed}")
    print(f"{'month':8} {'model':28} {'AUC':>6} {'base':>6} {'IPS':>6} {'base':>6} {'oracle':>7} {'base':>6}")
    for name, rows in runs.items():
        for row in rows:
            print(
                f"{row['month']!s:8} {name:28} {row['auc']:6.3f} {row['best_baseline_auc']:6.3f} "
                f"{row['ips']:6.3f} {row['best_baseline_ips']:6.3f} {row['oracle_ratio']:7.3f} "
                f"{row['best_baseline_oracle_ratio']:6.3f}"
            )
    results = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    results[str(args.cardholders)] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "seed": args.seed,
        "shift": args.shift.isoformat(),
        "months": args.months,
        "seconds": seconds,
        "runs": runs,
    }
    RESULTS_PATH.write_text(json.dumps(results, indent=2, allow_nan=True) + "\n")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
