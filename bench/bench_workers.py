"""Bench the suggestions endpoint with 1 and 2 workers, beside the bare FastAPI endpoint with the same workers.

For each server (`nba serve --workers N`, `bench/bare_app.py PORT N`) and N in 1, 2:
- capacity: wrk, 1 thread, 32 connections for `--seconds` s, random cardholders: requests/s, p50/p99;
- with 1 worker (one process), the server's CPU per request under wrk, its event loop (main thread) and
  its other threads (the decision-log writer, the store's pools) apart, from /proc: where a request's
  cost goes, beside the bare endpoint's;
- with 2 workers, an open loop at `--rate` (500) requests/s for `--seconds` s across both workers:
  p50/p99/max from the scheduled send time, errors (bench_api's generator).
The core split is the same for every server and worker count: wrk is pinned to core 0 (bench_api's
`run_wrk`), the open-loop generator (this process) and the server's workers are not pinned: with 2
cores, pinning the server to one would leave a second worker nothing to run on. Ratios reported: ours/bare at
each N, ours(2)/ours(1) against bare(2)/bare(1) (goal: ≥ 0.9 × it). Then, with 1 worker, the bare endpoint
doing the same durable work as ours for every answered call (`bare_app.py` with `BARE_DURABLE_DIR`: the
journal line and the store's batch insert, into its own database of the same kind): ours against it, by
requests/s and by CPU a request. Results → bench/results/workers.json.
Numbers taken while other work runs on the machine are inflated: the result records the load average.

`--store postgresql` runs the nba servers on a local PostgreSQL (the tests' cluster, `tests/pg.py`:
fsync and synchronous_commit off, on the same two cores as everything else) instead of a SQLite file,
→ workers-postgresql.json; `--call-ids` has wrk send a new call id with every request, as the agent's
desktop does, so each first request is claimed in the store (the bare endpoint ignores it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import ensure_deployment, open_loop, run_wrk, wait_ready
from bench_train import ensure_model, ensure_world, machine, save_run

from api.keys import hash_token

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "workers.json"
TOKEN = "bench-token"  # bench_api's WRK_SCRIPT sends this key


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) each thread of process `pid` has used so far, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            used[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_per_request(pid: int, before: dict[int, float], requests: float) -> dict[str, float]:
    """With one worker (the server is one process): CPU µs per request of the event loop (the main
    thread) and of every other thread (the decision-log writer, the store's pools) during the run."""
    after = thread_cpu_s(pid)
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    others = sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items() if tid != pid)
    per = 1e6 / max(requests, 1.0)
    return {"event_loop_us": main * per, "other_threads_us": others * per, "total_us": (main + others) * per}


def measure(
    name: str, command: list[str], env: dict[str, str], port: int, ids_file: Path, ids: list[str], args: Any
) -> dict[str, Any]:
    call_ids = bool(args.call_ids) and name.startswith("nba")
    one_process = name.endswith("1")  # one worker: the server's own pid serves (uvicorn without a supervisor)
    base = f"http://127.0.0.1:{port}"
    server = start(command, env)
    try:
        wait_ready(f"{base}/healthz/lb" if name.startswith("nba") else f"{base}/v1/cardholders/x/suggestions")
        # Every worker warms up (the first requests pay imports and caches): enough calls to reach each.
        asyncio.run(open_loop(base, ids, 200, 3))
        try:
            before = thread_cpu_s(server.pid) if one_process else {}
            capacity = run_wrk(base, ids_file, args.seconds, call_ids=call_ids)
            cpu = cpu_per_request(server.pid, before, capacity["requests"]) if one_process else None
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"{name}: wrk failed: {exc.stdout} {exc.stderr}") from None
        fixed = asyncio.run(open_loop(base, ids, args.rate, args.seconds)) if "2" in name else None
    finally:
        server.terminate()
        server.wait(timeout=60)
    line = f"{name:>6}: wrk {capacity['requests_per_s']:,.0f} req/s p50 {capacity['p50_ms']:.2f} ms p99 {capacity['p99_ms']:.2f} ms"
    if fixed is not None:
        line += (
            f" | {args.rate:.0f}/s open loop p50 {fixed['p50_ms']:.2f} ms p99 {fixed['p99_ms']:.2f} ms "
            f"max {fixed['max_ms']:.1f} ms errors {fixed['errors']:.0f}"
        )
    if cpu is not None:
        line += (
            f" | CPU a request: event loop {cpu['event_loop_us']:.0f} µs, other threads "
            f"{cpu['other_threads_us']:.0f} µs"
        )
    print(line, flush=True)
    return {"wrk": capacity, "open_loop": fixed, "cpu_per_request": cpu}


@contextlib.contextmanager
def feedback_databases(store: str, work: Path) -> Iterator[Callable[[str], str]]:
    """A new, empty feedback database per name (letters, digits and `_`): SQLite files in `work`, or
    databases on a PostgreSQL cluster started here and stopped after."""
    if store == "sqlite":
        yield lambda name: f"sqlite:///{work / f'feedback-{name}.db'}"
        return
    sys.path.append(str(ROOT))  # after PYTHONPATH: `tests.pg` only
    from tests.pg import create_database, require_pg_bindir, start_pg_server, stop_pg_server

    bindir = require_pg_bindir()
    pg_root = Path(tempfile.mkdtemp(prefix="nba-bench-workers-pg-"))  # the server's user must reach it
    server = start_pg_server(pg_root, bindir)
    try:
        yield lambda name: create_database(server, f"feedback_{name}")
    finally:
        stop_pg_server(bindir, server.data_dir)
        shutil.rmtree(pg_root, ignore_errors=True)


def run_pair(
    workers: int,
    database_url: str,
    deploy: Path,
    data_dir: Path,
    work: Path,
    ids_file: Path,
    ids: list[str],
    nba: str,
    result: dict[str, Any],
    args: Any,
) -> None:
    """The bare endpoint, then nba, with `workers` workers each (results under bareN / nbaN)."""
    env = {
        "NBA_MODELS_DIR": str(deploy / "models"),
        "NBA_PROFILES_DIR": str(deploy / "profiles"),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_DATABASE_URL": database_url,
        "NBA_BUFFER_PATH": str(work / f"buffer-{workers}.jsonl"),
        "NBA_API_KEYS": json.dumps([{"name": "bench", "role": "agent", "sha256": hash_token(TOKEN)}]),
        "NBA_LOG_LEVEL": "warning",
        "NBA_PORT": "8741",
        "NBA_WORKERS": str(workers),
        "NBA_DRAIN_S": "0",
    }
    bare_cmd = [sys.executable, str(ROOT / "bench" / "bare_app.py"), "8742", str(workers)]
    result[f"bare{workers}"] = measure(f"bare{workers}", bare_cmd, {}, 8742, ids_file, ids, args)
    result[f"nba{workers}"] = measure(f"nba{workers}", [nba, "serve"], env, 8741, ids_file, ids, args)
    time.sleep(1.0)


def round_ratios(measured: dict[str, Any]) -> dict[str, float]:
    """One round's ratios: ours/bare at 1 and 2 workers, each one's 2/1 scaling, and ours against the bare
    endpoint doing the same durable work (1 worker; by requests/s and by CPU a request)."""

    def rps(key: str) -> float:
        return float(measured[key]["wrk"]["requests_per_s"])

    def cpu(key: str) -> float:
        return float(measured[key]["cpu_per_request"]["total_us"])

    return {
        "ours_over_bare_1": rps("nba1") / rps("bare1"),
        "ours_over_bare_2": rps("nba2") / rps("bare2"),
        "ours_over_bare_1_by_cpu": cpu("bare1") / cpu("nba1"),
        "scaling_nba": rps("nba2") / rps("nba1"),
        "scaling_bare": rps("bare2") / rps("bare1"),
        "ours_over_bare_durable_1": rps("nba1") / rps("bare_durable1"),
        "ours_over_bare_durable_1_by_cpu": cpu("bare_durable1") / cpu("nba1"),
    }


def describe(ratios: dict[str, float]) -> str:
    return (
        f"ours/bare 1 worker {ratios['ours_over_bare_1']:.2f} ({ratios['ours_over_bare_1_by_cpu']:.2f} by CPU a "
        f"request), 2 workers {ratios['ours_over_bare_2']:.2f}; 2/1 workers: ours {ratios['scaling_nba']:.2f}, "
        f"bare {ratios['scaling_bare']:.2f} (goal: ours ≥ 0.9 × bare = {0.9 * ratios['scaling_bare']:.2f}); "
        f"against the bare endpoint doing the same durable work: {ratios['ours_over_bare_durable_1']:.2f} by "
        f"requests/s, {ratios['ours_over_bare_durable_1_by_cpu']:.2f} by CPU a request"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--call-ids", action="store_true", help="wrk sends a new call id with every request")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every server, each on new databases; ratios are medians",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"`--repeat` must be a positive integer, got {args.repeat}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: run `make system-deps`")
    data_dir, _ = ensure_world(args.cardholders, args.seed)
    deploy = ensure_deployment(data_dir, ensure_model(data_dir))
    import pandas as pd

    ids = list(pd.read_parquet(data_dir / "cardholders.parquet", columns=["cardholder_id"])["cardholder_id"])
    work = Path(tempfile.mkdtemp(prefix="nba-bench-workers-"))
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    result: dict[str, Any] = {
        "cardholders": args.cardholders,
        "store": args.store,
        "call_ids": bool(args.call_ids),
        "machine_before": machine(),
        "rounds": [],
    }
    nba = str(Path(sys.executable).parent / "nba")
    with feedback_databases(args.store, work) as database_url:
        for round_ in range(args.repeat):
            # Each round on new, empty databases, so every round writes into stores of the same size.
            measured: dict[str, Any] = {}
            for workers in (1, 2):
                url = database_url(f"{workers}_{round_}")
                run_pair(workers, url, deploy, data_dir, work, ids_file, ids, nba, measured, args)
            # The reference that does the same durable work per answered call (journal line, store insert).
            durable = {
                "BARE_DURABLE_DIR": str(work / f"durable-{round_}"),
                "BARE_DURABLE_DATABASE_URL": database_url(f"durable_{round_}"),
            }
            bare_cmd = [sys.executable, str(ROOT / "bench" / "bare_app.py"), "8743", "1"]
            measured["bare_durable1"] = measure("bare_durable1", bare_cmd, durable, 8743, ids_file, ids, args)
            measured["ratios"] = round_ratios(measured)
            result["rounds"].append(measured)
            print(f"round {round_ + 1} of {args.repeat}: {describe(measured['ratios'])}", flush=True)
    # The medians over the rounds: the machine's noise moves a single run's ratios by ±15%.
    result["median_ratios"] = {
        key: statistics.median(r["ratios"][key] for r in result["rounds"])
        for key in result["rounds"][0]["ratios"]
    }
    result["machine_after"] = machine()
    print(f"median of {args.repeat} round(s): {describe(result['median_ratios'])}")
    path = RESULTS_PATH if args.store == "sqlite" else RESULTS_PATH.with_name(f"workers-{args.store}.json")
    save_run(result, path, "workers")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
