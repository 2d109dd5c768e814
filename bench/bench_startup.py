"""Bench the service's start: a model folder → seconds to load its bundle, and `nba serve` → seconds until /readyz.

Two numbers, each a median: `load_bundle` on the model in service, in process (`--loads` times), and
`nba serve` from the command to its first ready /readyz answer (`--starts` times, its profile cache
entry already built, so the start is the model's loading, the engine's assembly and the warm-up, not a
profile build). The deployment is the `make run` one (models/, profiles/, data_samples/) unless given.
Prints the numbers and writes bench/results/startup.json under `--label` (before / after a change).

    python bench/bench_startup.py --label after [--models-dir models --profiles-dir profiles]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nba.model import load_bundle, read_current
from nba.profiles import read_current_snapshot
from tests.deployment import Deployment
from tests.serving import serve_process

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "startup.json"


def median_load_s(model_dir: Path, loads: int) -> float:
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        load_bundle(model_dir)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def serve_ready_s(deployment: Deployment, var: Path) -> float:
    """Seconds from starting `nba serve` (as the tests start it: tests/serving.py) to its first 200 on /readyz."""
    started = time.perf_counter()
    with serve_process(deployment, var, log_level="warning"):
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--profiles-dir", type=Path, default=ROOT / "profiles")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data_samples")
    parser.add_argument("--loads", type=int, default=9, help="in-process loads of the bundle (default 9)")
    parser.add_argument("--starts", type=int, default=3, help="`nba serve` starts (default 3)")
    parser.add_argument(
        "--label", default="run", help="the result's name in startup.json (e.g. before, after)"
    )
    args = parser.parse_args(argv)
    version = read_current(args.models_dir)
    if version is None:
        raise SystemExit(f"{args.models_dir} has no CURRENT model (make run, or train one with --promote)")
    load_s = median_load_s(args.models_dir / version, args.loads)
    profiles_as_of = read_current_snapshot(args.profiles_dir)
    if profiles_as_of is None:
        raise SystemExit(f"{args.profiles_dir} has no CURRENT profile snapshot (make run)")
    deployment = Deployment(
        args.data_dir, args.models_dir, args.profiles_dir, version, date.fromisoformat(profiles_as_of)
    )
    var = Path(tempfile.mkdtemp(prefix="nba-bench-startup-"))
    try:
        serve_ready_s(deployment, var / "warm")  # builds the profile cache entry, if missing
        starts = [serve_ready_s(deployment, var / str(i)) for i in range(args.starts)]
    finally:
        shutil.rmtree(var, ignore_errors=True)
    load = os.getloadavg()[0]
    result = {
        "model_version": version,
        "load_bundle_s_median": round(load_s, 4),
        "serve_ready_s_median": round(statistics.median(starts), 3),
        "serve_ready_s": [round(s, 3) for s in starts],
        "load_average_1min": round(load, 2),
    }
    print(json.dumps(result, indent=2))
    results = (
        json.loads(RESULTS_PATH.read_text())
        if RESULTS_PATH.exists()
        else {"benchmark": "startup", "runs": {}}
    )
    results["runs"][args.label] = result
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
