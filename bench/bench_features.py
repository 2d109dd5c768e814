"""Benchmark: point-in-time features for every cardholder at one as-of → rows/s against a bare DuckDB group-by.

Makes a world of `--cardholders` (default 200,000, about 20 M transactions) in Parquet under /tmp with the
synthetic generator (or, if it is not there, with DuckDB alone), then, in one child process so its peak
resident memory is its own, alternates `--repeat` times between

- the reference: `SELECT cardholder_id, category, sum(amount), count(*) FROM transactions JOIN mcc GROUP BY 1, 2`
  over the same typed view, fetched to Arrow like the features are, and
- `build_cardholder_features` for all cardholders at the day after the latest date,

and reports the best time of each as transaction rows per second, their ratio and the peak RSS. Then it
replicates the world five times (about 100 M transactions) and builds the features once under a DuckDB
memory limit, spilling under /tmp, to show that the job runs out of core. Prints the numbers and writes
bench/results/features.json.

    python bench/bench_features.py                      # 200,000 cardholders, then the 100 M check
    python bench/bench_features.py --big-copies 0       # skip the 100 M check
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "features.json"
WORK_DIR = Path("/tmp/nba-bench-features")
TABLE_NAMES = ("cardholders", "transactions", "benefit_usage", "conversations", "calls", "nps")
BARE_SQL = (
    "SELECT cardholder_id, category, sum(amount), count(*) FROM transactions AS t "
    "JOIN bench_mcc AS m ON t.mcc = m.mcc GROUP BY 1, 2"
)
# The world is complete once this file is written; a half-written one from an interrupted run is redone.
DONE_MARKER = "_complete.json"


@dataclass(frozen=True)
class Measured:
    """What one child process did: wall and CPU seconds per query, its own peak RSS, and what it reports."""

    seconds: dict[str, list[float]]
    cpu_seconds: dict[str, list[float]]
    peak_rss_gb: float
    detail: dict[str, Any]


def _peak_rss_gb() -> float:
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kilobytes / 1024**2


def _cpu_seconds() -> float:
    """User and system CPU of this process, DuckDB's worker threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(seconds: list[float], cpu_seconds: list[float], run: Callable[[], pa.Table]) -> pa.Table:
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    value = run()
    seconds.append(time.perf_counter() - started)
    cpu_seconds.append(_cpu_seconds() - cpu_started)
    return value


# --- the worlds -------------------------------------------------------------------------------------------


def make_world(cardholders: int, seed: int, out_dir: Path) -> str:
    """Writes a Parquet world into `out_dir` unless a complete one is there; returns how it was made."""
    marker = out_dir / DONE_MARKER
    if marker.exists():
        made: str = json.loads(marker.read_text())["made_by"]
        return made
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        from training.synth import generate_world
    except ImportError:
        made = "duckdb synthesis (training.synth not found)"
        _synthesize_world(cardholders, seed, out_dir)
    else:
        made = "training.synth.generate_world"
        generate_world(cardholders, seed=seed, out_dir=out_dir, fmt="parquet")
    marker.write_text(json.dumps({"made_by": made, "cardholders": cardholders, "seed": seed}))
    return made


def _synthesize_world(cardholders: int, seed: int, out_dir: Path) -> None:
    """About 100 transactions a cardholder over 15 months, common MCCs, a few refunds; small other tables."""
    out_dir.mkdir(parents=True)
    n_tx = cardholders * 100
    mccs = [
        5812,
        5814,
        5411,
        4511,
        7011,
        7512,
        4111,
        4722,
        5541,
        5815,
        5310,
        5999,
        5964,
        7832,
        4814,
        5912,
        5200,
    ]
    holder = f"'C' || lpad(CAST(hash(i + {seed}) % {cardholders} AS VARCHAR), 7, '0')"
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT 'C' || lpad(CAST(i AS VARCHAR), 7, '0') AS cardholder_id, "
            "(['gold', 'voyager', 'everyday'])[1 + i % 3] AS product_id, "
            "DATE '2018-01-01' + CAST(hash(i) % 3000 AS INTEGER) AS open_date, "
            "1940 + CAST(hash(i + 1) % 65 AS INTEGER) AS birth_year, "
            "(['north', 'south', 'east', 'west'])[1 + i % 4] AS region, "
            f"(['mass', 'affluent'])[1 + i % 2] AS segment FROM range({cardholders}) AS r(i)) "
            f"TO '{out_dir / 'cardholders.parquet'}'"
        )
        con.execute(
            f"COPY (SELECT {holder} AS cardholder_id, "
            "DATE '2025-07-01' + CAST(hash(i * 3 + 1) % 456 AS INTEGER) AS transaction_date, "
            "CASE WHEN hash(i * 5) % 50 = 0 THEN -1 ELSE 1 END * round(1 + (hash(i * 7) % 20000) / 100.0, 2) AS amount, "
            f"({mccs})[1 + CAST(hash(i * 11) % {len(mccs)} AS INTEGER)] AS mcc FROM range({n_tx}) AS r(i)) "
            f"TO '{out_dir / 'transactions.parquet'}'"
        )
        con.execute(
            "COPY (SELECT 'C' || lpad(CAST(i * 2 AS VARCHAR), 7, '0') AS cardholder_id, 'dining_4x' AS benefit_id, "
            "DATE '2025-07-01' + CAST(hash(i) % 456 AS INTEGER) AS first_used_date "
            f"FROM range({cardholders // 2}) AS r(i)) TO '{out_dir / 'benefit_usage.parquet'}'"
        )
        con.execute(
            f"COPY (SELECT 'K' || i AS call_id, {holder} AS cardholder_id, 'grocery_4x' AS benefit_id, "
            "TIMESTAMP '2025-07-01 12:00:00' + to_days(CAST(hash(i) % 456 AS INTEGER)) AS presented_at, "
            "(['accepted', 'declined', 'not_discussed', 'already_aware'])[1 + i % 4] AS outcome "
            f"FROM range({cardholders}) AS r(i)) TO '{out_dir / 'conversations.parquet'}'"
        )
        con.execute(
            f"COPY (SELECT 'K' || i AS call_id, CAST(i % 11 AS BIGINT) AS score FROM range({cardholders // 4}) AS r(i)) "
            f"TO '{out_dir / 'nps.parquet'}'"
        )


def replicate_world(source: Path, copies: int, out_dir: Path) -> None:
    """Writes `copies` copies of a world side by side, each with its own cardholder and call ids."""
    marker = out_dir / DONE_MARKER
    if marker.exists() and json.loads(marker.read_text()) == {"source": str(source), "copies": copies}:
        return
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    with duckdb.connect(config={"temp_directory": str(WORK_DIR / "spill")}) as con:
        for name in TABLE_NAMES:
            path = source / f"{name}.parquet"
            if not path.exists():
                continue
            columns = [
                str(row[0])
                for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
            ]
            renamed = {"cardholder_id", "call_id"}
            select = ", ".join(
                f"{column} || '_' || CAST(copy AS VARCHAR) AS {column}" if column in renamed else column
                for column in columns
            )
            con.execute(
                f"COPY (SELECT {select} FROM range({copies}) AS c(copy), read_parquet('{path}')) "
                f"TO '{out_dir / path.name}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"
            )
    marker.write_text(json.dumps({"source": str(source), "copies": copies}))


# --- the measurements (in a child process) -----------------------------------------------------------------


def _measure_child(
    conn: Connection, data_dir: str, repeat: int, memory_limit: str | None, bare: bool
) -> None:
    sys.path.insert(0, str(ROOT))
    from nba.contract import load_mcc_map, open_data
    from nba.features import (
        FeatureConfig,
        build_cardholder_features,
        select_extra_columns,
        snapshot_all_sql,
    )

    spill = WORK_DIR / "spill"
    spill.mkdir(parents=True, exist_ok=True)
    mcc_map = load_mcc_map()
    seconds: dict[str, list[float]] = {"bare": [], "features": []}
    cpu_seconds: dict[str, list[float]] = {"bare": [], "features": []}
    with open_data(Path(data_dir)) as data:
        con = data.con
        con.execute("SET temp_directory = ?", [str(spill)])
        con.execute("SET enable_progress_bar = false")
        if memory_limit is not None:
            con.execute("SET memory_limit = ?", [memory_limit])
        con.register("bench_mcc", mcc_map.to_arrow())
        transactions = data.row_count("transactions")
        latest = data.latest_date()
        assert latest is not None, "the world has dated rows"
        as_of: date = latest + timedelta(days=1)
        extra = select_extra_columns(con, FeatureConfig())
        snapshots = snapshot_all_sql(as_of)
        table: pa.Table | None = None
        for _ in range(repeat):
            # Alternating keeps a busy neighbour on a shared machine from favouring either side.
            if bare:
                _timed(seconds["bare"], cpu_seconds["bare"], lambda: con.sql(BARE_SQL).to_arrow_table())
            table = _timed(
                seconds["features"],
                cpu_seconds["features"],
                lambda: build_cardholder_features(con, snapshots, mcc_map, extra),
            )
            assert table.num_rows > 0
        assert table is not None
        detail = {
            "transactions": transactions,
            "feature_rows": table.num_rows,
            "feature_columns": table.num_columns,
            "feature_table_gb": round(table.nbytes / 1024**3, 3),
            "as_of": as_of.isoformat(),
            "duckdb_memory_limit": str(
                con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
            ),
            "threads": int(con.execute("SELECT current_setting('threads')").fetchall()[0][0]),
        }
    conn.send(Measured(seconds, cpu_seconds, _peak_rss_gb(), detail))


def _in_child(*args: Any) -> Measured:
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_measure_child, args=(send, *args))
    process.start()
    send.close()
    try:
        measured: Measured = receive.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"the measurement failed (exit code {process.exitcode})") from None
    process.join()
    return measured


def run_bench(
    cardholders: int, seed: int, repeat: int, big_copies: int, big_memory_limit: str
) -> dict[str, Any]:
    """Makes the worlds, measures, and returns the result record."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    world_dir = WORK_DIR / f"world-{cardholders}-seed{seed}"
    made_by = make_world(cardholders, seed, world_dir)
    measured = _in_child(str(world_dir), repeat, None, True)
    transactions = measured.detail["transactions"]
    bare_s, features_s = min(measured.seconds["bare"]), min(measured.seconds["features"])
    # CPU seconds measure the work itself: on a shared machine the wall clock also counts the neighbours.
    bare_cpu, features_cpu = min(measured.cpu_seconds["bare"]), min(measured.cpu_seconds["features"])
    result: dict[str, Any] = {
        "cardholders": cardholders,
        "seed": seed,
        "world_made_by": made_by,
        **measured.detail,
        "repeat": repeat,
        "bare_seconds": [round(s, 3) for s in measured.seconds["bare"]],
        "features_seconds": [round(s, 3) for s in measured.seconds["features"]],
        "bare_rows_per_second": round(transactions / bare_s),
        "features_rows_per_second": round(transactions / features_s),
        "ratio_features_to_bare": round(bare_s / features_s, 3),
        "bare_cpu_seconds": [round(s, 3) for s in measured.cpu_seconds["bare"]],
        "features_cpu_seconds": [round(s, 3) for s in measured.cpu_seconds["features"]],
        "bare_rows_per_cpu_second": round(transactions / bare_cpu),
        "features_rows_per_cpu_second": round(transactions / features_cpu),
        "ratio_features_to_bare_cpu": round(bare_cpu / features_cpu, 3),
        "peak_rss_gb": round(measured.peak_rss_gb, 3),
    }
    if big_copies > 0:
        big_dir = WORK_DIR / f"world-{cardholders}-seed{seed}-x{big_copies}"
        replicate_world(world_dir, big_copies, big_dir)
        big = _in_child(str(big_dir), 1, big_memory_limit, False)
        big_s = big.seconds["features"][0]
        result["big"] = {
            **big.detail,
            "features_seconds": round(big_s, 2),
            "features_cpu_seconds": round(big.cpu_seconds["features"][0], 2),
            "features_rows_per_second": round(big.detail["transactions"] / big_s),
            "peak_rss_gb": round(big.peak_rss_gb, 3),
        }
    result["machine"] = {
        "note": "a shared machine: other jobs may have run at the same time; see the CPU-second figures",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cardholders", type=int, default=200_000, help="cardholders in the world (default 200000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of bare query and features (best counts)"
    )
    parser.add_argument(
        "--big-copies", type=int, default=5, help="copies of the world for the out-of-core check (0: skip)"
    )
    parser.add_argument(
        "--big-memory-limit", default="6GB", help="DuckDB memory limit for the out-of-core check"
    )
    args = parser.parse_args(argv)
    for name in ("cardholders", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"`--{name}` must be a positive integer, got {getattr(args, name)}")
    if args.big_copies < 0:
        parser.error(f"`--big-copies` must be 0 or more, got {args.big_copies}")
    result = run_bench(args.cardholders, args.seed, args.repeat, args.big_copies, args.big_memory_limit)
    print(
        f"world: {result['cardholders']:,} cardholders, {result['transactions']:,} transactions "
        f"({result['world_made_by']}), as of {result['as_of']}, {result['threads']} threads"
    )
    print(
        f"bare group-by   {result['bare_rows_per_second']:>12,} rows/s  (best of {result['bare_seconds']} s)"
    )
    print(
        f"features        {result['features_rows_per_second']:>12,} rows/s  (best of {result['features_seconds']} s; "
        f"{result['feature_rows']:,} rows x {result['feature_columns']} columns)"
    )
    print(
        f"ratio           {result['ratio_features_to_bare']:.2f} of the bare query's rows/s "
        f"({result['ratio_features_to_bare_cpu']:.2f} in rows per CPU second: "
        f"{result['features_rows_per_cpu_second']:,} vs {result['bare_rows_per_cpu_second']:,}); "
        f"peak RSS {result['peak_rss_gb']:.2f} GB"
    )
    if "big" in result:
        big = result["big"]
        print(
            f"out of core     {big['transactions']:,} transactions in {big['features_seconds']:.1f} s "
            f"({big['features_rows_per_second']:,} rows/s) under a {big['duckdb_memory_limit']} DuckDB limit, "
            f"peak RSS {big['peak_rss_gb']:.2f} GB"
        )
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({"benchmark": "build_cardholder_features", **result}, indent=2) + "\n")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
