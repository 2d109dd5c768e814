"""Benchmark: `nba insights` over N logged calls → seconds, beside a bare DuckDB query of the same groups.

Writes a data directory of `--calls` calls under /tmp (Parquet; two suggestions on 80% of calls, an NPS
answer on `--answered` of them, 300 agents, a year of weeks), then times, `--repeats` times each:
- `run_insights` whole: open the directory, the merged tables, every group-by, the bootstraps, the plots,
  the page and the CSV files;
- the bare query: the same promoter/passive/detractor counts per outcome, benefit, call reason, product,
  agent and week, straight from the Parquet files in one DuckDB statement per dimension, with nothing
  merged, checked or drawn (what the job could not go below).
The issue's target: 1 M logged calls in under a minute.

    python bench/bench_insights.py --calls 200000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import ROOT, machine

from nba.vocab import CALL_REASONS, OUTCOMES
from training.insights_job import run_insights
from training.progress import SILENT

RESULTS_PATH = ROOT / "bench" / "results" / "insights.json"
PRODUCTS = ("everyday", "gold", "voyager", "home", "summit")
BENEFITS = ("dining_4x", "grocery_4x", "dining_credit", "travel_3x", "lounge_access", "purchase_protection")


def write_world(folder: Path, calls: int, answered: float, seed: int = 7) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    holders = max(calls // 4, 1)
    holder_ids = np.array([f"C{i:08d}" for i in range(holders)])
    pq.write_table(
        pa.table(
            {
                "cardholder_id": holder_ids,
                "product_id": np.array(PRODUCTS)[rng.integers(0, len(PRODUCTS), holders)],
                "open_date": np.full(holders, np.datetime64("2020-01-01", "D")),
            }
        ),
        folder / "cardholders.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "cardholder_id": pa.array([], pa.string()),
                "transaction_date": pa.array([], pa.date32()),
                "amount": pa.array([], pa.float64()),
                "mcc": pa.array([], pa.int64()),
            }
        ),
        folder / "transactions.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "cardholder_id": pa.array([], pa.string()),
                "benefit_id": pa.array([], pa.string()),
                "first_used_date": pa.array([], pa.date32()),
            }
        ),
        folder / "benefit_usage.parquet",
    )
    call_ids = np.array([f"K{i:09d}" for i in range(calls)])
    cardholder = holder_ids[rng.integers(0, holders, calls)]
    started = np.datetime64("2026-01-01T00:00:00", "s") + rng.integers(0, 365 * 86_400, calls).astype("m8[s]")
    reason = np.array(CALL_REASONS)[rng.integers(0, len(CALL_REASONS), calls)]
    agent = np.array([f"A{i:04d}" for i in range(300)])[rng.integers(0, 300, calls)]
    pq.write_table(
        pa.table(
            {
                "call_id": call_ids,
                "cardholder_id": cardholder,
                "started_at": started,
                "call_reason": reason,
                "agent_id": agent,
            }
        ),
        folder / "calls.parquet",
    )
    shown = np.flatnonzero(rng.random(calls) < 0.8)
    rows = np.repeat(shown, 2)
    first, second = rng.integers(0, len(BENEFITS), len(shown)), rng.integers(1, len(BENEFITS), len(shown))
    benefit = np.empty(len(rows), dtype=np.int64)
    benefit[0::2], benefit[1::2] = first, (first + second) % len(BENEFITS)
    pq.write_table(
        pa.table(
            {
                "call_id": call_ids[rows],
                "cardholder_id": cardholder[rows],
                "benefit_id": np.array(BENEFITS)[benefit],
                "presented_at": started[rows],
                "outcome": np.array(OUTCOMES)[rng.integers(0, len(OUTCOMES), len(rows))],
                "agent_id": agent[rows],
                "rank": np.tile([1, 2], len(shown)),
                "call_reason": reason[rows],
            }
        ),
        folder / "conversations.parquet",
    )
    answers = np.flatnonzero(rng.random(calls) < answered)
    pq.write_table(
        pa.table(
            {
                "call_id": call_ids[answers],
                "score": rng.integers(0, 11, len(answers)),
                "responded_at": started[answers] + np.timedelta64(3600, "s"),
            }
        ),
        folder / "nps.parquet",
    )
    return {"calls": calls, "conversations": len(rows), "nps": len(answers)}


BARE_GROUPS = {
    "outcome": "coalesce(o.status, 'nothing suggested')",
    "call_reason": "c.call_reason",
    "product": "h.product_id",
    "agent": "c.agent_id",
    "week": "date_trunc('week', c.started_at)",
}


def bare_query(folder: Path) -> float:
    """The same group counts straight from the files: one statement per dimension, nothing merged."""
    started = time.perf_counter()
    con = duckdb.connect()
    f = {
        name: f"read_parquet('{folder / name}.parquet')"
        for name in ("calls", "conversations", "nps", "cardholders")
    }
    counts = (
        "count(*) FILTER (WHERE n.score >= 9), count(*) FILTER (WHERE n.score BETWEEN 7 AND 8), "
        "count(*) FILTER (WHERE n.score <= 6)"
    )
    status = (
        "SELECT call_id, CASE min(CASE outcome WHEN 'accepted' THEN 0 WHEN 'declined' THEN 1 WHEN 'already_aware' "
        "THEN 2 ELSE 3 END) WHEN 0 THEN 'accepted' WHEN 1 THEN 'declined' WHEN 2 THEN 'already_aware' "
        f"ELSE 'not_discussed' END AS status FROM {f['conversations']} GROUP BY call_id"
    )
    for key in BARE_GROUPS.values():
        con.execute(
            f"SELECT {key} AS g, {counts} FROM {f['nps']} n JOIN {f['calls']} c USING (call_id) "
            f"LEFT JOIN {f['cardholders']} h USING (cardholder_id) LEFT JOIN ({status}) o USING (call_id) GROUP BY g"
        ).fetchall()
    con.execute(
        f"SELECT s.benefit_id, {counts} FROM {f['nps']} n JOIN {f['conversations']} s USING (call_id) GROUP BY 1"
    ).fetchall()
    con.close()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--answered", type=float, default=0.3, help="share of calls with an NPS answer")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nba-bench-insights-") as root:
        data, out = Path(root) / "data", Path(root) / "out"
        data.mkdir()
        rows = write_world(data, args.calls, args.answered)
        job, bare = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = run_insights(data, None, out, progress=SILENT)
            job.append(time.perf_counter() - started)
            bare.append(bare_query(data))
        assert result.insights.answered_calls == rows["nps"]
    run: dict[str, Any] = {
        "rows": rows,
        "insights_s": [round(t, 2) for t in job],
        "bare_duckdb_s": [round(t, 2) for t in bare],
        "insights_median_s": round(statistics.median(job), 2),
        "bare_duckdb_median_s": round(statistics.median(bare), 2),
        "ratio": round(statistics.median(job) / statistics.median(bare), 2),
        "machine": machine(),
    }
    print(json.dumps(run, indent=2))
    runs: dict[str, Any] = {}
    if RESULTS_PATH.exists():
        runs = json.loads(RESULTS_PATH.read_text()).get("runs", {})
    runs[str(args.calls)] = run
    ordered = dict(sorted(runs.items(), key=lambda item: int(item[0])))
    RESULTS_PATH.write_text(json.dumps({"benchmark": "insights", "runs": ordered}, indent=2) + "\n")


if __name__ == "__main__":
    main()
