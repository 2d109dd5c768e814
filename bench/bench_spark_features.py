"""Benchmark: the feature SQL on Spark (local[2], local[1]) beside DuckDB on the same Parquet world, and the
same numbers check at that scale (serving snapshot and training snapshots, column by column).

Makes a world of `--cardholders` (default 20,000, about 2 M transactions; 200,000 is about 20 M) in Parquet
under /tmp with `nba generate`, then in this process builds every cardholder's features with DuckDB, and,
in one child process per Spark master (a JVM each, so local[1] and local[2] do not share one), times:
the session's start, opening the data's views, the first feature run (planning, code generation and the
JVM's warm-up included) and a second run of the same statement (a new plan, the JVM warm), then the
training snapshots (one per presentation day, as `nba train --engine spark` computes them). Every Spark
result is compared with DuckDB's column by column: money and counts equal, shares and trends within 1e-12
relative. Prints the numbers and writes bench/results/spark_features.json.

    python bench/bench_spark_features.py                        # 20,000 cardholders, local[2] and local[1]
    python bench/bench_spark_features.py --cardholders 200000   # about 20 M transactions
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "spark_features.json"
RATIO_PREFIXES = ("share_", "trend_")


def make_world(cardholders: int, work: Path) -> Path:
    data = work / f"world-{cardholders}"
    if (data / "transactions.parquet").exists():
        return data
    nba = Path(sys.executable).parent / "nba"
    subprocess.run(
        [
            str(nba),
            "generate",
            "--cardholders",
            str(cardholders),
            "--out",
            str(data),
            "--format",
            "parquet",
            "--seed",
            "7",
            "--oracle",
            str(work / f"world-{cardholders}.oracle.parquet"),
        ],
        check=True,
    )
    return data


def training_pairs(data: Path) -> pa.Table:
    talks = pq.read_table(data / "conversations.parquet", columns=["cardholder_id", "presented_at"])
    return pa.table({"cardholder_id": talks.column("cardholder_id"), "as_of": talks.column("presented_at")})


def compare(got: pa.Table, expected: pa.Table) -> str | None:
    """None when the tables hold the same numbers (ratios within 1e-12 relative), else the first difference."""
    if got.schema != expected.schema:
        return f"schemas differ: {got.schema} against {expected.schema}"
    if got.num_rows != expected.num_rows:
        return f"{got.num_rows} rows against {expected.num_rows}"
    for name in expected.column_names:
        a, b = got.column(name), expected.column(name)
        if name.startswith(RATIO_PREFIXES):
            x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
            if not np.allclose(x, y, rtol=1e-12, atol=0.0, equal_nan=True):
                return f"{name}: beyond 1e-12 relative"
        elif not a.equals(b):
            return f"{name}: not equal"
    return None


def run_duckdb(data: Path, out: Path) -> dict[str, Any]:
    from nba.contract import load_mcc_map, open_data
    from nba.features import FeatureConfig, build_cardholder_features, select_extra_columns, snapshot_all_sql
    from training.pairs import compute_snapshots

    started = time.perf_counter()
    with open_data(data) as source:
        extra = select_extra_columns(source.con, FeatureConfig())
        as_of = source.resolve_as_of(None)
        t = time.perf_counter()
        table = build_cardholder_features(source.con, snapshot_all_sql(as_of), load_mcc_map(None), extra)
        serving_s = time.perf_counter() - t
        t = time.perf_counter()
        training = compute_snapshots(source, training_pairs(data), load_mcc_map(None), extra).table
        training_s = time.perf_counter() - t
    pq.write_table(table, out / "duckdb-serving.parquet")
    pq.write_table(training, out / "duckdb-training.parquet")
    return {
        "serving_seconds": round(serving_s, 2),
        "training_snapshots_seconds": round(training_s, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        "rows": table.num_rows,
        "training_snapshots": training.num_rows,
    }


def run_spark_child(data: Path, out: Path, master: str, training: bool) -> dict[str, Any]:
    """In a child process: one JVM per master."""
    from nba.contract import load_mcc_map
    from nba.features import FeatureConfig, build_cardholder_features, select_extra_columns, snapshot_all_sql
    from training.pairs import compute_snapshots, with_feature_sql
    from training.spark_data import open_spark_data
    from training.spark_session import SparkSettings, start_spark

    result: dict[str, Any] = {"master": master}
    t = time.perf_counter()
    spark = start_spark(SparkSettings(master, {"spark.driver.memory": "4g"}))
    result["session_start_seconds"] = round(time.perf_counter() - t, 2)
    try:
        t = time.perf_counter()
        with open_spark_data(spark, data) as opened:
            extra = select_extra_columns(opened.sql, FeatureConfig())
            as_of = opened.resolve_as_of(None)
            mcc_map = opened.mcc_map()
            result["open_and_as_of_seconds"] = round(time.perf_counter() - t, 2)
            sql = snapshot_all_sql(as_of, opened.sql.dialect)
            for run in ("first", "second"):
                t = time.perf_counter()
                table = build_cardholder_features(opened.sql, sql, mcc_map, extra)
                result[f"serving_{run}_seconds"] = round(time.perf_counter() - t, 2)
            pq.write_table(table, out / f"spark-{master}-serving.parquet")
            if training:
                from nba.contract import open_data

                with open_data(data) as source:
                    t = time.perf_counter()
                    pairs = compute_snapshots(
                        with_feature_sql(source, opened.sql), training_pairs(data), load_mcc_map(None), extra
                    ).table
                    result["training_snapshots_seconds"] = round(time.perf_counter() - t, 2)
                pq.write_table(pairs, out / f"spark-{master}-training.parquet")
    finally:
        spark.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nba-bench-spark"))
    parser.add_argument("--masters", default="local[2],local[1]")
    parser.add_argument("--child", nargs=3, metavar=("DATA", "OUT", "MASTER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        data, out, master = args.child
        print(json.dumps(run_spark_child(Path(data), Path(out), master, master == "local[2]")))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = make_world(args.cardholders, args.work)
    generate_s = time.perf_counter() - t
    out = args.work / f"out-{args.cardholders}"
    out.mkdir(exist_ok=True)
    transactions = pq.ParquetFile(data / "transactions.parquet").metadata.num_rows
    print(f"world: {args.cardholders:,} cardholders, {transactions:,} transactions ({generate_s:.0f} s)")
    load_before = os.getloadavg()
    duck = run_duckdb(data, out)
    print(
        f"duckdb: serving {duck['serving_seconds']} s, training snapshots {duck['training_snapshots_seconds']} s"
    )
    expected_serving = pq.read_table(out / "duckdb-serving.parquet")
    expected_training = pq.read_table(out / "duckdb-training.parquet")
    sparks = []
    for master in args.masters.split(","):
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(data), str(out), master],
            check=True,
            capture_output=True,
            text=True,
        )
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        measured["serving_same_numbers"] = (
            compare(pq.read_table(out / f"spark-{master}-serving.parquet"), expected_serving) or "equal"
        )
        if "training_snapshots_seconds" in measured:
            measured["training_same_numbers"] = (
                compare(pq.read_table(out / f"spark-{master}-training.parquet"), expected_training) or "equal"
            )
        measured["serving_second_vs_duckdb"] = round(
            measured["serving_second_seconds"] / duck["serving_seconds"], 1
        )
        print(json.dumps(measured))
        sparks.append(measured)
    result = {
        "benchmark": "spark_features",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 1) for x in load_before],
            "load_average_after": [round(x, 1) for x in os.getloadavg()],
        },
        "cardholders": args.cardholders,
        "transactions": transactions,
        "training_snapshots": duck["training_snapshots"],
        "duckdb": duck,
        "spark": sparks,
        "note": "timings on a shared 2-core machine with other jobs running: inflated (see load averages)",
    }
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
