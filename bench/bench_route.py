"""Bench the suggestions route in process → CPU µs per request, for valid requests and for each kind of refusal.

Drives the whole app (`create_app`: request context, the suggestions fast path, FastAPI) with ASGI scopes
built by hand, no sockets: the time is the service's own, in this thread's CPU time, so it moves far less
with the machine's load than `bench_api.py`'s requests/s. Kinds: `valid` (a random cardholder, no call
id), `unknown` (an unknown cardholder: 404), `conflict` (a call id served for another cardholder: 409),
`bad_key` (401) and `bad_query` (`limit=99`: 422). The decision-log writer is not started: what a request
costs is what the event loop spends on it. Prints medians over `--runs` runs of `--requests` each and
writes bench/results/route.json. Run it with `PYTHONPATH=<a checkout>` to time another version of the
code on the same world, in the same session.

    python bench/bench_route.py [--cardholders 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import TOKEN, ensure_deployment
from bench_train import ROOT, ensure_model, ensure_world, machine, save_run

from api.keys import hash_token
from api.main import create_app
from api.settings import Settings

RESULTS_PATH = ROOT / "bench" / "results" / "route.json"


async def _ask(app: Any, path: str, query: str, key: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"bench"), (b"x-api-key", key.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def requests_of(kind: str, ids: list[str], n: int, rng: random.Random) -> list[tuple[str, str, str, int]]:
    """(path, query, key, expected status) × n."""
    out = []
    for i in range(n):
        holder = rng.choice(ids)
        path = f"/v1/cardholders/{holder}/suggestions"
        if kind == "valid":
            out.append((path, "", TOKEN, 200))
        elif kind == "unknown":
            out.append(("/v1/cardholders/nobody-here/suggestions", "", TOKEN, 404))
        elif kind == "conflict":
            out.append((path, f"call_id=bench-{kind}", TOKEN, 409))
        elif kind == "bad_key":
            out.append((path, "", f"wrong-{i}", 401))
        else:
            out.append((path, "limit=99", TOKEN, 422))
    return out


async def measure(app: Any, ids: list[str], requests: int, runs: int) -> dict[str, float]:
    rng = random.Random(5)
    # The conflict's call id, first served for a cardholder none of the requests asks for.
    assert await _ask(app, f"/v1/cardholders/{ids[0]}/suggestions", "call_id=bench-conflict", TOKEN) == 200
    others = ids[1:]
    result: dict[str, float] = {}
    for kind in ("valid", "unknown", "conflict", "bad_key", "bad_query"):
        per_run = []
        for _ in range(runs):
            batch = requests_of(kind, others, requests, rng)
            started = time.thread_time()
            for path, query, key, expected in batch:
                status = await _ask(app, path, query, key)
                assert status == expected, (kind, status, expected)
            per_run.append((time.thread_time() - started) / requests * 1e6)
        result[kind] = statistics.median(per_run)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--label", default="current", help="the name this version's numbers are saved under")
    args = parser.parse_args(argv)
    data_dir, _ = ensure_world(args.cardholders, args.seed)
    deploy = ensure_deployment(data_dir, ensure_model(data_dir))
    import pandas as pd

    ids = list(pd.read_parquet(data_dir / "cardholders.parquet", columns=["cardholder_id"])["cardholder_id"])
    work = Path(tempfile.mkdtemp(prefix="nba-bench-route-"))
    settings = Settings(
        models_dir=deploy / "models",
        profiles_dir=deploy / "profiles",
        data_dir=data_dir,
        database_url=f"sqlite:///{work / 'feedback.db'}",
        buffer_path=work / "buffer.jsonl",
        api_keys=json.dumps([{"name": "bench", "role": "agent", "sha256": hash_token(TOKEN)}]),
        log_level="warning",
        watch_interval_s=0,
    )
    from fastapi.testclient import TestClient

    app = create_app(settings, start_background=False)
    with TestClient(app):  # runs the lifespan: migrations, loading, warming

        async def run() -> dict[str, float]:
            for _ in range(200):  # warm up: compiled kernels, caches
                await _ask(app, f"/v1/cardholders/{random.choice(ids)}/suggestions", "", TOKEN)
            return await measure(app, ids, args.requests, args.runs)

        result = asyncio.run(run())
    revision = subprocess.run(
        ["git", "-C", str(Path(__import__("api").__file__).parents[1]), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"{args.label} ({revision or 'no git'}): CPU µs per request, median of {args.runs} runs of "
        f"{args.requests}: " + ", ".join(f"{kind} {us:,.0f}" for kind, us in result.items()),
        flush=True,
    )
    save_run(
        {
            "cardholders": args.cardholders,
            "machine": machine(),
            "label": args.label,
            "us_per_request": result,
        },
        RESULTS_PATH.with_name(f"route-{args.label}.json"),
        "route",
    )


if __name__ == "__main__":
    main()
