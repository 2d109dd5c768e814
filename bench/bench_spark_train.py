"""Check at full length: `nba train --engine spark` trains the same model as `nba train` on the same data.

Runs `nba train` twice on a copy of data_samples/ (or `--data`), with the same seed and one LightGBM
thread, once on DuckDB and once with `--engine spark --spark-master local[2]`, and compares the two model
folders: the LightGBM model text and every other file's SHA-256 but the manifest (whose version and
creation time differ), and the manifests' training-data summaries and metrics. Equal model text means
equal training rows, row for row, in the same order. Too slow for `make test` (every feature statement of
a training run, each a Spark job of its own); prints the result and writes
bench/results/spark_train.json.

    python bench/bench_spark_train.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "spark_train.json"


def train(data: Path, models: Path, extra: list[str]) -> float:
    nba = Path(sys.executable).parent / "nba"
    started = time.perf_counter()
    subprocess.run(
        [
            str(nba),
            "train",
            "--data",
            str(data),
            "--out",
            str(models),
            "--seed",
            "0",
            "--threads",
            "1",
            "-q",
            *extra,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def model_folder(models: Path) -> Path:
    return next(p for p in models.iterdir() if p.is_dir() and not p.name.startswith("."))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data_samples")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nba-bench-spark-train"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    load_before = os.getloadavg()
    duck_s = train(args.data, args.work / "duckdb", [])
    spark_s = train(args.data, args.work / "spark", ["--engine", "spark", "--spark-master", "local[2]"])
    duck, spark = model_folder(args.work / "duckdb"), model_folder(args.work / "spark")
    a = json.loads((duck / "manifest.json").read_text())
    b = json.loads((spark / "manifest.json").read_text())
    same_files = {name: a["files"][name] == b["files"].get(name) for name in sorted(a["files"])}
    result: dict[str, Any] = {
        "benchmark": "spark_train",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": str(args.data),
        "duckdb_seconds": round(duck_s, 1),
        "spark_local2_seconds": round(spark_s, 1),
        "same_model_text": (duck / "model.txt").read_bytes() == (spark / "model.txt").read_bytes(),
        "same_file_checksums": same_files,
        "same_data_summary": a["data_summary"] == b["data_summary"],
        "same_metrics": a["metrics"] == b["metrics"],
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "note": "timings on a shared 2-core machine with other jobs running: inflated",
    }
    print(json.dumps(result, indent=2))
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
