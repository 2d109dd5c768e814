"""Workers and replicas, as real `nba serve` processes over one feedback store: a worker killed under load,
the contact policy and call ids across replicas (one PostgreSQL, one SQLite file), a rolling restart behind a
load balancer that follows /healthz/lb, and PostgreSQL restarted under two replicas. Each checks every
answer against what the store holds afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.deployment import Deployment
from tests.faults.harness import (
    CLIENT_TIMEOUT_S,
    Load,
    Service,
    answered,
    cardholders_of,
    lost_decisions,
    lost_outcomes,
    read_store,
    running,
    running_together,
    summary,
    wait_until_stored,
)
from tests.pg import PgServer, create_database, restart_pg_server, stop_pg_server

pytestmark = pytest.mark.slow

# How soon an outcome recorded on one replica reaches the others' contact policy: the feed's poll
# interval (the default, 0.2 s) and one read, with room for a loaded machine.
CONTACT_BOUND_S = 1.0
REPLAY_WITHIN_S = 20.0


def worker_pids(supervisor: int) -> set[int]:
    """uvicorn's worker processes under `supervisor`: its children that are forks of it (the same command
    line; a spawned worker's would be `multiprocessing.spawn`'s, and it would not share the imports)."""
    pids = set()
    own = Path(f"/proc/{supervisor}/cmdline").read_bytes()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == supervisor and command == own:
            pids.add(int(stat.parent.name))
    return pids


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, log: Service | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout_s:.0f} s" + (f"\n{log.log_tail(30)}" if log else "")
            )
        time.sleep(0.1)


def suggestions(service: Service, cardholder: str, call_id: str) -> dict[str, object]:
    answer = httpx.get(
        f"{service.base_url}/v1/cardholders/{cardholder}/suggestions",
        params={"call_id": call_id},
        timeout=CLIENT_TIMEOUT_S,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def benefits_of(body: dict[str, object]) -> list[str]:
    return [str(s["benefit_id"]) for s in body["suggestions"]]  # type: ignore[attr-defined]


def test_workers_killed_or_replaced_on_sighup_under_load_keep_serving_and_every_decision_is_stored(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    """A worker killed with kill -9, then every worker replaced on SIGHUP (forked again from the
    supervisor, each new one serving before the old one drains and stops), all under load."""
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    service = Service(sample_deployment, tmp_path / "var", url, env={"NBA_WORKERS": "2"})
    cardholders = cardholders_of(sample_deployment)
    with running(service):
        wait_for(lambda: len(worker_pids(service.pid)) == 2, 30, "two workers")
        workers = worker_pids(service.pid)
        with Load(lambda: service.base_url, cardholders, calls_per_s=60, threads=6) as load:
            time.sleep(3.0)
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            # The supervisor checks its workers every 0.5 s and starts a new one; it serves once loaded.
            wait_for(lambda: len(worker_pids(service.pid) - {victim}) == 2, 60, "a new worker", service)
            time.sleep(2.0)
            before = worker_pids(service.pid)
            os.kill(service.pid, signal.SIGHUP)
            wait_for(
                lambda: len(worker_pids(service.pid) - before) == 2 and not worker_pids(service.pid) & before,
                90,
                "both workers replaced on SIGHUP",
                service,
            )
            time.sleep(1.0)
        exchanges = load.exchanges
        stored, waited = wait_until_stored(url, exchanges, REPLAY_WITHIN_S)
        assert service.alive()
        # Whichever worker answers the scrape, the counters are every worker's summed (the dead one's too).
        counted = [suggestions_counted(service) for _ in range(4)]
    facts = summary(exchanges)
    assert len(set(counted)) == 1, counted
    # Within the calls in flight at the kill either way: a call the killed or a retiring worker answered
    # after the client gave up on it counts without an answer (once in CI: 1,078 counted, 1,077 sent).
    assert len(answered(exchanges)) - 6 <= counted[0] <= len(exchanges) + 6, (counted, facts)
    after = [ex for ex in exchanges if ex.started > killed + 0.5]
    # Only the calls in flight on the killed worker may go unanswered; the other worker serves the rest.
    timeline = [(round(ex.started - killed, 2), ex.status or ex.error) for ex in exchanges]
    assert sum(ex.status != 200 for ex in exchanges) <= 6, (facts, timeline, service.log_tail(40))
    assert len(answered(after)) > 60 and all(ex.status == 200 for ex in after), (facts, timeline[-30:])
    # Counted across every worker (the two first, the one that replaced the dead one, the two forked on
    # SIGHUP): every answered decision, from the killed worker's journal too (its replacement replays it).
    assert len(answered(exchanges)) > 150, facts
    assert lost_decisions(stored, exchanges) == [], (facts, waited)
    assert lost_outcomes(stored, exchanges) == [], facts


def suggestions_counted(service: Service) -> float:
    """`/metrics`' count of suggestions requests answered 200 (every route template naming suggestions)."""
    text = httpx.get(f"{service.base_url}/metrics", timeout=CLIENT_TIMEOUT_S).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nba_http_requests_total{")
        and "suggestions" in line
        and 'method="GET"' in line
        and 'status="200"' in line
    )


@contextmanager
def two_replicas(
    deployment: Deployment, root: Path, url: str, **env: str
) -> Iterator[tuple[Service, Service]]:
    """Two `nba serve` processes (two machines, as far as they know: each its own var folder) on one store."""
    settings = {"NBA_CONTACT_POLL_S": "0.2", **env}
    with running_together(
        Service(deployment, root / "a", url, env=settings), Service(deployment, root / "b", url, env=settings)
    ) as (a, b):
        yield a, b


@pytest.fixture(scope="class", params=["sqlite", "postgresql"])
def replica_pair(
    request: pytest.FixtureRequest,
    sample_deployment: Deployment,
    tmp_path_factory: pytest.TempPathFactory,
    own_pg: PgServer,
) -> Iterator[tuple[Service, Service, str]]:
    """Two replicas on one SQLite file or one PostgreSQL database, and its URL: shared by the tests of a
    class (starting two replicas is most of such a test's time), stopped when the class ends."""
    root = tmp_path_factory.mktemp(f"replicas-{request.param}")
    url = (
        f"sqlite:///{root / 'feedback.db'}" if request.param == "sqlite" else create_database(own_pg, "pair")
    )
    with two_replicas(sample_deployment, root, url) as (a, b):
        yield a, b, url


# Concurrent first requests: call ids each asked on both replicas at the same moment, two pairs at a time.
RACED_CALLS = 40


def ask_both(a: Service, b: Service, cardholder: str, call_id: str) -> tuple[dict[str, object], ...]:
    """The same first request for `call_id` sent to both replicas at once (released by one barrier)."""
    start = threading.Barrier(2)
    bodies: list[dict[str, object]] = [{}, {}]

    def ask(i: int, service: Service) -> None:
        start.wait()
        bodies[i] = suggestions(service, cardholder, call_id)

    threads = [threading.Thread(target=ask, args=(i, s)) for i, s in enumerate((a, b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT_S + 1)
    return tuple(bodies)


def raced_repeats(database_url: str, call_ids: list[str]) -> int:
    """How many suggestion ids the store keeps as repeats of these calls' suggestions."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM suggestion_repeats r JOIN suggestions s "
                        "ON s.suggestion_id = r.suggestion_id WHERE s.call_id IN :ids"
                    ).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": call_ids},
                ).scalar_one()
            )
    finally:
        engine.dispose()


class TestTwoReplicasOnOneStore:
    """Two replicas that each test leaves as it found them: a decline and a repeated call id across them,
    and concurrent first requests for one call id."""

    def test_a_decline_on_one_replica_keeps_the_benefit_off_the_next_call_on_another_and_call_ids_hold(
        self, sample_deployment: Deployment, replica_pair: tuple[Service, Service, str]
    ) -> None:
        a, b, url = replica_pair
        holder, offered = next(
            (h, body)
            for h in cardholders_of(sample_deployment, 200)
            if len(benefits_of(body := suggestions(b, h, f"probe-{h}"))) >= 2
        )
        declined = benefits_of(offered)[0]
        first = suggestions(a, holder, "call-1")
        assert benefits_of(first)[0] == declined  # the same engine, the same snapshot
        shown = first["suggestions"][0]  # type: ignore[index]
        outcome = httpx.post(
            f"{a.base_url}/v1/suggestions/{shown['suggestion_id']}/outcome",
            json={"outcome": "declined"},
            timeout=CLIENT_TIMEOUT_S,
        )
        assert outcome.status_code == 200, outcome.text
        time.sleep(CONTACT_BOUND_S)
        after = suggestions(b, holder, "call-2")
        assert declined not in benefits_of(after), after
        # The same call id on the other replica: the answer first served, with its outcome, logged once.
        again = suggestions(b, holder, "call-1")
        assert again["suggestions"] == [
            {**s, "outcome": "declined" if s["suggestion_id"] == shown["suggestion_id"] else None}  # type: ignore[index]
            for s in first["suggestions"]  # type: ignore[attr-defined]
        ]
        stored = read_store(url, ["call-1"])
        assert stored.suggestions["call-1"] == tuple(s["suggestion_id"] for s in first["suggestions"])  # type: ignore[attr-defined]

    def test_concurrent_first_requests_for_one_call_id_on_two_replicas_answer_the_one_stored_decision(
        self, sample_deployment: Deployment, replica_pair: tuple[Service, Service, str]
    ) -> None:
        a, b, url = replica_pair
        cardholders = cardholders_of(sample_deployment, RACED_CALLS)
        call_ids = [f"raced-{n}" for n in range(RACED_CALLS)]
        with ThreadPoolExecutor(2) as pool:
            bodies = pool.map(lambda n: ask_both(a, b, cardholders[n], call_ids[n]), range(RACED_CALLS))
            answers = dict(zip(call_ids, bodies, strict=True))
        late = a.metric("nba_call_claims_late_total") + b.metric("nba_call_claims_late_total")
        stored = read_store(url, call_ids)
        differ = [
            (call_id, [suggestion_ids(body) for body in bodies], stored.suggestions.get(call_id))
            for call_id, bodies in answers.items()
            if any(suggestion_ids(body) != stored.suggestions.get(call_id) for body in bodies)
        ]
        assert differ == [], (len(differ), differ[:3], f"claims late: {late}")
        for bodies in answers.values():  # the same answer (same benefits, same wording): one decision
            assert bodies[0]["suggestions"] == bodies[1]["suggestions"], bodies
        # The loser's decision was never shown, so never stored, not even as a repeat.
        assert raced_repeats(url, call_ids) == 0


def suggestion_ids(body: dict[str, object]) -> tuple[str, ...]:
    return tuple(str(s["suggestion_id"]) for s in body["suggestions"])  # type: ignore[attr-defined]


class Balancer:
    """A load balancer's view: the replicas whose /healthz/lb answered 200 at the last check (every 0.1 s)."""

    def __init__(self, services: list[Service]) -> None:
        self.services = services
        self.in_pool = list(services)
        self.left_pool: list[tuple[int, float]] = []  # (port, when) a replica was taken out
        self._stop = threading.Event()
        self._turn = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Balancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(timeout=0.5) as client:
            while not self._stop.wait(0.1):
                healthy = []
                for service in self.services:
                    try:
                        ok = client.get(f"{service.base_url}/healthz/lb").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        healthy.append(service)
                    elif service in self.in_pool:
                        self.left_pool.append((service.port, time.monotonic()))
                self.in_pool = healthy

    def base_url(self) -> str:
        pool = self.in_pool
        self._turn += 1
        return pool[self._turn % len(pool)].base_url


def test_a_rolling_restart_under_load_behind_the_health_check_loses_nothing(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    drain_s = 1.5
    cardholders = cardholders_of(sample_deployment)
    with two_replicas(sample_deployment, tmp_path, url, NBA_DRAIN_S=str(drain_s)) as (a, b):
        with (
            Balancer([a, b]) as balancer,
            Load(balancer.base_url, cardholders, calls_per_s=60, threads=6) as load,
        ):
            time.sleep(1.0)
            for service in (a, b):
                assert service.process is not None
                service.process.send_signal(signal.SIGTERM)
                term = time.monotonic()
                wait_for(lambda s=service: not s.alive(), 30, "the replica's exit")  # type: ignore[misc]
                stopped = time.monotonic()
                service._reap()
                # Out of the pool while still serving (the balancer checks every 0.1 s; a loaded machine
                # may take some tenths of a second more), and serving until the drain interval was over.
                taken_out = [when for port, when in balancer.left_pool if port == service.port]
                assert taken_out and taken_out[-1] - term < drain_s, (balancer.left_pool, term)
                assert stopped - term >= drain_s
                service.start()
                wait_for(lambda s=service: s in balancer.in_pool, 10, "back in the pool")  # type: ignore[misc]
            time.sleep(1.0)
        exchanges = load.exchanges
        stored, waited = wait_until_stored(url, exchanges, REPLAY_WITHIN_S)
        tracebacks = a.tracebacks() + b.tracebacks()
    facts = summary(exchanges)
    assert len(exchanges) > 200 and all(ex.status == 200 for ex in exchanges), facts
    assert all(ex.outcome_status == 200 for ex in exchanges if ex.outcome), facts
    assert lost_decisions(stored, exchanges) == [], (facts, waited)
    assert lost_outcomes(stored, exchanges) == [], facts
    assert tracebacks == []


def test_postgres_restarted_under_two_replicas_keeps_suggestions_flowing_and_loses_no_decision(
    sample_deployment: Deployment, tmp_path: Path, own_pg: PgServer
) -> None:
    url = create_database(own_pg, "two_replicas")
    cardholders = cardholders_of(sample_deployment)
    with two_replicas(sample_deployment, tmp_path, url) as (a, b):
        replicas = [a, b]
        turn = iter(range(1 << 30))
        with Load(lambda: replicas[next(turn) % 2].base_url, cardholders, calls_per_s=60, threads=8) as load:
            time.sleep(1.5)
            stop_pg_server(own_pg.bindir, own_pg.data_dir, mode="fast")
            stopped = time.monotonic()
            time.sleep(1.5)
            # The load balancer's check stays 200 (suggestions are served) and says the database is down.
            during = [httpx.get(f"{s.base_url}/healthz/lb", timeout=CLIENT_TIMEOUT_S) for s in replicas]
            time.sleep(2.0)
            restart_pg_server(own_pg)
            back = time.monotonic()
            time.sleep(5.0)
        exchanges = load.exchanges
        stored, waited = wait_until_stored(url, exchanges, REPLAY_WITHIN_S)
        tracebacks = a.tracebacks() + b.tracebacks()
    facts = summary(exchanges)
    assert [r.status_code for r in during] == [200, 200], [r.text for r in during]
    assert [r.json()["database_reachable"] for r in during] == [False, False]
    assert all(ex.status == 200 for ex in exchanges), facts
    # Outcomes sent and answered while the database was down (the client's outcome pool may send late).
    while_down = [
        ex
        for ex in exchanges
        if ex.outcome and stopped + 0.5 <= ex.outcome_sent and ex.outcome_sent + ex.outcome_latency_s <= back
    ]
    assert while_down and all(ex.outcome_status == 503 for ex in while_down), summary(while_down)
    assert all(ex.outcome_retry_after for ex in exchanges if ex.outcome_status == 503), facts
    assert lost_decisions(stored, exchanges) == [], (facts, waited)
    assert lost_outcomes(stored, exchanges) == [], facts
    assert tracebacks == []
