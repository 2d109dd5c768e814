"""Benchmark: synthetic world generation → wall time, rows/s, peak RSS, against a pyarrow-only writing floor.

Runs `generate_world` for `--cardholders` into a temporary directory under /tmp, in a child process so its
peak resident memory is its own, then, as the floor, writes the same number of transaction rows of random
numbers with pyarrow alone (same schema, chunking and compression). Prints the numbers and merges them into
bench/results/generate.json under the cardholder count.

    python bench/bench_generate.py --cardholders 1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_train import Measured, in_child, peak_rss_gb, save_run

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "generate.json"
FLOOR_CHUNK_ROWS = 5_000_000


def _generate_child(conn: Connection, cardholders: int, seed: int, out_dir: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.synth import generate_world

    started = time.perf_counter()
    summary = generate_world(cardholders, seed=seed, out_dir=Path(out_dir), fmt="parquet")
    seconds = time.perf_counter() - started
    sizes = {p.name: p.stat().st_size for p in sorted(Path(out_dir).iterdir())}
    detail = {
        "rows_by_table": dict(summary.rows_by_table),
        "oracle_rows": summary.oracle_rows,
        "bytes_by_file": sizes,
        "oracle_bytes": summary.oracle_path.stat().st_size,
    }
    conn.send(Measured(seconds, peak_rss_gb(), detail))


def _floor_child(conn: Connection, rows: int, cardholders: int, out_path: str) -> None:
    """Writes `rows` random transactions with pyarrow alone: the cost of the output itself."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    ids = pa.array([f"C{i:07d}" for i in range(1, cardholders + 1)], pa.string())
    schema = pa.schema(
        [
            ("cardholder_id", pa.string()),
            ("transaction_date", pa.date32()),
            ("amount", pa.float64()),
            ("mcc", pa.int32()),
        ]
    )
    written = 0
    holder_start = 0
    per_holder = max(rows // max(cardholders, 1), 1)
    with pq.ParquetWriter(out_path, schema, compression="zstd") as writer:
        while written < rows:
            n = min(FLOOR_CHUNK_ROWS, rows - written)
            holder = np.minimum(holder_start + np.arange(n) // per_holder, cardholders - 1)
            holder_start = int(holder[-1]) + 1
            table = pa.table(
                {
                    "cardholder_id": ids.take(pa.array(holder)),
                    "transaction_date": pa.array(
                        rng.integers(20_270, 20_727, n).astype(np.int32), pa.date32()
                    ),
                    "amount": pa.array(np.round(rng.lognormal(3.8, 1.0, n), 2)),
                    "mcc": pa.array(rng.integers(3000, 9999, n).astype(np.int32)),
                },
                schema=schema,
            )
            writer.write_table(table)
            written += n
    seconds = time.perf_counter() - started
    conn.send(Measured(seconds, peak_rss_gb(), {"bytes": Path(out_path).stat().st_size}))


def run_bench(cardholders: int, seed: int, keep: bool) -> dict[str, Any]:
    """Runs the generator and the floor; returns the result record."""
    work = Path(tempfile.mkdtemp(prefix="nba-bench-generate-", dir="/tmp"))
    try:
        world = in_child(_generate_child, cardholders, seed, str(work / "data"))
        transactions = world.detail["rows_by_table"]["transactions"]
        floor = in_child(_floor_child, transactions, cardholders, str(work / "floor.parquet"))
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    total_rows = sum(world.detail["rows_by_table"].values())
    return {
        "cardholders": cardholders,
        "seed": seed,
        "wall_seconds": round(world.seconds, 2),
        "peak_rss_gb": round(world.peak_rss_gb, 3),
        "transactions": transactions,
        "transactions_per_second": round(transactions / world.seconds),
        "rows_per_second_all_tables": round(total_rows / world.seconds),
        "rows_by_table": world.detail["rows_by_table"],
        "oracle_rows": world.detail["oracle_rows"],
        "data_bytes": sum(world.detail["bytes_by_file"].values()),
        "bytes_by_file": world.detail["bytes_by_file"],
        "oracle_bytes": world.detail["oracle_bytes"],
        "floor_pyarrow_write_seconds": round(floor.seconds, 2),
        "floor_transactions_per_second": round(transactions / floor.seconds),
        "floor_peak_rss_gb": round(floor.peak_rss_gb, 3),
        "slowdown_vs_floor": round(world.seconds / floor.seconds, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pyarrow": pa.__version__,
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cardholders", type=int, default=100_000, help="cardholders to generate (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the generated directory under /tmp")
    args = parser.parse_args(argv)
    if args.cardholders < 1:
        parser.error(f"`--cardholders` must be a positive integer, got {args.cardholders}")
    result = run_bench(args.cardholders, args.seed, args.keep)
    print(
        f"generate_world: {result['cardholders']:,} cardholders, {result['transactions']:,} transactions "
        f"in {result['wall_seconds']:.1f} s ({result['transactions_per_second']:,} tx/s, "
        f"{result['rows_per_second_all_tables']:,} rows/s over all tables), peak RSS {result['peak_rss_gb']:.2f} GB, "
        f"{result['data_bytes'] / 1e6:,.1f} MB on disk"
    )
    print(
        f"floor (pyarrow writes the same transaction rows): {result['floor_pyarrow_write_seconds']:.1f} s "
        f"({result['floor_transactions_per_second']:,} tx/s); generator is {result['slowdown_vs_floor']:.1f}x the floor"
    )
    save_run(result, RESULTS_PATH, "generate_world")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
