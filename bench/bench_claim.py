"""Bench the claim of a client-supplied call id → wall-clock latency per first request, beside the path of
a call id the server makes, on a SQLite file and on a local PostgreSQL.

Drives the whole app in process (ASGI scopes built by hand, as `bench_route.py`, with the decision-log
writer running as in a server) one request at a time: `server_id` asks with no call id (the server makes
one: nothing to claim), `client_id` with a new call id each time (looked up, decided, then claimed in the
store before it is answered). Wall time, not CPU time: the claim waits on a thread for the database. Prints
the median and p99 over all requests of each kind and writes bench/results/claim-<label>.json. Run it
with `PYTHONPATH=<a checkout>` to time another version of the code (before the claim) on the same world.

The PostgreSQL cluster is the tests' (`tests/pg.py`): fsync and synchronous_commit off, so a commit here
costs less than on a production server.

    python bench/bench_claim.py [--cardholders 20000] [--label after]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import TOKEN, ensure_deployment
from bench_route import _ask
from bench_train import ROOT, ensure_model, ensure_world, machine, save_run

from api.keys import hash_token
from api.main import create_app
from api.settings import Settings

RESULTS_PATH = ROOT / "bench" / "results" / "claim.json"
KINDS = ("server_id", "client_id")


async def measure(app: Any, ids: list[str], requests: int, label: str) -> dict[str, dict[str, float]]:
    rng = random.Random(5)
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for n in range(requests):
        for kind in KINDS:  # interleaved: the machine's load falls on both alike
            holder = rng.choice(ids)
            query = "" if kind == "server_id" else f"call_id=bench-{label}-{n}"
            started = time.perf_counter()
            status = await _ask(app, f"/v1/cardholders/{holder}/suggestions", query, TOKEN)
            latencies[kind].append(time.perf_counter() - started)
            assert status == 200, (kind, status)
    result = {}
    for kind, values in latencies.items():
        values.sort()
        result[kind] = {
            "p50_us": statistics.median(values) * 1e6,
            "p99_us": values[int(0.99 * (len(values) - 1))] * 1e6,
        }
    return result


def run_on(
    url: str, work: Path, deploy: Path, data_dir: Path, ids: list[str], args: argparse.Namespace
) -> Any:
    settings = Settings(
        models_dir=deploy / "models",
        profiles_dir=deploy / "profiles",
        data_dir=data_dir,
        database_url=url,
        buffer_path=work / "buffer.jsonl",
        api_keys=json.dumps([{"name": "bench", "role": "agent", "sha256": hash_token(TOKEN)}]),
        log_level="warning",
        watch_interval_s=0,
    )
    from fastapi.testclient import TestClient

    app = create_app(settings)
    with TestClient(app) as client:  # runs the lifespan: migrations, loading, the writer
        portal = client.portal  # the app's own event loop: its thread pools answer into it

        async def run() -> dict[str, dict[str, float]]:
            for _ in range(200):  # warm up: compiled kernels, caches, connections
                await _ask(app, f"/v1/cardholders/{random.choice(ids)}/suggestions", "", TOKEN)
            return await measure(app, ids, args.requests, args.label)

        assert portal is not None
        return portal.call(run)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--label", default="current", help="the name this version's numbers are saved under")
    args = parser.parse_args(argv)
    data_dir, _ = ensure_world(args.cardholders, args.seed)
    deploy = ensure_deployment(data_dir, ensure_model(data_dir))
    import pandas as pd

    ids = list(pd.read_parquet(data_dir / "cardholders.parquet", columns=["cardholder_id"])["cardholder_id"])
    sys.path.append(str(ROOT))  # after PYTHONPATH: `tests.pg` only
    from tests.pg import require_pg_bindir, start_pg_server, stop_pg_server

    work = Path(tempfile.mkdtemp(prefix="nba-bench-claim-"))
    bindir = require_pg_bindir()
    pg_root = Path(tempfile.mkdtemp(prefix="nba-bench-claim-pg-"))  # the server's user must reach it
    server = start_pg_server(pg_root, bindir)
    results: dict[str, Any] = {}
    try:
        for backend, url in (("sqlite", f"sqlite:///{work / 'feedback.db'}"), ("postgresql", server.url)):
            (work / backend).mkdir()
            results[backend] = run_on(url, work / backend, deploy, data_dir, ids, args)
    finally:
        stop_pg_server(bindir, server.data_dir)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pg_root, ignore_errors=True)
    revision = subprocess.run(
        ["git", "-C", str(Path(__import__("api").__file__).parents[1]), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    for backend, kinds in results.items():
        print(
            f"{args.label} ({revision or 'no git'}) {backend}: {args.requests} requests of each kind: "
            + ", ".join(f"{k} p50 {v['p50_us']:,.0f} µs p99 {v['p99_us']:,.0f} µs" for k, v in kinds.items()),
            flush=True,
        )
    save_run(
        {"cardholders": args.cardholders, "machine": machine(), "label": args.label, "latency": results},
        RESULTS_PATH.with_name(f"claim-{args.label}.json"),
        "claim",
    )


if __name__ == "__main__":
    main()
