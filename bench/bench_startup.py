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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from nba.model import load_bundle, read_current

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "startup.json"
NBA = Path(sys.executable).parent / "nba"


def median_load_s(model_dir: Path, loads: int) -> float:
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        load_bundle(model_dir)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_ready_s(models_dir: Path, profiles_dir: Path, data_dir: Path, var: Path) -> float:
    """Seconds from starting `nba serve` to its first 200 on /readyz; the process is stopped after."""
    var.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {
        **os.environ,
        "NBA_MODELS_DIR": str(models_dir),
        "NBA_PROFILES_DIR": str(profiles_dir),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_DATABASE_URL": f"sqlite:///{var / 'feedback.db'}",
        "NBA_BUFFER_PATH": str(var / "buffer.jsonl"),
        "NBA_PORT": str(port),
        "NBA_WATCH_INTERVAL_S": "0",
    }
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(NBA), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit("nba serve exited before it was ready")
            time.sleep(0.02)
    finally:
        server.terminate()
        server.wait(timeout=30)


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
    var = Path(tempfile.mkdtemp(prefix="nba-bench-startup-"))
    try:
        serve_ready_s(
            args.models_dir, args.profiles_dir, args.data_dir, var / "warm"
        )  # the profile cache entry
        starts = [
            serve_ready_s(args.models_dir, args.profiles_dir, args.data_dir, var / str(i))
            for i in range(args.starts)
        ]
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
