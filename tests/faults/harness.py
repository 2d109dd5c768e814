"""Fault-test harness: `nba serve` as a real process, load from threads, and the store read back directly.

Each test starts the service with its own SQLite file or its own database on a throwaway PostgreSQL
cluster, breaks something (kill -9, the database stopped, paused or out of disk) while threads send
calls (suggestions with the desktop's call id, then an outcome), and checks what every answer promised
against what the database holds afterwards. The client's time-outs are generous (the machine is small
and shared); what is asserted are the server's deadlines.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import sqlalchemy as sa

from tests.deployment import Deployment
from tests.pg import PgServer
from tests.serving import free_port

# The client gives up after this: a hang (the defect) shows as a time-out, not a stuck test.
CLIENT_TIMEOUT_S = 8.0
START_TIMEOUT_S = 90.0
OUTCOMES = ("accepted", "declined", "not_discussed", "already_aware")


@dataclass
class Service:
    """One `nba serve` process on 127.0.0.1 with its own var folder (buffer, journal) and database."""

    deployment: Deployment
    var: Path
    database_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_lines: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # more NBA_ settings (workers, drain, ...)
    _terminated: subprocess.Popen[bytes] | None = None  # the process SIGTERM was sent to

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        """Starts the process and returns once it is ready to serve suggestions."""
        return self.launch().wait_ready()

    def launch(self) -> Service:
        """Starts the process without waiting for it (`wait_ready`): services launched together start
        side by side."""
        env = {
            **os.environ,
            "NBA_MODELS_DIR": str(self.deployment.models_dir),
            "NBA_PROFILES_DIR": str(self.deployment.profiles_dir),
            "NBA_DATA_DIR": str(self.deployment.data_dir),
            "NBA_DATABASE_URL": self.database_url,
            "NBA_BUFFER_PATH": str(self.var / "buffer.jsonl"),
            "NBA_WATCH_INTERVAL_S": "0",
            "NBA_PORT": str(self.port),
            "NBA_LOG_LEVEL": "warning",
            **self.env,
        }
        env.pop("NBA_API_KEYS", None)
        env.pop("NBA_API_KEYS_FILE", None)
        # NBA_FAULTS_CODE=/a/checkout runs the service from other code (say, before a fix) to see a
        # test fail on the defect it covers.
        code = os.environ.get("NBA_FAULTS_CODE")
        if code:
            env["PYTHONPATH"] = code
        # stderr is a pipe, not a file: the disk-full test limits the size of the files it may write.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=code or None,
        )
        self._drainer = threading.Thread(target=self._drain, args=(self.process,), daemon=True)
        self._drainer.start()
        return self

    def wait_ready(self) -> Service:
        """Returns once the launched process serves suggestions (its first decision made)."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nba serve exited ({self.process.returncode}): {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    # The first decision warms what is compiled or loaded lazily (seconds here).
                    cardholder = cardholders_of(self.deployment, 1)[0]
                    warm = httpx.get(f"{self.base_url}/v1/cardholders/{cardholder}/suggestions", timeout=60.0)
                    assert warm.status_code == 200, warm.text
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"nba serve did not start in {START_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                self.log_lines.append(line.decode(errors="replace").rstrip())

    def _reap(self) -> None:
        assert self.process is not None
        self.process.wait(timeout=20)
        self._drainer.join(timeout=10)

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_lines[-n:])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self._reap()

    def terminate(self) -> None:
        """SIGTERM, without waiting: services stopped together drain side by side (`stop` waits). Sent
        once: a second SIGTERM would make uvicorn quit at once."""
        if self.process is not None and self.process.poll() is None and self._terminated is not self.process:
            self.process.send_signal(signal.SIGTERM)
            self._terminated = self.process

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self._reap()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of the service's Prometheus metrics (0 when absent)."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=CLIENT_TIMEOUT_S).text
        pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
        found = pattern.search(text)
        return float(found.group(1)) if found else 0.0

    def tracebacks(self) -> list[str]:
        """Log lines that carry a traceback (an unexpected error)."""
        return [line for line in self.log_lines if "Traceback" in line]


@contextmanager
def running(service: Service) -> Iterator[Service]:
    """Starts the service and stops it at the end, whatever happens."""
    try:
        yield service.start()
    finally:
        service.stop()


@contextmanager
def running_together(*services: Service) -> Iterator[tuple[Service, ...]]:
    """Launches the services side by side (as a fleet starts), waits until each serves, and stops them
    all at the end, whatever happens."""
    try:
        for service in services:
            service.launch()
        for service in services:
            service.wait_ready()
        yield services
    finally:
        for service in services:
            service.terminate()
        for service in services:
            service.stop()


def cardholders_of(deployment: Deployment, n: int = 500) -> list[str]:
    table = pq.read_table(deployment.data_dir / "cardholders.parquet", columns=["cardholder_id"])
    return [str(x) for x in table.column(0).to_pylist()[:n]]


@dataclass
class Exchange:
    """One call as the client saw it: the suggestions request, then (when there was one) an outcome."""

    call_id: str
    cardholder_id: str
    started: float  # time.monotonic() when sent
    status: int | None = None  # None: no answer (connection refused or reset, or the client timed out)
    latency_s: float = 0.0
    error: str | None = None
    suggestion_ids: tuple[str, ...] = ()
    outcome: str | None = None
    outcome_status: int | None = None
    outcome_latency_s: float = 0.0
    outcome_error: str | None = None
    outcome_retry_after: str | None = None
    outcome_sent: float = 0.0


class Load:
    """Threads that each send calls at a steady pace until stopped: suggestions with a call id (unique per
    call) and, when `with_outcome`, an outcome for the first suggestion right after."""

    def __init__(
        self,
        base_url: Callable[[], str],
        cardholders: list[str],
        *,
        calls_per_s: float,
        threads: int = 8,
        with_outcome: bool = True,
        prefix: str = "K",
        seed: int = 13,
    ) -> None:
        self.base_url = base_url
        self.cardholders = cardholders
        self.interval_s = threads / calls_per_s
        self.threads = threads
        self.with_outcome = with_outcome
        self.prefix = prefix
        self.seed = seed
        self.exchanges: list[Exchange] = []
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        # Outcomes go out from a pool of their own, right after their suggestions: one waiting for its
        # deadline does not slow the calls down.
        self._outcomes = ThreadPoolExecutor(64, thread_name_prefix="outcome")
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    def __enter__(self) -> Load:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(i,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=CLIENT_TIMEOUT_S * 3)
        self._outcomes.shutdown(wait=True)
        for client in self._clients:
            client.close()

    def _run(self, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            n = 0
            next_at = time.monotonic() + rng.random() * self.interval_s
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                next_at = max(next_at + self.interval_s, time.monotonic() - self.interval_s)
                n += 1
                self.exchanges.append(self._one(client, rng, f"{self.prefix}-{worker}-{n}"))

    def _one(self, client: httpx.Client, rng: random.Random, call_id: str) -> Exchange:
        cardholder = rng.choice(self.cardholders)
        ex = Exchange(call_id, cardholder, time.monotonic())
        url = f"{self.base_url()}/v1/cardholders/{cardholder}/suggestions"
        try:
            answer = client.get(url, params={"call_id": call_id})
            ex.status = answer.status_code
            if answer.status_code == 200:
                ex.suggestion_ids = tuple(s["suggestion_id"] for s in answer.json()["suggestions"])
        except httpx.HTTPError as exc:
            ex.error = type(exc).__name__
        ex.latency_s = time.monotonic() - ex.started
        if self.with_outcome and ex.suggestion_ids:
            ex.outcome = rng.choice(OUTCOMES)
            self._outcomes.submit(self._post_outcome, ex)
        return ex

    def _post_outcome(self, ex: Exchange) -> None:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=CLIENT_TIMEOUT_S)
            self._clients.append(client)
        ex.outcome_sent = time.monotonic()
        try:
            answer = client.post(
                f"{self.base_url()}/v1/suggestions/{ex.suggestion_ids[0]}/outcome",
                json={"outcome": ex.outcome},
            )
            ex.outcome_status = answer.status_code
            ex.outcome_retry_after = answer.headers.get("retry-after")
        except httpx.HTTPError as exc:
            ex.outcome_error = type(exc).__name__
        ex.outcome_latency_s = time.monotonic() - ex.outcome_sent


def answered(exchanges: list[Exchange]) -> list[Exchange]:
    """The calls whose suggestions were answered 200: each is a decision the store must end up with."""
    return [ex for ex in exchanges if ex.status == 200]


@dataclass(frozen=True)
class Stored:
    """What the feedback database holds for some calls: their suggestion ids and current outcomes."""

    suggestions: dict[str, tuple[str, ...]]  # call_id → suggestion ids, by rank
    current: dict[str, list[str]]  # suggestion_id → its current outcomes (one, if all is well)


def read_store(database_url: str, call_ids: list[str]) -> Stored:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("calls"):
                return Stored({}, {})
            suggestions: dict[str, list[str]] = {call_id: [] for call_id in call_ids}
            current: dict[str, list[str]] = {}
            for start in range(0, len(call_ids), 500):
                chunk = call_ids[start : start + 500]
                rows = conn.execute(
                    sa.text(
                        "SELECT c.call_id, s.suggestion_id FROM calls c LEFT JOIN suggestions s "
                        "ON s.call_id = c.call_id WHERE c.call_id IN :ids ORDER BY c.call_id, s.rank"
                    ).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": chunk},
                ).all()
                found = {row.call_id for row in rows}
                for row in rows:
                    if row.suggestion_id is not None:
                        suggestions[row.call_id].append(row.suggestion_id)
                for call_id in chunk:
                    if call_id not in found:
                        del suggestions[call_id]
                outcomes = conn.execute(
                    sa.text(
                        "SELECT o.suggestion_id, o.outcome FROM outcomes o JOIN suggestions s "
                        "ON s.suggestion_id = o.suggestion_id WHERE o.is_current AND s.call_id IN :ids"
                    ).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": chunk},
                ).all()
                for row in outcomes:
                    current.setdefault(row.suggestion_id, []).append(row.outcome)
    finally:
        engine.dispose()
    return Stored({k: tuple(v) for k, v in suggestions.items()}, current)


def wait_until_stored(database_url: str, exchanges: list[Exchange], timeout_s: float) -> tuple[Stored, float]:
    """Polls the database until every answered call is stored (or the time-out); returns what it holds
    and how long that took."""
    call_ids = [ex.call_id for ex in answered(exchanges)]
    started = time.monotonic()
    while True:
        try:
            stored = read_store(database_url, call_ids)
        except sa.exc.OperationalError:
            stored = Stored({}, {})
        waited = time.monotonic() - started
        if len(stored.suggestions) == len(call_ids) or waited > timeout_s:
            return stored, waited
        time.sleep(0.2)


def lost_decisions(stored: Stored, exchanges: list[Exchange]) -> list[str]:
    """Answered calls the store does not hold with the suggestion ids the agent saw."""
    return [
        ex.call_id for ex in answered(exchanges) if stored.suggestions.get(ex.call_id) != ex.suggestion_ids
    ]


def lost_outcomes(stored: Stored, exchanges: list[Exchange]) -> list[str]:
    """Outcomes acknowledged 200 whose suggestion does not hold them as its one current outcome. Each
    call gets one outcome, so the acknowledged one must be the current one."""
    return [
        ex.suggestion_ids[0]
        for ex in exchanges
        if ex.outcome_status == 200 and stored.current.get(ex.suggestion_ids[0]) != [ex.outcome]
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summary(exchanges: list[Exchange]) -> dict[str, Any]:
    """Counts for assertion messages."""
    statuses: dict[str, int] = {}
    for ex in exchanges:
        key = str(ex.status or ex.error)
        statuses[key] = statuses.get(key, 0) + 1
    outcomes: dict[str, int] = {}
    for ex in exchanges:
        if ex.outcome is not None:
            key = str(ex.outcome_status or ex.outcome_error)
            outcomes[key] = outcomes.get(key, 0) + 1
    return {
        "calls": len(exchanges),
        "suggestions": statuses,
        "outcomes": outcomes,
        "suggestions_p99_s": round(percentile([ex.latency_s for ex in exchanges if ex.status], 0.99), 3),
        "outcomes_max_s": round(
            max((ex.outcome_latency_s for ex in exchanges if ex.outcome_status), default=0), 3
        ),
    }


def server_processes(data_dir: Path) -> list[int]:
    """The postmaster (from postmaster.pid) and its children, from /proc."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return []
    postmaster = int(pid_file.read_text().splitlines()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def pause_pg(server: PgServer) -> list[int]:
    """SIGSTOP to the server and every backend: connections stay open and nothing answers (TCP hangs).
    The postmaster first, so that no backend is forked after the children are listed."""
    postmaster, *_ = server_processes(server.data_dir)
    os.kill(postmaster, signal.SIGSTOP)
    time.sleep(0.05)
    pids = server_processes(server.data_dir)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def resume_pg(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
