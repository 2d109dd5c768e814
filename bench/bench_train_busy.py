"""Benchmark: `nba train`'s LightGBM work on a quiet machine vs beside one other CPU-bound process → medians
and ratios per OpenMP setting (wait policy, LightGBM threads).

Every run is a fresh process (so the OpenMP variables take effect before LightGBM loads). Runs are
interleaved — for each repeat, every setting quiet and busy, the order flipped every other repeat — so the
machine's own load drifts across all of them alike. "Busy" is one extra process spinning in a Python loop
for the whole run. Two modes:

- `train`: the real command, `python -m training.cli train`, on the data directory: its wall time and
  its LightGBM steps (spend estimator, model fit, refit) from its step lines;
- `estimator` (cheaper, for a loaded machine): the spend estimator's fit — 16 LightGBM regressions of
  150 rounds, the step that went from 8 s to 127 s under contention — on every cardholder's features
  as `nba features` computes them for the data directory, timed inside the process.

Reports per setting the medians, the busy/quiet ratio and the machine's load average around the runs,
and writes bench/results/train_busy.json (one entry per mode).

    python bench/bench_train_busy.py --mode train               # data_samples, 2 repeats
    python bench/bench_train_busy.py --mode estimator --repeats 3 --settings today,passive
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS_PATH: Final = ROOT / "bench" / "results" / "train_busy.json"
STEP_LINE: Final = re.compile(r"^  (?P<step>[a-z ]+): (?P<seconds>\d+\.\d) s")
LIGHTGBM_STEPS: Final = ("spend estimator", "model fit", "refit")

# name → (environment set for the run, --threads). "today" is what `nba train` did before this bench:
# a 10,000-iteration spin before a waiting thread sleeps, every core.
SETTINGS: Final[dict[str, tuple[dict[str, str], int]]] = {
    "today": ({"GOMP_SPINCOUNT": "10000"}, 2),
    "passive": ({"OMP_WAIT_POLICY": "passive"}, 2),
    "passive-1thread": ({"OMP_WAIT_POLICY": "passive"}, 1),
    "today-1thread": ({"GOMP_SPINCOUNT": "10000"}, 1),
}
OMP_VARIABLES: Final = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def run_train(data: Path, setting: str, busy: bool) -> dict[str, float]:
    """One `nba train` in a fresh process: its wall seconds and its step seconds (from its step lines)."""
    variables, threads = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES} | variables
    out = Path(tempfile.mkdtemp(prefix="nba-busy-models-"))
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "training.cli",
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--threads",
                str(threads),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
        shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"nba train failed ({setting}, busy={busy}): {done.stderr.strip()[-500:]}")
    steps = {
        m["step"]: float(m["seconds"]) for line in done.stderr.splitlines() if (m := STEP_LINE.match(line))
    }
    return {"wall": wall, "lightgbm": sum(steps.get(s, 0.0) for s in LIGHTGBM_STEPS), **steps}


def _fit_estimator_child(features: str, threads: int) -> None:
    """In the child: the spend estimator's fit on the features file; prints its seconds."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import pyarrow.parquet as pq

    from nba.model import SpendEstimator

    table = pq.read_table(features)
    names = [f.name for f in table.schema if str(f.type).startswith(("double", "int", "float"))]
    X = np.column_stack([table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names])
    started = time.perf_counter()
    SpendEstimator(num_threads=threads).fit(X, names)
    print(json.dumps({"wall": time.perf_counter() - started}))


def run_estimator(features: Path, setting: str, busy: bool) -> dict[str, float]:
    """One spend estimator fit in a fresh process: its seconds (imports and loading not counted)."""
    variables, threads = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES} | variables
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.bench_train_busy import _fit_estimator_child; "
    code += f"_fit_estimator_child({str(features)!r}, {threads})"
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    if done.returncode != 0:
        raise SystemExit(f"estimator fit failed ({setting}, busy={busy}): {done.stderr.strip()[-500:]}")
    seconds = float(json.loads(done.stdout.strip().splitlines()[-1])["wall"])
    return {"wall": seconds, "lightgbm": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data_samples")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--settings", default="today,passive,passive-1thread")
    parser.add_argument("--mode", choices=("train", "estimator"), default="train")
    args = parser.parse_args()
    features = Path(tempfile.gettempdir()) / "nba-busy-features.parquet"
    if args.mode == "estimator":
        subprocess.run(
            [
                sys.executable,
                "-m",
                "training.cli",
                "features",
                "--data",
                str(args.data),
                "--out",
                str(features),
                "-q",
            ],
            cwd=ROOT,
            check=True,
        )
    settings = args.settings.split(",")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    runs: dict[tuple[str, bool], list[dict[str, float]]] = {
        (s, b): [] for s in settings for b in (False, True)
    }
    loads = [os.getloadavg()[0]]
    for repeat in range(args.repeats):
        for setting in settings:
            for busy in (False, True) if repeat % 2 == 0 else (True, False):
                measured = (
                    run_train(args.data, setting, busy)
                    if args.mode == "train"
                    else run_estimator(features, setting, busy)
                )
                runs[(setting, busy)].append(measured)
                loads.append(os.getloadavg()[0])
                print(
                    f"repeat {repeat + 1} {setting:<16} {'busy ' if busy else 'quiet'} wall {measured['wall']:6.1f} s"
                    f"  lightgbm steps {measured['lightgbm']:6.1f} s  (load {loads[-1]:.1f})",
                    flush=True,
                )
    summary: dict[str, Any] = {}
    print(
        f"\n{'setting':<16} {'quiet wall':>10} {'busy wall':>10} {'ratio':>6}   {'quiet lgbm':>10} {'busy lgbm':>10} {'ratio':>6}"
    )
    for setting in settings:
        row: dict[str, Any] = {"env": SETTINGS[setting][0], "threads": SETTINGS[setting][1]}
        for what in ("wall", "lightgbm"):
            quiet = statistics.median(r[what] for r in runs[(setting, False)])
            busy = statistics.median(r[what] for r in runs[(setting, True)])
            row[what] = {
                "quiet_median_s": round(quiet, 2),
                "busy_median_s": round(busy, 2),
                "ratio": round(busy / quiet, 2),
            }
        row["runs"] = {("busy" if b else "quiet"): runs[(setting, b)] for b in (False, True)}
        summary[setting] = row
        w, g = row["wall"], row["lightgbm"]
        print(
            f"{setting:<16} {w['quiet_median_s']:>9.1f}s {w['busy_median_s']:>9.1f}s {w['ratio']:>6.2f}   "
            f"{g['quiet_median_s']:>9.1f}s {g['busy_median_s']:>9.1f}s {g['ratio']:>6.2f}"
        )
    print(
        f"load average (1 min) during the runs: {min(loads):.1f} to {max(loads):.1f}, median {statistics.median(loads):.1f}"
    )
    entry = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": str(args.data),
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average_1min": {"min": min(loads), "max": max(loads), "median": statistics.median(loads)},
        "settings": summary,
    }
    results = json.loads(RESULTS_PATH.read_text(encoding="utf-8")) if RESULTS_PATH.exists() else {}
    results[args.mode] = entry
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
