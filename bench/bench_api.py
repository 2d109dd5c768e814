"""Bench the suggestions endpoint over loopback, beside a bare FastAPI endpoint measured in the same run.

Two loads on each server (the server pinned to core 1, the load generator to core 0):
- saturation: wrk, 32 connections for 20 s, random cardholders: requests/s, p50/p99;
- fixed load: an open-loop asyncio/httpx generator at 500 requests/s for 20 s: p50/p99/max from the
  scheduled send time (so a stall is not hidden by the generator waiting), and errors.
Also the service's resident memory once loaded. Results → bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx  # readiness polling only

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import WORK_DIR, ensure_model, ensure_world, machine, save_run

from api.keys import hash_token
from nba.model import set_current
from training.engine_job import build_snapshot

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "api.json"
TOKEN = "bench-token"
SERVER_CORE, LOAD_CORE = "1", "0"
WRK_SCRIPT = """
local ids = {}
init = function(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  math.randomseed(tonumber(args[2]))
end
calls = 0
request = function()
  local id = ids[math.random(#ids)]
  local query = "call_reason=general"
  if call_ids then
    calls = calls + 1
    query = query .. "&call_id=wrk-" .. calls
  end
  return wrk.format("GET", "/v1/cardholders/" .. id .. "/suggestions?" .. query, {["X-API-Key"] = "%s"})
end
"""


def ensure_deployment(data_dir: Path, model_dir: Path) -> Path:
    """models/ + profiles/ for the bench world, each with CURRENT (cached beside the world)."""
    root = WORK_DIR / f"deploy-{data_dir.name}"
    if (root / "profiles" / "CURRENT").exists() and (root / "models" / "CURRENT").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "models").mkdir(parents=True)
    shutil.copytree(model_dir, root / "models" / model_dir.name)
    set_current(root / "models", model_dir.name)
    build_snapshot(data_dir, model_dir, root / "profiles", promote=True)  # what `nba profiles build` does
    return root


def wait_ready(url: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become ready")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *command],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_wrk(base: str, ids_file: Path, seconds: int, *, call_ids: bool = False) -> dict[str, float]:
    """wrk's capacity run; `call_ids`: every request sends a new call id, as the agent's desktop does
    (each is then claimed in the store)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"call_ids = {'true' if call_ids else 'false'}\n" + WRK_SCRIPT % TOKEN)
    out = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CORE,
            "wrk",
            "-t1",
            "-c32",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            base,
            "--",
            str(ids_file),
            "7",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        return float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    sent = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    assert rps, out
    return {
        "requests_per_s": float(rps.group(1)),
        "requests": float(sent.group(1)) if sent else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 0.0 if socket_errors is None else 1.0,
    }


class _Connection:
    """One keep-alive HTTP/1.1 connection: a request line out, a Content-Length body back (no httpx: at
    500 requests/s on one core a full client library measures itself more than the server)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, path: str, headers: bytes) -> int:
        self.writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n" + headers + b"\r\n")
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


async def get_pooled(idle: list[_Connection], host: str, port: int, path: str, headers: bytes) -> int:
    """GET `path` on an idle keep-alive connection from `idle` (or a new one) and put it back; the status.

    The server closes a keep-alive connection that sat idle (uvicorn: after 5 s), as any HTTP client
    would find out: the request is sent again on a new connection and the time still counts. Raises
    OSError, IncompleteReadError, TimeoutError or ValueError for a request that got no answer (the
    connection is closed then).
    """
    reused = bool(idle)
    connection = idle.pop() if idle else _Connection(*await asyncio.open_connection(host, port))
    try:
        try:
            status = await asyncio.wait_for(connection.get(path, headers), timeout=10)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            connection.writer.close()
            connection = _Connection(*await asyncio.open_connection(host, port))
            status = await asyncio.wait_for(connection.get(path, headers), timeout=10)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
        connection.writer.close()
        raise
    idle.append(connection)
    return status


async def open_loop(base: str, ids: list[str], rate: float, seconds: float) -> dict[str, float]:
    """Sends at a fixed rate whatever the server does; latency counts from the scheduled send time.

    The generator's own garbage collector is off while it runs: a full pass over this process's heap
    (pandas, the ids) stalls it for 100 ms, which would be counted against the server.
    """
    gc.collect()
    gc.disable()
    try:
        return await _open_loop(base, ids, rate, seconds)
    finally:
        gc.enable()


async def _open_loop(base: str, ids: list[str], rate: float, seconds: float) -> dict[str, float]:
    rng = random.Random(11)
    host, port = base.removeprefix("http://").split(":")
    headers = f"X-API-Key: {TOKEN}\r\n".encode()
    idle: list[_Connection] = []
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float, cardholder_id: str) -> None:
        nonlocal errors
        path = f"/v1/cardholders/{cardholder_id}/suggestions"
        try:
            errors += await get_pooled(idle, host, int(port), path, headers) != 200
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            errors += 1
        latencies.append(time.perf_counter() - scheduled)

    start_at = time.perf_counter() + 0.1
    tasks = []
    n = int(rate * seconds)
    for i in range(n):
        scheduled = start_at + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, rng.choice(ids))))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.writer.close()
    ordered = sorted(latencies)
    return {
        "requests": float(n),
        "rate_per_s": rate,
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "errors": float(errors),
        "connections": float(len(idle)),
    }


def measure(
    name: str,
    command: list[str],
    env: dict[str, str],
    port: int,
    ids_file: Path,
    ids: list[str],
    seconds: int,
    rate: float,
) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    server = start(command, env)
    try:
        probe = f"{base}/readyz" if name == "nba" else f"{base}/v1/cardholders/x/suggestions"
        started = time.perf_counter()
        wait_ready(probe)
        ready_s = time.perf_counter() - started
        # Warm up (first requests pay imports and caches), then the two loads.
        asyncio.run(open_loop(base, ids, 200, 2))
        saturation = run_wrk(base, ids_file, seconds)
        fixed = asyncio.run(open_loop(base, ids, rate, seconds))
        memory = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"{name:>5}: wrk {saturation['requests_per_s']:,.0f} req/s p50 {saturation['p50_ms']:.2f} ms "
        f"p99 {saturation['p99_ms']:.2f} ms | {rate:.0f}/s open loop p50 {fixed['p50_ms']:.2f} ms "
        f"p99 {fixed['p99_ms']:.2f} ms max {fixed['max_ms']:.1f} ms errors {fixed['errors']:.0f} | "
        f"RSS {memory:,.0f} MB (ready in {ready_s:.1f} s)",
        flush=True,
    )
    return {"wrk": saturation, "open_loop": fixed, "rss_mb": memory, "ready_s": ready_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cardholders", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument(
        "--memory-only", action="store_true", help="only load the service and report its memory"
    )
    parser.add_argument(
        "--model-cardholders",
        type=int,
        default=None,
        help="serve the model trained on a world of this size (default: the same world)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("wrk and taskset are needed: run `make system-deps`")
    data_dir, _ = ensure_world(args.cardholders, args.seed)
    model_world, _ = ensure_world(args.model_cardholders or args.cardholders, args.seed)
    deploy = ensure_deployment(data_dir, ensure_model(model_world))
    import pandas as pd

    ids = list(pd.read_parquet(data_dir / "cardholders.parquet", columns=["cardholder_id"])["cardholder_id"])
    work = Path(tempfile.mkdtemp(prefix="nba-bench-api-"))
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    env = {
        "NBA_MODELS_DIR": str(deploy / "models"),
        "NBA_PROFILES_DIR": str(deploy / "profiles"),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_DATABASE_URL": f"sqlite:///{work / 'feedback.db'}",
        "NBA_BUFFER_PATH": str(work / "buffer.jsonl"),
        "NBA_API_KEYS": json.dumps([{"name": "bench", "role": "agent", "sha256": hash_token(TOKEN)}]),
        "NBA_LOG_LEVEL": "warning",
        "NBA_PORT": "8731",
    }
    nba_cmd = [str(Path(sys.executable).parent / "nba"), "serve"]
    bare_cmd = [sys.executable, str(ROOT / "bench" / "bare_app.py"), "8732"]
    result: dict[str, Any] = {"cardholders": args.cardholders, "machine": machine()}
    # The open-loop generator runs in this process: keep it on the load core, away from the server's.
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    if args.memory_only:
        server = start(nba_cmd, env)
        try:
            started = time.perf_counter()
            wait_ready("http://127.0.0.1:8731/readyz")
            result["nba"] = {"rss_mb": rss_mb(server.pid), "ready_s": time.perf_counter() - started}
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(
            f"nba with {args.cardholders:,} cardholders: RSS {result['nba']['rss_mb']:,.0f} MB, "
            f"ready in {result['nba']['ready_s']:.1f} s"
        )
    else:
        result["bare"] = measure("bare", bare_cmd, {}, 8732, ids_file, ids, args.seconds, args.rate)
        result["nba"] = measure("nba", nba_cmd, env, 8731, ids_file, ids, args.seconds, args.rate)
        ratio = result["nba"]["wrk"]["requests_per_s"] / result["bare"]["wrk"]["requests_per_s"]
        result["ratio_requests_per_s"] = ratio
        print(
            f"nba / bare requests/s: {ratio:.2f} (goal >= 0.5); open-loop p99 {result['nba']['open_loop']['p99_ms']:.2f} ms "
            "(goal <= 5 ms)"
        )
    path = RESULTS_PATH if not args.memory_only else RESULTS_PATH.with_name("api_memory.json")
    save_run(result, path, "api")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
