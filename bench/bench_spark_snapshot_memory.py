"""Benchmark: the driver's peak memory while `nba profiles build --engine spark` writes a snapshot, with the
rows collected to the driver (`toArrow`, the path before issue 17's last step) and written by the executors
then streamed (`write_profile_parts` + `write_snapshot_parts`, today's path).

Each way runs in a child process of its own (Spark `local[2]`, a JVM each), on the same data and model:
the snapshot is built, then the child reports its own peak resident memory (the Python driver's VmHWM)
and the JVM's (the driver JVM, which in local mode also runs the executors' tasks), the time, and the
files' checksums (both ways must write the same bytes). Prints them and writes
bench/results/spark_snapshot_memory_<data folder>.json.

    python bench/bench_spark_snapshot_memory.py --data /tmp/nba-bench-spark/world-20000 --model MODEL_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
WAYS = ("collect", "parts")


def _peak_kib(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def run_one(way: str, data: Path, model: Path, out: Path) -> dict[str, Any]:
    """In the child: builds the snapshot one way and measures."""
    from nba.model import load_bundle
    from nba.profiles import compute_profile_tables, estimate_spend, write_snapshot
    from training.engine_job import build_snapshot
    from training.spark_data import open_spark_data
    from training.spark_session import spark_settings, start_spark

    spark = start_spark(spark_settings("local[2]"))
    jvms = _children(os.getpid())
    started = time.perf_counter()
    with open_spark_data(spark, data) as opened:
        if way == "parts":
            manifest = build_snapshot(data, model, out, spark=opened).manifest
        else:
            bundle = load_bundle(model)
            day = opened.resolve_as_of(None)
            tables = compute_profile_tables(opened.sql, day, opened.mcc_map(), bundle.extra)
            estimates = {bundle.version: estimate_spend(tables.features, bundle)}
            manifest = write_snapshot(out, tables, day, estimates=estimates)
    seconds = time.perf_counter() - started
    jvm_kib = max((_peak_kib(pid) for pid in jvms), default=0)
    spark.stop()
    return {
        "way": way,
        "seconds": round(seconds, 1),
        "driver_python_peak_mib": round(_peak_kib("self") / 1024, 1),
        "driver_jvm_peak_mib": round(jvm_kib / 1024, 1),
        "cardholders": manifest.cardholders,
        "files": manifest.files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--child", choices=WAYS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.data, args.model, args.out)))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="nba-bench-snapshot-memory-") as work:
        for way in WAYS:
            load = os.getloadavg()[0]
            child = ["--child", way, "--out", str(Path(work) / way)]
            done = subprocess.run(
                [sys.executable, __file__, "--data", str(args.data), "--model", str(args.model), *child],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["load_1min_at_start"] = round(load, 1)
            results.append(result)
            print({k: v for k, v in result.items() if k != "files"})
    same = results[0]["files"] == results[1]["files"]
    report = {
        "data": str(args.data),
        "model": str(args.model),
        "master": "local[2]",
        "same_files": same,
        "runs": results,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"same files both ways: {same}")
    results_path = RESULTS_DIR / f"spark_snapshot_memory_{args.data.name}.json"
    results_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written {results_path}")


if __name__ == "__main__":
    main()
