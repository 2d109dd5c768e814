"""Serving for tests: the API keys, a hand-moved clock, the in-process client's helpers, a real uvicorn
server in a thread and `nba serve` as its own process → base URLs on 127.0.0.1, stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi.testclient import TestClient

from api.deps import Services
from api.keys import hash_token
from tests.deployment import Deployment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(app: Any, timeout_s: float = 20.0) -> Iterator[str]:
    """Serves `app` in a background thread; yields `http://127.0.0.1:PORT`."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)


AGENT, ADMIN = "agent-token-for-tests", "admin-token-for-tests"


KEYS = json.dumps(
    [
        {"name": "desk", "role": "agent", "sha256": hash_token(AGENT)},
        {"name": "oncall", "role": "admin", "sha256": hash_token(ADMIN)},
    ]
)


class Clock:
    """A clock the test moves by hand: nothing here sleeps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 10, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def some_cardholders(deployment: Deployment, n: int = 50) -> list[str]:
    import pandas as pd

    return list(pd.read_parquet(deployment.data_dir / "cardholders.parquet")["cardholder_id"][:n])


def first_with_suggestions(client: TestClient, deployment: Deployment, k: int = 2) -> dict[str, Any]:
    for cardholder_id in some_cardholders(deployment, 200):
        body: dict[str, Any] = client.get(f"/v1/cardholders/{cardholder_id}/suggestions").json()
        if len(body["suggestions"]) >= k:
            return body
    raise AssertionError("no sample cardholder has suggestions")


NBA = Path(sys.executable).parent / "nba"


@dataclass(frozen=True)
class ServedProcess:
    """An `nba serve` process: its base URL and its process id."""

    base: str
    pid: int


@contextmanager
def serve_process(deployment: Deployment, var: Path, **env_overrides: object) -> Iterator[str]:
    """`nba serve` as its own process with the production HTTP settings; yields its base URL once ready."""
    with served_process(deployment, var, **env_overrides) as served:
        yield served.base


@contextmanager
def served_process(deployment: Deployment, var: Path, **env_overrides: object) -> Iterator[ServedProcess]:
    """`nba serve` as its own process with the production HTTP settings, once ready.

    Its log goes to `var/serve.log`; `env_overrides` are settings (`models_dir=...`) as NBA_ variables.
    """
    var.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "NBA_MODELS_DIR": str(deployment.models_dir),
        "NBA_PROFILES_DIR": str(deployment.profiles_dir),
        "NBA_DATA_DIR": str(deployment.data_dir),
        "NBA_DATABASE_URL": f"sqlite:///{var / 'feedback.db'}",
        "NBA_BUFFER_PATH": str(var / "buffer.jsonl"),
        "NBA_API_KEYS": KEYS,
        "NBA_PORT": str(port),
        "NBA_LOG_LEVEL": "debug",
        "NBA_WATCH_INTERVAL_S": "0",
        **{f"NBA_{name.upper()}": str(value) for name, value in env_overrides.items()},
    }
    log = var / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen([str(NBA), "serve"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nba serve did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield ServedProcess(f"http://127.0.0.1:{port}", server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
