"""Benchmark: how many bytes the serving feature statement shuffles on Spark, per transaction row.

The "on paper" sizing of docs/spark.md rests on it: the feature query joins every transaction to its
cardholder's snapshot and aggregates, so its shuffle grows with the transactions. This runs the statement
once (`nba features --engine spark`'s, every cardholder as of the day after the data) on a data directory
in Spark `local[2]`, then reads Spark's own stage metrics (the status store every SparkContext keeps, web UI
or not): per stage its input rows, shuffle bytes written and read, and time. Prints them and writes
bench/results/spark_shuffle_<data folder>.json.

    python bench/bench_spark_shuffle.py --data /tmp/nba-bench-spark/world-20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"


def stage_metrics(event_dir: Path) -> list[dict[str, Any]]:
    """Every completed stage's metrics, from Spark's event log (its accumulables, as the history server
    reads them)."""
    names = {
        "internal.metrics.input.recordsRead": "input_rows",
        "internal.metrics.input.bytesRead": "input_bytes",
        "internal.metrics.shuffle.write.bytesWritten": "shuffle_write_bytes",
        "internal.metrics.shuffle.write.recordsWritten": "shuffle_write_rows",
        "internal.metrics.shuffle.read.remoteBytesRead": "shuffle_read_remote_bytes",
        "internal.metrics.shuffle.read.localBytesRead": "shuffle_read_local_bytes",
        "internal.metrics.executorRunTime": "executor_run_ms",
    }
    found = []
    for log in sorted(p for p in event_dir.rglob("*") if p.is_file()):
        for line in log.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            if event.get("Event") != "SparkListenerStageCompleted":
                continue
            info = event["Stage Info"]
            stage: dict[str, Any] = {"stage": info["Stage ID"], "tasks": info["Number of Tasks"]}
            stage.update(dict.fromkeys(names.values(), 0))
            for item in info.get("Accumulables", []):
                key = names.get(item.get("Name", ""))
                if key is not None:
                    stage[key] = int(item["Value"])
            found.append(stage)
    return sorted(found, key=lambda s: s["stage"])


def _first_stage_after(event_dir: Path, mark_ms: float) -> int:
    """The first stage submitted after `mark_ms` (the feature statement's, not opening the data's)."""
    first = None
    for log in sorted(p for p in event_dir.rglob("*") if p.is_file()):
        for line in log.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            if event.get("Event") == "SparkListenerStageSubmitted":
                info = event["Stage Info"]
                if info.get("Submission Time", 0) >= mark_ms and (first is None or info["Stage ID"] < first):
                    first = info["Stage ID"]
    return first if first is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from nba.features import FeatureConfig, build_cardholder_features, select_extra_columns, snapshot_all_sql
    from training.spark_data import open_spark_data
    from training.spark_session import SparkSettings, start_spark

    transactions = pq.ParquetFile(args.data / "transactions.parquet").metadata.num_rows
    cardholders = pq.ParquetFile(args.data / "cardholders.parquet").metadata.num_rows
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="nba-spark-events-") as events:
        # One plain file (Spark 4 rolls and compresses event logs by default).
        conf = {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": Path(events).as_uri(),
            "spark.eventLog.rolling.enabled": "false",
            "spark.eventLog.compress": "false",
            # As bench_spark_features.py: the 200,000-cardholder world runs out of the default 1 GB heap.
            "spark.driver.memory": "4g",
        }
        spark = start_spark(SparkSettings(args.master, conf))
        try:
            with open_spark_data(spark, args.data) as data:
                as_of = data.resolve_as_of(None)
                extra = select_extra_columns(data.sql, FeatureConfig())
                mcc_map = data.mcc_map()
                started = time.perf_counter()
                mark = time.time() * 1000
                table = build_cardholder_features(
                    data.sql, snapshot_all_sql(as_of, data.sql.dialect), mcc_map, extra
                )
                seconds = time.perf_counter() - started
        finally:
            spark.stop()
        stages = [
            s for s in stage_metrics(Path(events)) if s["stage"] >= _first_stage_after(Path(events), mark)
        ]
    written = sum(s["shuffle_write_bytes"] for s in stages)
    # The stages that read the transactions file (their input rows reach its row count): what they write
    # to the shuffle is the transactions' share, the part that grows with the data.
    scans = [s for s in stages if s["input_rows"] >= transactions]
    scan_written = sum(s["shuffle_write_bytes"] for s in scans)
    result = {
        "data": str(args.data),
        "master": args.master,
        "transactions": transactions,
        "cardholders": cardholders,
        "feature_rows": table.num_rows,
        "statement_s": round(seconds, 1),
        "stages": len(stages),
        "shuffle_write_bytes": written,
        "shuffle_write_bytes_per_transaction": round(written / transactions, 1),
        "transaction_scan_stages": [s["stage"] for s in scans],
        "transaction_scan_shuffle_bytes_per_row": round(scan_written / transactions, 1),
        "load_1min_at_start": round(load, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "per_stage": stages,
    }
    summary = {k: v for k, v in result.items() if k != "per_stage"}
    print(json.dumps(summary, indent=2))
    results_path = RESULTS_DIR / f"spark_shuffle_{args.data.resolve().name}.json"
    results_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written {results_path}")


if __name__ == "__main__":
    main()
