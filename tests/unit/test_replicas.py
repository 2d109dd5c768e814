"""The contact feed (outcomes recorded by other workers and replicas → this worker's ledger), the drain on
SIGTERM and the recently-issued suggestion id, in process on a SQLite store."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import pytest

from api.decision_log import ContactLedger, issued_within
from api.main import settings_environment
from api.metrics import Metrics
from api.replicas import OVERLAP_S, ContactFeed, Drain
from api.routes.suggestions import new_ids
from api.settings import Settings
from nba.feedback import FeedbackStore
from tests.unit.test_store import T0, FakeClock, make_decision


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    clock = FakeClock(T0)
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}", clock=clock)
    store.migrate()
    return store


def feed_of(store: FeedbackStore, ledger: ContactLedger) -> ContactFeed:
    return ContactFeed(store, ledger, Metrics(), store.clock, lambda: T0 - timedelta(days=1), poll_s=0)


def benefits(ledger: ContactLedger, holder: str) -> list[tuple[str, str]]:
    return sorted((c.benefit_id, c.outcome) for c in ledger.recent(holder, T0 - timedelta(days=1)))


def test_the_feed_records_outcomes_stored_by_others_and_their_changes_in_order(store: FeedbackStore) -> None:
    ledger = ContactLedger()
    feed = feed_of(store, ledger)
    store.log_decisions([make_decision("K1", "C1"), make_decision("K2", "C2")])
    store.record_outcome("s_K1_1", "declined")
    assert feed.poll() == 1
    assert benefits(ledger, "C1") == [("dining_4x", "declined")]
    # A changed outcome (the agent corrects it) replaces the first: the rows are applied in id order.
    store.record_outcome("s_K1_1", "accepted")
    store.record_outcome("s_K2_2", "declined")
    assert feed.poll() == 2
    assert benefits(ledger, "C1") == [("dining_4x", "accepted")]
    assert benefits(ledger, "C2") == [("grocery_4x", "declined")]
    assert feed.poll() == 0  # read by id: nothing is read twice


def test_the_feed_starts_where_start_up_left_off_and_skips_calls_older_than_the_snapshot(
    store: FeedbackStore,
) -> None:
    clock = store.clock
    assert isinstance(clock, FakeClock)
    store.log_decisions([make_decision("OLD", "C1"), make_decision("NEW", "C2", served_at=T0)])
    store.record_outcome("s_OLD_1", "declined")  # before the feed started: warm_ledger's
    clock.advance(seconds=OVERLAP_S * 5)
    ledger = ContactLedger()
    feed = ContactFeed(store, ledger, Metrics(), clock, lambda: T0 - timedelta(days=1), poll_s=0)
    store.record_outcome("s_NEW_1", "declined")
    assert feed.poll() == 1 and benefits(ledger, "C1") == [] and benefits(ledger, "C2") != []
    later = ContactFeed(store, ContactLedger(), Metrics(), clock, lambda: T0 + timedelta(days=1), poll_s=0)
    assert later.poll() == 0  # served before the snapshot in service: the snapshot has it


def test_a_missing_id_is_read_again_until_it_commits_then_given_up(
    store: FeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = feed_of(store, ContactLedger())
    feed._low_id = 10
    feed._seen_above = {12, 13}  # 11 not committed yet (PostgreSQL commits ids out of order)
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    feed._advance(10)
    assert feed._low_id == 10
    feed._seen_above.add(11)
    feed._advance(10)
    assert feed._low_id == 13 and feed._seen_above == set()
    feed._seen_above = {15}  # 14 never commits (a rolled-back insert)
    feed._advance(13)
    now[0] += OVERLAP_S / 2
    feed._advance(13)
    assert feed._low_id == 13
    now[0] += OVERLAP_S
    feed._advance(13)
    assert feed._low_id == 15


def test_the_feed_is_quiet_while_the_database_is_down(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'missing' / 'feedback.db'}")
    store.migrated = True  # as if it had been migrated, then the file's folder vanished
    assert feed_of(store, ContactLedger()).poll() == 0


def test_a_suggestion_id_says_when_it_was_issued() -> None:
    now = datetime.now(UTC)
    fresh = f"s_{new_ids(1)[0]}"
    assert issued_within(fresh, now, timedelta(seconds=30))
    assert not issued_within(fresh, now + timedelta(minutes=1), timedelta(seconds=30))
    for other in ("s_T1_1", "s_" + "z" * 28, fresh[1:], ""):
        assert not issued_within(other, now, timedelta(seconds=30))


def test_sigterm_drains_for_the_interval_then_reaches_the_server() -> None:
    handed: list[int] = []

    def server(signum: int, frame: FrameType | None) -> None:
        handed.append(signum)

    previous = signal.signal(signal.SIGTERM, server)
    try:
        drain = Drain(0.2)
        assert drain.install()
        os.kill(os.getpid(), signal.SIGTERM)
        assert drain.draining and handed == []
        deadline = time.monotonic() + 5
        while not handed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handed == [signal.SIGTERM]
        drain.uninstall()
        assert signal.getsignal(signal.SIGTERM) == server
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_second_sigterm_or_no_drain_interval_stops_at_once() -> None:
    handed: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: handed.append(signum))
    try:
        drain = Drain(60)
        drain.install()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert handed == [signal.SIGTERM]
        drain.uninstall()
        at_once = Drain(0)
        at_once.install()
        os.kill(os.getpid(), signal.SIGTERM)
        assert handed == [signal.SIGTERM] * 2 and not at_once.draining
        at_once.uninstall()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_the_drain_leaves_sigterm_alone() -> None:
    installed: list[bool] = []
    thread = threading.Thread(target=lambda: installed.append(Drain(1).install()))
    thread.start()
    thread.join()
    assert installed == [False]


def test_the_settings_handed_to_workers_read_back_to_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        models_dir=tmp_path / "models",
        database_url="postgresql://nba@db.internal/nba",
        api_keys_file=tmp_path / "keys.json",
        production=True,
        workers=3,
        drain_s=2.5,
        contact_poll_s=0.1,
        epsilon=0.05,
    )
    for name in list(os.environ):
        if name.startswith("NBA_"):
            monkeypatch.delenv(name)
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_a_forked_worker_numbers_its_requests_under_a_prefix_of_its_own() -> None:
    """`nba serve --workers` forks its workers from one imported process: the request-id prefix drawn at
    import must be drawn again in each, or two workers would hand out the same request ids."""
    from api import main

    first = main._REQUEST_IDS.next()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once (no pytest teardown)
        os.write(write, main._REQUEST_IDS.next().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == len(first) == 20
    assert child[:12] != first[:12] and child.endswith("00000001")
    assert main._REQUEST_IDS.next()[:12] == first[:12]
