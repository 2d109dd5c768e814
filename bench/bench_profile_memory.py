"""Benchmark: the machine's memory (PSS) with 1 and 4 `nba serve` processes mapping one profile cache entry,
beside the bare FastAPI app with 1 and 4 processes; and `Engine.decide` on mapped against in-memory profiles.

Reuses the world and the deployment bench_api.py builds (`ensure_deployment`: a `--cardholders` world, by
default 1,000,000, scored by the model trained on the `--model-cardholders` world, its snapshot promoted)
and a cache folder beside them (kept for re-runs). Steps:

1. the cache entry: the first server started on an empty cache builds it (its ready time and PSS: a cold
   start), then the entry's checks are timed on their own (the cheap check on open, and the full SHA-256);
2. warm starts: 1 server (`nba serve`), then `nba serve --workers 4` on one port (the supervisor forks its
   workers once it has imported what they run), each worker mapping the entry; the machine's PSS (the sum
   of `Pss` in /proc/PID/smaps_rollup over the server and its children, its anonymous and file parts too)
   once all are ready and again after `--requests` suggestions per worker for random cardholders; with
   `--independent` also 4 independent `nba serve` processes on 4 ports; then the bare app
   (bench/bare_app.py) with 1 and 4 processes. An extra worker's cost is (PSS with 4 − PSS with 1) / 3,
   ours and bare's;
3. decide, in one child process: two engines over the same model, one on `profiles_from_snapshot`'s
   in-memory profiles and one on the mapped entry, timed call by call on the same random cardholders,
   alternating which goes first (p50/p99 in wall-clock and thread CPU time).

Prints the numbers and merges them into bench/results/profile_memory.json under the cardholder count.

    python bench/bench_profile_memory.py                      # 1,000,000 cardholders
    python bench/bench_profile_memory.py --cardholders 20000  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import ensure_deployment, wait_ready
from bench_engine import latency_summary
from bench_train import ROOT, WORK_DIR, ensure_model, ensure_world, in_child, machine, save_run

from api.keys import hash_token

RESULTS_PATH = ROOT / "bench" / "results" / "profile_memory.json"
TOKEN = "bench-token"
FIRST_PORT = 8741
EXTRA_WORKER_GOAL_MB = 150.0
ONE_WORKER_GOAL_MB = 1000.0


def pss_kb(pid: int) -> dict[str, int]:
    """`Pss`, `Pss_Anon` and `Pss_File` (kB) of a process and its children, from smaps_rollup."""
    total = {"Pss": 0, "Pss_Anon": 0, "Pss_File": 0}
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            lines = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            name, _, rest = line.partition(":")
            if name in total:
                total[name] += int(rest.split()[0])
    return total


def machine_pss_mb(pids: list[int]) -> dict[str, float]:
    sums = {"Pss": 0, "Pss_Anon": 0, "Pss_File": 0}
    for pid in pids:
        for name, kb in pss_kb(pid).items():
            sums[name] += kb
    return {
        "pss_mb": round(sums["Pss"] / 1024, 1),
        "pss_anon_mb": round(sums["Pss_Anon"] / 1024, 1),
        "pss_file_mb": round(sums["Pss_File"] / 1024, 1),
    }


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(servers: list[subprocess.Popen[bytes]]) -> None:
    for server in servers:
        server.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def ask(port: int, ids: list[str], n: int, seed: int) -> int:
    """`n` suggestions for random cardholders; the number answered 200."""
    rng = random.Random(seed)
    ok = 0
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": TOKEN}, timeout=30
    ) as client:
        for _ in range(n):
            response = client.get(f"/v1/cardholders/{rng.choice(ids)}/suggestions?call_reason=general")
            ok += response.status_code == 200
    return ok


def run_servers(
    label: str, command: Any, env: dict[str, str], count: int, ids: list[str] | None, requests: int
) -> dict[str, Any]:
    """`count` servers on consecutive ports: machine PSS when all are ready, and after `requests` each."""
    servers: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        for i in range(count):
            port = FIRST_PORT + i
            servers.append(start(command(port), {**env, "NBA_PORT": str(port)}))
            # One at a time: each start loads on its own, as a supervisor would start them.
            wait_ready(
                f"http://127.0.0.1:{port}"
                + ("/readyz" if ids is not None else "/v1/cardholders/x/suggestions")
            )
        ready_s = time.perf_counter() - started
        time.sleep(1.0)
        result: dict[str, Any] = {
            "processes": count,
            "ready_s": round(ready_s, 1),
            "at_ready": machine_pss_mb([s.pid for s in servers]),
        }
        if ids is not None and requests:
            answered = sum(ask(FIRST_PORT + i, ids, requests, seed=i) for i in range(count))
            result["requests_each"] = requests
            result["answered_200"] = answered
            result["after_requests"] = machine_pss_mb([s.pid for s in servers])
        print(f"  {label} × {count}: {json.dumps(result)}", flush=True)
        return result
    finally:
        stop(servers)


def supervised_workers(supervisor: int) -> list[int]:
    """The worker processes `nba serve --workers` forked (its children with its own command line)."""
    own = Path(f"/proc/{supervisor}/cmdline").read_bytes()
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(c) for c in children if Path(f"/proc/{c}/cmdline").read_bytes() == own]


def run_supervised(
    command: Any, env: dict[str, str], count: int, ids: list[str], requests: int
) -> dict[str, Any]:
    """`nba serve --workers count` on one port: the machine's PSS (supervisor and workers) when every worker
    is ready, and after `requests` × `count` suggestions through the port (the kernel spreads them)."""
    started = time.perf_counter()
    server = start(command(FIRST_PORT), {**env, "NBA_PORT": str(FIRST_PORT), "NBA_WORKERS": str(count)})
    try:
        wait_ready(f"http://127.0.0.1:{FIRST_PORT}/readyz")
        deadline = time.monotonic() + 600
        while len(supervised_workers(server.pid)) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        workers = supervised_workers(server.pid)
        if len(workers) < count:
            raise SystemExit(f"only {len(workers)} of {count} workers were forked")
        # Every worker ready: each answers /readyz 200 only once its engine serves; ask until all have.
        time.sleep(5.0)
        result: dict[str, Any] = {
            "workers": count,
            "ready_s": round(time.perf_counter() - started, 1),
            "at_ready": machine_pss_mb([server.pid]),
            "supervisor_alone": machine_pss_mb_of_process(server.pid),
        }
        answered = ask(FIRST_PORT, ids, requests * count, seed=count)
        result["requests"] = requests * count
        result["answered_200"] = answered
        result["after_requests"] = machine_pss_mb([server.pid])
        print(f"  nba serve --workers {count}: {json.dumps(result)}", flush=True)
        return result
    finally:
        stop([server])


def machine_pss_mb_of_process(pid: int) -> float:
    """The PSS (MB) of one process alone, without its children."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _checks_child(conn: Connection, cache_s: str, snapshot_s: str) -> None:
    """Times the cache entry's cheap check, its full SHA-256 check, and the snapshot's own check."""
    sys.path.insert(0, str(ROOT))
    from nba.profiles import check_snapshot, open_cache_entry

    (entry,) = [p for p in Path(cache_s).iterdir() if not p.name.startswith(".")]
    timings: dict[str, float] = {}
    for name, check in (
        ("open_cheap_check_s", lambda: open_cache_entry(entry)),
        ("open_full_sha256_s", lambda: open_cache_entry(entry, full_check=True)),
        ("check_snapshot_s", lambda: check_snapshot(Path(snapshot_s))),
    ):
        t = time.perf_counter()
        check()
        timings[name] = round(time.perf_counter() - t, 3)
    sizes = {p.name: p.stat().st_size for p in entry.iterdir()}
    conn.send({"timings": timings, "entry_mb": round(sum(sizes.values()) / 1e6, 1), "file_bytes": sizes})


def _decide_child(
    conn: Connection, model_dir_s: str, snapshot_s: str, cache_s: str, data_dir_s: str, calls: int
) -> None:
    """decide on in-memory and on mapped profiles of the same snapshot, interleaved call by call."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from nba.contract import catalog_for, load_catalog
    from nba.decision import Engine
    from nba.features import BenefitTable
    from nba.model import load_bundle
    from nba.profiles import cached_profiles, profiles_from_snapshot

    bundle = load_bundle(Path(model_dir_s))
    catalog = load_catalog(catalog_for(Path(data_dir_s)))
    benefits = BenefitTable.from_catalog(catalog)
    snapshot = Path(snapshot_s)
    in_memory = Engine(bundle, profiles_from_snapshot(snapshot, bundle, benefits), catalog)
    mapped = Engine(
        bundle,
        cached_profiles(Path(cache_s), snapshot, bundle, benefits),
        catalog,
        reasoner=in_memory.reasoner,
    )
    n = len(in_memory.profiles)
    rng = np.random.default_rng(7)
    rows = rng.choice(n, size=min(n, calls + 500), replace=False)
    ids = [in_memory.profiles.ids[int(i)] for i in rows]
    for cardholder_id in ids[:500]:  # warm-up, not counted (the code paths, not the pages: rows differ)
        in_memory.decide(cardholder_id, "general", 3)
        mapped.decide(cardholder_id, "general", 3)
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    wall = {"in_memory": [], "mapped": []}  # type: dict[str, list[int]]
    on_cpu = {"in_memory": [], "mapped": []}  # type: dict[str, list[int]]
    for k, cardholder_id in enumerate(ids[500:]):
        order = (("in_memory", in_memory), ("mapped", mapped))
        for name, engine in order if k % 2 else order[::-1]:
            c0, t0 = cpu(), clock()
            decision = engine.decide(cardholder_id, "general", 3)
            wall[name].append(clock() - t0)
            on_cpu[name].append(cpu() - c0)
            assert decision.cardholder_id == cardholder_id
    conn.send(
        {
            "calls": len(wall["mapped"]),
            "decide_in_memory": latency_summary(wall["in_memory"]),
            "decide_mapped": latency_summary(wall["mapped"]),
            "decide_in_memory_cpu": latency_summary(on_cpu["in_memory"]),
            "decide_mapped_cpu": latency_summary(on_cpu["mapped"]),
        }
    )


def _sent(value: Any) -> dict[str, Any]:
    """What a child sent (`in_child` returns it as it came: here a dict)."""
    assert isinstance(value, dict)
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cardholders", type=int, default=1_000_000)
    parser.add_argument("--model-cardholders", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=4, help="the larger number of processes (default 4)")
    parser.add_argument("--requests", type=int, default=500, help="suggestions asked of each server")
    parser.add_argument("--calls", type=int, default=5000, help="decide calls timed per engine")
    parser.add_argument(
        "--independent", action="store_true", help="also N independent `nba serve` processes on N ports"
    )
    parser.add_argument(
        "--keep-cache",
        action="store_true",
        help="use the cache entry as it is (no cold start, no entry checks)",
    )
    parser.add_argument("--skip-decide", action="store_true", help="leave out the decide timing (step 3)")
    args = parser.parse_args(argv)
    data_dir, _ = ensure_world(args.cardholders, args.seed)
    model_world, _ = ensure_world(args.model_cardholders, args.seed)
    deploy = ensure_deployment(data_dir, ensure_model(model_world))
    cache = WORK_DIR / f"profile-cache-{deploy.name}"
    snapshot = deploy / "profiles" / (deploy / "profiles" / "CURRENT").read_text().strip()
    model_dir = deploy / "models" / (deploy / "models" / "CURRENT").read_text().strip()
    import pandas as pd

    ids = list(pd.read_parquet(data_dir / "cardholders.parquet", columns=["cardholder_id"])["cardholder_id"])
    work = Path(tempfile.mkdtemp(prefix="nba-bench-memory-"))
    env = {
        "NBA_MODELS_DIR": str(deploy / "models"),
        "NBA_PROFILES_DIR": str(deploy / "profiles"),
        "NBA_PROFILE_CACHE": str(cache),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_API_KEYS": json.dumps([{"name": "bench", "role": "agent", "sha256": hash_token(TOKEN)}]),
        "NBA_LOG_LEVEL": "warning",
        "NBA_WATCH_INTERVAL_S": "0",
    }

    def nba(port: int) -> list[str]:
        # Each process its own database and decision buffer, as separate workers would have.
        env_args = [
            f"NBA_DATABASE_URL=sqlite:///{work / f'feedback-{port}.db'}",
            f"NBA_BUFFER_PATH={work / f'buffer-{port}.jsonl'}",
        ]
        return ["env", *env_args, str(Path(sys.executable).parent / "nba"), "serve"]

    def bare(port: int) -> list[str]:
        return [sys.executable, str(ROOT / "bench" / "bare_app.py"), str(port)]

    result: dict[str, Any] = {"cardholders": args.cardholders, "machine": machine(), "cache_dir": str(cache)}
    try:
        if not args.keep_cache:
            shutil.rmtree(cache, ignore_errors=True)
            print(f"cold start (builds the cache entry at {cache}) ...", flush=True)
            result["cold_start_1"] = run_servers("nba cold", nba, env, 1, ids, 0)
            result["entry"] = _sent(in_child(_checks_child, str(cache), str(snapshot)))
            print(
                f"  entry: {json.dumps(result['entry']['timings'])}, {result['entry']['entry_mb']} MB",
                flush=True,
            )
        result["nba_1"] = run_servers("nba", nba, env, 1, ids, args.requests)
        result[f"nba_{args.workers}"] = run_supervised(nba, env, args.workers, ids, args.requests)
        if args.independent:
            result[f"nba_{args.workers}_independent"] = run_servers(
                "nba independent", nba, env, args.workers, ids, args.requests
            )
        result["bare_1"] = run_servers("bare", bare, {}, 1, None, 0)
        result[f"bare_{args.workers}"] = run_servers("bare", bare, {}, args.workers, None, 0)
        extra = args.workers - 1
        for moment in ("at_ready", "after_requests"):
            ours = (
                result[f"nba_{args.workers}"][moment]["pss_mb"] - result["nba_1"][moment]["pss_mb"]
            ) / extra
            result[f"extra_worker_pss_mb_{moment}"] = round(ours, 1)
        result["bare_extra_process_pss_mb"] = round(
            (result[f"bare_{args.workers}"]["at_ready"]["pss_mb"] - result["bare_1"]["at_ready"]["pss_mb"])
            / extra,
            1,
        )
        result["goals"] = {
            "extra_worker_pss_mb_max": EXTRA_WORKER_GOAL_MB,
            "one_worker_pss_mb_max": ONE_WORKER_GOAL_MB,
            "extra_worker_met": result["extra_worker_pss_mb_after_requests"] <= EXTRA_WORKER_GOAL_MB,
            "one_worker_met": result["nba_1"]["after_requests"]["pss_mb"] <= ONE_WORKER_GOAL_MB,
        }
        if not args.skip_decide:
            print("decide on in-memory and mapped profiles ...", flush=True)
            result["decide"] = _sent(
                in_child(_decide_child, str(model_dir), str(snapshot), str(cache), str(data_dir), args.calls)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(
        f"PSS, 1 worker: {result['nba_1']['after_requests']['pss_mb']:,.0f} MB (goal <= {ONE_WORKER_GOAL_MB:,.0f}); "
        f"each extra worker: {result['extra_worker_pss_mb_after_requests']:,.0f} MB (goal <= {EXTRA_WORKER_GOAL_MB:,.0f}; "
        f"bare app's extra process {result['bare_extra_process_pss_mb']:,.0f} MB)"
    )
    if "decide" in result:
        d = result["decide"]
        print(
            f"decide p50/p99 µs: in memory {d['decide_in_memory']['p50_us']}/{d['decide_in_memory']['p99_us']}, "
            f"mapped {d['decide_mapped']['p50_us']}/{d['decide_mapped']['p99_us']}"
        )
    save_run(result, RESULTS_PATH, "profile_memory")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
