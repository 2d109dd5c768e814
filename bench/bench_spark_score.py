"""Benchmark: batch scoring of a profile snapshot, Spark local[N] (`nba score --engine spark`) beside local
`nba score --profiles` → wall seconds of each, rows, and whether the two files are equal.

The snapshot and the model are a deployment bench_route/bench_workers made under /tmp (`--deploy`: a folder
with models/CURRENT and profiles/CURRENT; default the 1,000,000-cardholder one), the catalog comes from
`--data`. Each side runs in its own child process, local first:

- local: `load_engine(..., profiles=snapshot)` + `score_all` (the stored spend estimates are used);
- Spark: `start_spark(local[N])` (timed on its own) and `score_on_spark`, which reads the snapshot's three
  Parquet files with Spark, nests history and contact in the feature rows (a shuffle), and runs
  `assemble_profiles` + `Engine` + `score_rows` in each mapInArrow partition. The partitions run the spend
  estimator again (the stored estimates are row-aligned to the features file, not carried through the
  shuffle), which local `nba score --profiles` does not: that is part of the difference measured.

Results → bench/results/spark_score.json, under the cardholder count. Long on a busy 2-core machine: run it once.

    python bench/bench_spark_score.py
    python bench/bench_spark_score.py --deploy /tmp/nba-bench-worlds/deploy-world-20000-s7 \\
        --data /tmp/nba-bench-worlds/world-20000-s7
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "passive"  # as `nba` sets it (training/cli.py)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import ROOT, WORK_DIR, Measured, in_child, machine, peak_rss_gb, save_run

RESULTS_PATH = ROOT / "bench" / "results" / "spark_score.json"
CALL_REASON = "general"


def _local_child(conn: Connection, model: str, data: str, profiles: str, out: str) -> None:
    sys.path.insert(0, str(ROOT))
    from nba.decision import EngineConfig
    from training.engine_job import load_engine, score_all

    started = time.perf_counter()
    engine = load_engine(Path(model), Path(data), None, EngineConfig(), profiles=Path(profiles))
    loaded_s = time.perf_counter() - started
    result = score_all(engine, None, CALL_REASON, Path(out))
    detail = {
        "load_engine_s": round(loaded_s, 2),
        "score_all_s": round(result.seconds, 2),
        "rows": result.rows,
    }
    conn.send(Measured(time.perf_counter() - started, peak_rss_gb(), detail))


def _spark_child(
    conn: Connection, model: str, data: str, profiles: str, out: str, master: str, driver_memory: str
) -> None:
    sys.path.insert(0, str(ROOT))
    from nba.decision import EngineConfig
    from training.spark_score import score_on_spark
    from training.spark_session import SparkSettings, start_spark

    os.environ["NBA_SPARK_DRIVER_MEMORY"] = driver_memory
    started = time.perf_counter()
    session = start_spark(SparkSettings(master=master, conf={"spark.driver.memory": driver_memory}))
    session_s = time.perf_counter() - started
    # score_on_spark takes the session started above (getOrCreate), as `nba score --engine spark` would.
    result = score_on_spark(
        master, None, Path(model), Path(data), Path(profiles), EngineConfig(), None, CALL_REASON, Path(out)
    )
    partitions = session.conf.get("spark.sql.shuffle.partitions")
    session.stop()
    detail = {
        "session_start_s": round(session_s, 2),
        "score_s": round(result.seconds, 2),
        "rows": result.rows,
        "shuffle_partitions": partitions,
    }
    conn.send(Measured(time.perf_counter() - started, peak_rss_gb(), detail))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deploy", type=Path, default=WORK_DIR / "deploy-world-1000000-s7")
    parser.add_argument("--data", type=Path, default=WORK_DIR / "world-1000000-s7")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args(argv)
    model, profiles = args.deploy / "models", args.deploy / "profiles"
    for path in (model / "CURRENT", profiles / "CURRENT", args.data):
        if not path.exists():
            parser.error(
                f"{path} does not exist: make the deployment first (bench_route.py / bench_workers.py)"
            )
    snapshot = profiles / (profiles / "CURRENT").read_text().strip()
    cardholders = json.loads((snapshot / "manifest.json").read_text()).get("cardholders")
    with tempfile.TemporaryDirectory(prefix="nba-bench-spark-score-", dir="/tmp") as tmp:
        local_out, spark_out = Path(tmp) / "local.parquet", Path(tmp) / "spark.parquet"
        load = os.getloadavg()[0]
        print(f"local nba score --profiles {snapshot} (load {load:.1f}) ...", flush=True)
        local = in_child(_local_child, str(model), str(args.data), str(snapshot), str(local_out))
        print(f"  {local.seconds:.1f} s, peak RSS {local.peak_rss_gb:.2f} GB: {local.detail}", flush=True)
        load_spark = os.getloadavg()[0]
        print(
            f"nba score --engine spark --spark-master {args.master} (load {load_spark:.1f}) ...", flush=True
        )
        spark = in_child(
            _spark_child,
            str(model),
            str(args.data),
            str(snapshot),
            str(spark_out),
            args.master,
            args.driver_memory,
        )
        print(f"  {spark.seconds:.1f} s: {spark.detail}", flush=True)
        import pyarrow.parquet as pq

        equal = pq.read_table(local_out).equals(pq.read_table(spark_out))
    result = {
        "cardholders": cardholders,
        "snapshot": str(snapshot),
        "call_reason": CALL_REASON,
        "local": {
            "wall_s": round(local.seconds, 2),
            "peak_rss_gb": round(local.peak_rss_gb, 2),
            "load_average_before": round(load, 2),
            **local.detail,
        },
        "spark": {
            "master": args.master,
            "wall_s": round(spark.seconds, 2),
            "driver_python_peak_rss_gb": round(spark.peak_rss_gb, 2),
            "load_average_before": round(load_spark, 2),
            **spark.detail,
        },
        "ratio_spark_to_local": round(spark.seconds / local.seconds, 2),
        "files_equal": equal,
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"Spark / local = {result['ratio_spark_to_local']}x; files equal: {equal}")
    save_run(result, RESULTS_PATH, "spark_score")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
