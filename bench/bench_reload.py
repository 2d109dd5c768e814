"""Bench reloads under load: suggestions latency while a new model, then a new profile snapshot, are swapped in.

`nba serve` (pinned to core 1, as bench_api does) on a bench world answers an open-loop load at a fixed
rate (the generator on core 0; latency counted from each request's scheduled send time). A few seconds
in, a new model version is promoted and `POST /v1/admin/reload` asked for; a few seconds after its
answer, a new profile snapshot.
Per swap: p50/p99/max of the requests scheduled from the reload's start to one second after its answer,
against the steady p99 of the requests scheduled away from any swap, in the same run.
Goal: p99 during a swap <= 3 x the steady p99. Results → bench/results/reload.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from bench_api import LOAD_CORE, TOKEN, _Connection, ensure_deployment, get_pooled, start, wait_ready
from bench_train import WORK_DIR, ensure_model, ensure_world, machine, save_run

from api.keys import hash_token
from nba.model import read_current, set_current
from nba.profiles import read_current_snapshot, set_current_snapshot
from tests.deployment import twin_model
from training.engine_job import build_snapshot

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "reload.json"
ADMIN_TOKEN = "bench-admin-token"
PORT = 8741
GOAL_RATIO = 3.0


def earlier_snapshot(data_dir: Path, model_dir: Path, profiles: Path, days: int = 7) -> str:
    """A second snapshot, `days` before the one in service (built once, cached beside the world)."""
    current = read_current_snapshot(profiles)
    assert current is not None
    as_of = datetime.fromisoformat(current).date() - timedelta(days=days)
    cache = WORK_DIR / f"reload-snapshots-{data_dir.name}"
    if not (cache / as_of.isoformat() / "manifest.json").exists():
        shutil.rmtree(cache, ignore_errors=True)
        print(f"building a snapshot as of {as_of} ...", flush=True)
        build_snapshot(data_dir, model_dir, cache, as_of=as_of)
    shutil.copytree(cache / as_of.isoformat(), profiles / as_of.isoformat())
    return as_of.isoformat()


async def load_with_swaps(
    base: str, ids: list[str], rate: float, gap_s: float, swaps: list[tuple[str, Any]]
) -> tuple[list[tuple[float, float, int]], list[tuple[str, float, float, int]]]:
    """The open-loop load, while after every `gap_s` seconds the next swap's action runs (in a thread)
    and a reload is asked for; the load goes on `gap_s` seconds after the last. Returns (scheduled
    offset, latency s, status) per request and (swap, start, end, HTTP status) per swap."""
    rng = random.Random(11)
    host, port = base.removeprefix("http://").split(":")
    headers = f"X-API-Key: {TOKEN}\r\n".encode()
    idle: list[_Connection] = []
    done: list[tuple[float, float, int]] = []
    swapped: list[tuple[str, float, float, int]] = []
    start_at = time.perf_counter() + 0.1
    finished = False

    async def one(scheduled: float, cardholder_id: str) -> None:
        path = f"/v1/cardholders/{cardholder_id}/suggestions"
        status = 0
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            status = await get_pooled(idle, host, int(port), path, headers)
        done.append((scheduled - start_at, time.perf_counter() - scheduled, status))

    async def swap_each() -> None:
        nonlocal finished
        for name, action in swaps:
            await asyncio.sleep(gap_s)
            await asyncio.to_thread(action)
            began = time.perf_counter()
            response = await asyncio.to_thread(
                httpx.post, f"{base}/v1/admin/reload", headers={"X-API-Key": ADMIN_TOKEN}, timeout=120
            )
            swapped.append((name, began - start_at, time.perf_counter() - start_at, response.status_code))
        await asyncio.sleep(gap_s)
        finished = True

    swapping = asyncio.create_task(swap_each())
    tasks = []
    i = 0
    while not finished:
        scheduled = start_at + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, rng.choice(ids))))
        i += 1
    await asyncio.gather(*tasks, swapping)
    for connection in idle:
        connection.writer.close()
    return done, swapped


def stats(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": float(len(ordered)),
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "over_100ms": float(sum(x > 0.1 for x in ordered)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--gap", type=float, default=6, help="seconds of steady load before, between, after")
    args = parser.parse_args(argv)
    data_dir, _ = ensure_world(args.cardholders, args.seed)
    deploy = ensure_deployment(data_dir, ensure_model(data_dir))
    import pandas as pd

    ids = list(pd.read_parquet(data_dir / "cardholders.parquet", columns=["cardholder_id"])["cardholder_id"])
    work = Path(tempfile.mkdtemp(prefix="nba-bench-reload-"))
    shutil.copytree(deploy / "models", work / "models")
    shutil.copytree(deploy / "profiles", work / "profiles")
    models, profiles = work / "models", work / "profiles"
    version = read_current(models)
    assert version is not None
    new_version = twin_model(models, version)
    new_as_of = earlier_snapshot(data_dir, models / version, profiles)
    keys = [
        {"name": "bench", "role": "agent", "sha256": hash_token(TOKEN)},
        {"name": "oncall", "role": "admin", "sha256": hash_token(ADMIN_TOKEN)},
    ]
    env = {
        "NBA_MODELS_DIR": str(models),
        "NBA_PROFILES_DIR": str(profiles),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_DATABASE_URL": f"sqlite:///{work / 'feedback.db'}",
        "NBA_BUFFER_PATH": str(work / "buffer.jsonl"),
        "NBA_API_KEYS": json.dumps(keys),
        "NBA_LOG_LEVEL": "warning",
        "NBA_WATCH_INTERVAL_S": "0",  # the bench asks for each reload itself
        "NBA_PORT": str(PORT),
    }
    base = f"http://127.0.0.1:{PORT}"
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    server = start([str(Path(sys.executable).parent / "nba"), "serve"], env)
    try:
        wait_ready(f"{base}/readyz")
        asyncio.run(load_with_swaps(base, ids, args.rate, 2, []))  # warm-up
        swaps: list[tuple[str, Any]] = [
            ("model", lambda: set_current(models, new_version)),
            ("profiles", lambda: set_current_snapshot(profiles, new_as_of)),
        ]
        gc.collect()
        gc.disable()  # the generator's own collector must not stall it (see bench_api.open_loop)
        try:
            done, swapped = asyncio.run(load_with_swaps(base, ids, args.rate, args.gap, swaps))
        finally:
            gc.enable()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    windows = [(began, ended + 1.0) for _, began, ended, _ in swapped]
    steady = [
        latency
        for at, latency, _ in done
        if at > 1.0 and not any(lo - 1.0 <= at <= hi + 1.0 for lo, hi in windows)
    ]
    result: dict[str, Any] = {
        "cardholders": args.cardholders,
        "rate_per_s": args.rate,
        "gap_s": args.gap,
        # 404: a cardholder who is not in the earlier snapshot swapped in (opened since), as it should be.
        "errors": float(sum(status not in (200, 404) for _, _, status in done)),
        "steady": stats(steady),
        "machine": machine(),
    }
    print(
        f"steady: p50 {result['steady']['p50_ms']:.2f} ms p99 {result['steady']['p99_ms']:.2f} ms "
        f"({len(steady)} requests); errors {result['errors']:.0f}"
    )
    worst = 0.0
    for name, began, ended, status in swapped:
        during = stats([latency for at, latency, _ in done if began <= at <= ended + 1.0])
        ratio = during["p99_ms"] / result["steady"]["p99_ms"]
        worst = max(worst, ratio)
        result[name] = {
            **during,
            "reload_s": ended - began,
            "reload_status": float(status),
            "p99_ratio": ratio,
        }
        print(
            f"{name:>8} swap: reload {ended - began:.2f} s (HTTP {status}); p50 {during['p50_ms']:.2f} ms "
            f"p99 {during['p99_ms']:.2f} ms max {during['max_ms']:.1f} ms, {during['over_100ms']:.0f} over "
            f"100 ms; p99 / steady p99 {ratio:.2f} (goal <= {GOAL_RATIO:g})"
        )
    if os.environ.get("BENCH_TIMELINE"):  # where in a swap the time goes: p99 per half second
        for half in range(int(2 * max(at for at, _, _ in done)) + 1):
            window = [lat for at, lat, _ in done if half / 2 <= at < half / 2 + 0.5]
            statuses = sorted({status for at, _, status in done if half / 2 <= at < half / 2 + 0.5})
            marks = [
                f"{n} {'start' if abs(b - half / 2) < 0.5 else 'end'}"
                for n, b, e, _ in swapped
                for t in (b, e)
                if half / 2 <= t < half / 2 + 0.5
            ]
            if window:
                print(f"{half / 2:6.1f}s p99 {stats(window)['p99_ms']:7.1f} ms {statuses} {marks}")
    result["worst_p99_ratio"] = worst
    result["meets_goal"] = worst <= GOAL_RATIO and result["errors"] == 0
    save_run(result, RESULTS_PATH, "reload")


if __name__ == "__main__":
    main()
