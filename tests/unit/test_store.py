"""Feedback store: decisions, outcomes and NPS in SQLite and PostgreSQL, the local buffer, and the export."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
import shutil
import socket
import sqlite3
import struct
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Final, Literal

import pandas as pd
import pytest
import sqlalchemy as sa

from nba.contract._validation import validate_data
from nba.decision import PUBLIC_FIELD_NAMES, SuggestionBase
from nba.errors import ConflictError, DataError, NotFoundError, UnavailableError
from nba.feedback._buffer import DecisionBuffer, DecisionJournal, decision_line, decision_to_json
from nba.feedback._records import CallDecision, ShownSuggestion, feature_bytes, feature_values
from nba.feedback._schema import calls_table, suggestions_table
from nba.feedback._store import MIGRATIONS_DIR, FeedbackStore
from tests import pg
from tests.pg import PgServer, create_database

T0 = datetime(2026, 8, 15, 10, 30, tzinfo=UTC)
# A cardholder's part of the feature vectors (shared by the call's suggestions): NaN, ±inf, -0.0, the
# smallest subnormal, the largest float and a negative NaN with a payload, each of which must come back
# bit for bit.
NEGATIVE_NAN_BITS = 0xFFF8_0000_0000_0001
HOLDER = (
    feature_bytes((1.5,))
    + struct.pack("<Q", NEGATIVE_NAN_BITS)
    + feature_bytes((-2.0, math.inf, -math.inf, -0.0, 5e-324, math.nan, 1.7976931348623157e308))
)
HEAD = "0006"  # the newest migration
SAMPLES = Path(__file__).resolve().parents[2] / "data_samples"


class FakeClock:
    """A clock the test moves by hand: no sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_suggestion(suggestion_id: str, rank: int, benefit_id: str, **changes: object) -> ShownSuggestion:
    suggestion = ShownSuggestion(
        suggestion_id=suggestion_id,
        rank=rank,
        benefit_id=benefit_id,
        benefit_name=f"{benefit_id} name",
        talking_point=f"Your card has {benefit_id}: about $93 a year.",
        reasons=("dines out often", "no dining spend on this card"),
        value_usd=93.25,
        priority=0.125,
        p_adopt=0.31,
        logging_prob=0.8,
        pair_features=feature_bytes((0.1 + 0.2, rank, math.inf)),
    )
    return replace(suggestion, **changes)  # type: ignore[arg-type]


def make_decision(
    call_id: str = "T1",
    cardholder_id: str = "C0000006",
    *,
    served_at: datetime = T0,
    benefits: tuple[str, ...] = ("dining_4x", "grocery_4x"),
    call_reason: str = "general",
    agent_id: str | None = "A7",
) -> CallDecision:
    return CallDecision(
        call_id=call_id,
        cardholder_id=cardholder_id,
        call_reason=call_reason,
        model_version="20260801T000000-ab12",
        profile_as_of="2026-08-14",
        served_at=served_at,
        note=None,
        suggestions=tuple(
            make_suggestion(f"s_{call_id}_{i}", i, benefit) for i, benefit in enumerate(benefits, start=1)
        ),
        agent_id=agent_id,
        holder_features=HOLDER if benefits else b"",
        shared_reasons=("new cardholder", "uses the card a lot") if benefits else (),
    )


def same(a: CallDecision | None, b: CallDecision | None) -> bool:
    """Equality of everything stored (feature vectors as bytes, so NaN equals NaN)."""
    assert a is not None and b is not None
    return decision_to_json(a) == decision_to_json(b) and a.served_at == b.served_at


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating is most of a test's time)."""
    path = tmp_path_factory.mktemp("template") / "feedback.db"
    store = FeedbackStore(f"sqlite:///{path}")
    store.migrate()
    store.dispose()  # the last connection out checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def pg_shared_url(pg_server: PgServer) -> str:
    """A migrated PostgreSQL database the tests share, emptied before each (a new database costs 0.1 s)."""
    url = create_database(pg_server, "feedback_shared")
    store = FeedbackStore(url)
    store.migrate()
    store.dispose()
    return url


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of the backend: its own SQLite file, or the emptied shared PostgreSQL one."""
    if backend == "sqlite":
        path = tmp_path / "var" / "feedback.db"
        path.parent.mkdir()
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_shared_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE nps, outcomes, suggestion_repeats, suggestions, calls"))
    engine.dispose()
    return url


@pytest.fixture
def down_url(backend: str, tmp_path: Path) -> str:
    """A database that cannot be reached: a SQLite 'file' that is a folder, or a closed port with a password."""
    if backend == "sqlite":
        (tmp_path / "a-folder.db").mkdir()
        return f"sqlite:///{tmp_path}/a-folder.db"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://nba:s3cret-pw@127.0.0.1:{port}/nba"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + timedelta(seconds=5))


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[FeedbackStore]:
    store = FeedbackStore(db_url, clock=clock)
    store.migrate()  # already at head: a no-op, as at every service start after the first
    yield store
    store.dispose()


def table_rows(url: str, table: str) -> list[dict[str, object]]:
    """The rows of a table, read with a plain engine of the test's own."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    finally:
        engine.dispose()


# -- decisions -----------------------------------------------------------------------------------


def test_sqlite_file_and_folder_are_created_with_wal(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path}/deep/er/feedback.db")
    store.migrate()
    store.dispose()
    assert (tmp_path / "deep" / "er" / "feedback.db").is_file()
    with sqlite3.connect(tmp_path / "deep" / "er" / "feedback.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_log_decision_round_trips_nan_features_and_utc_time(store: FeedbackStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    decision = make_decision(served_at=T0.astimezone(plus_two))
    stored = store.log_decision(decision)
    found = store.find_decision("T1")
    assert found is not None and same(stored, found) and same(found, replace(decision, served_at=T0))
    assert found.served_at == T0 and found.served_at.tzinfo is UTC
    first = found.suggestions[0]
    features = feature_values(found.features_of(first))
    assert math.isnan(features[1]) and math.isnan(features[7])
    assert features[:1] + features[2:7] == (1.5, -2.0, math.inf, -math.inf, -0.0, 5e-324)
    assert features[8:] == (1.7976931348623157e308, 0.1 + 0.2, 1.0, math.inf)
    assert first.reasons == ("dines out often", "no dining spend on this card")
    assert [s.rank for s in found.suggestions] == [1, 2]
    assert found.profile_as_of == "2026-08-14" and found.agent_id == "A7"


def whole_vectors(decision: CallDecision | None) -> dict[str, bytes]:
    assert decision is not None
    return {s.suggestion_id: decision.features_of(s) for s in decision.suggestions}


@pytest.mark.parametrize("how", ["log_decision", "log_decisions"])
def test_every_suggestions_feature_vector_reads_back_bit_for_bit(
    store: FeedbackStore, db_url: str, how: str
) -> None:
    decisions = [
        make_decision("T1"),
        make_decision("T2", benefits=("air_5x",)),
        make_decision("T3", benefits=()),
    ]
    if how == "log_decision":
        for decision in decisions:
            store.log_decision(decision)
    else:
        assert store.log_decisions(decisions) == 3
    expected = {
        "s_T1_1": HOLDER + feature_bytes((0.1 + 0.2, 1.0, math.inf)),
        "s_T1_2": HOLDER + feature_bytes((0.1 + 0.2, 2.0, math.inf)),
        "s_T2_1": HOLDER + feature_bytes((0.1 + 0.2, 1.0, math.inf)),
    }
    found = {call: whole_vectors(store.find_decision(call)) for call in ("T1", "T2", "T3")}
    assert found == {
        "T1": {k: v for k, v in expected.items() if k.startswith("s_T1")},
        "T2": {"s_T2_1": expected["s_T2_1"]},
        "T3": {},
    }
    # The negative NaN with a payload and -0.0 are still themselves, not a quiet NaN and 0.0.
    assert found["T1"]["s_T1_1"][8:16] == HOLDER[8:16] == struct.pack("<Q", NEGATIVE_NAN_BITS)
    assert math.copysign(1.0, feature_values(found["T1"]["s_T1_1"])[5]) == -1.0
    # The cardholder's part is stored once per call, each suggestion keeps only its own columns.
    holders = {row["call_id"]: bytes(row["holder_features_f64"]) for row in table_rows(db_url, "calls")}
    assert holders == {"T1": HOLDER, "T2": HOLDER, "T3": b""}
    pairs = {
        row["suggestion_id"]: bytes(row["pair_features_f64"]) for row in table_rows(db_url, "suggestions")
    }
    assert pairs == {sid: vector[len(HOLDER) :] for sid, vector in expected.items()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"holder_features": b"\x00" * 7},
            r"call 'T1': `holder_features` must be float64 bytes .*got 7 bytes",
        ),
        ({"holder_features": (1.0, 2.0)}, r"call 'T1': `holder_features` must be float64 bytes .*got tuple"),
        (
            {"suggestions": (make_suggestion("s_T1_1", 1, "dining_4x", pair_features=b"\x00" * 9),)},
            r"call 'T1', suggestion 's_T1_1': `pair_features` must be float64 bytes .*got 9 bytes",
        ),
        (
            {"suggestions": (make_suggestion("s_T1_1", 1, "dining_4x", pair_features=[1.0]),)},
            r"call 'T1', suggestion 's_T1_1': `pair_features` must be float64 bytes .*got list",
        ),
    ],
)
def test_a_feature_vector_that_is_not_float64_bytes_is_refused(
    store: FeedbackStore, change: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        store.log_decision(replace(make_decision(), **change))  # type: ignore[arg-type]
    assert store.find_decision("T1") is None


def test_log_decision_is_idempotent_on_call_id(store: FeedbackStore, db_url: str) -> None:
    original = make_decision()
    store.log_decision(original)
    retry = replace(make_decision(benefits=("air_5x",)), model_version="other")
    returned = store.log_decision(retry)
    assert same(returned, original)
    assert same(store.find_decision("T1"), original)
    assert len(table_rows(db_url, "calls")) == 1
    assert len(table_rows(db_url, "suggestions")) == 2


def test_log_decisions_writes_a_batch_once_and_skips_stored_calls(store: FeedbackStore, db_url: str) -> None:
    store.log_decision(make_decision("T1"))
    batch = [make_decision("T1"), make_decision("T2", benefits=("air_5x",)), make_decision("T3", benefits=())]
    assert store.log_decisions([*batch, make_decision("T2", benefits=("air_5x",))]) == 2
    assert store.log_decisions(batch) == 0
    assert same(store.find_decision("T2"), batch[1]) and same(store.find_decision("T3"), batch[2])
    assert len(table_rows(db_url, "calls")) == 3
    assert len(table_rows(db_url, "suggestions")) == 3


def test_the_batch_insert_stores_what_sqlalchemys_own_insert_stores(
    store: FeedbackStore, db_url: str
) -> None:
    # log_decisions hands the driver plain tuples; the same values through SQLAlchemy's insert (its
    # bind processors: UTC timestamps, dates, JSON) must come out of the database the same.
    served_at = T0.astimezone(timezone(timedelta(hours=2))) + timedelta(microseconds=7)
    decision = replace(make_decision("T1", served_at=served_at, agent_id=None), note="a note")
    store.log_decisions([decision])
    with store._engine.begin() as conn:
        conn.execute(
            calls_table.insert(),
            {
                "call_id": "T2",
                "cardholder_id": decision.cardholder_id,
                "call_reason": decision.call_reason,
                "agent_id": None,
                "served_at": served_at,
                "model_version": decision.model_version,
                "profile_as_of": date.fromisoformat(decision.profile_as_of),
                "note": "a note",
                "shared_reasons": list(decision.shared_reasons),
                "holder_features_f64": decision.holder_features,
            },
        )
        conn.execute(
            suggestions_table.insert(),
            [
                {
                    "suggestion_id": s.suggestion_id.replace("T1", "T2"),
                    "call_id": "T2",
                    "rank": s.rank,
                    "benefit_id": s.benefit_id,
                    "benefit_name": s.benefit_name,
                    "talking_point": s.talking_point,
                    "reasons": list(s.reasons),
                    "value_usd": s.value_usd,
                    "score": s.priority,
                    "p_adopt": s.p_adopt,
                    "logging_prob": s.logging_prob,
                    "pair_features_f64": s.pair_features,
                }
                for s in decision.suggestions
            ],
        )

    def raw(table: str, key: str) -> dict[str, list[dict[str, object]]]:
        rows: dict[str, list[dict[str, object]]] = {}
        for row in table_rows(db_url, table):
            owner = str(row["call_id"])
            rows.setdefault(owner, []).append({k: v for k, v in row.items() if k not in (key, "call_id")})
        return {k: sorted(v, key=lambda r: str(r.get("rank"))) for k, v in rows.items()}

    for table, key in (("calls", "call_id"), ("suggestions", "suggestion_id")):
        rows = raw(table, key)
        assert rows["T1"] == rows["T2"], table
    assert same(store.find_decision("T1"), replace(decision, served_at=served_at.astimezone(UTC)))


def test_a_conflict_inside_a_batch_stores_the_rest_and_names_the_culprit(store: FeedbackStore) -> None:
    store.log_decision(make_decision("T1"))
    clash = replace(make_decision("T2"), suggestions=(make_suggestion("s_T1_1", 1, "air_5x"),))
    with pytest.raises(ConflictError, match="call 'T2': suggestion_id 's_T1_1'"):
        store.log_decisions([make_decision("T0"), clash, make_decision("T4")])
    assert store.find_decision("T0") is not None and store.find_decision("T4") is not None
    assert store.find_decision("T2") is None


def test_outcomes_since_lists_marked_suggestions_with_their_current_outcome(
    store: FeedbackStore, clock: FakeClock
) -> None:
    store.log_decision(make_decision("T1", served_at=T0))
    store.log_decision(make_decision("T2", "C0000007", served_at=T0 + timedelta(minutes=5)))
    store.record_outcome("s_T1_1", "declined")
    store.record_outcome("s_T1_1", "accepted")
    store.record_outcome("s_T2_2", "declined")
    events = store.outcomes_since(T0)
    assert [(holder, sid, e.benefit_id, e.outcome) for holder, sid, e in events] == [
        ("C0000006", "s_T1_1", "dining_4x", "accepted"),
        ("C0000007", "s_T2_2", "grocery_4x", "declined"),
    ]
    assert [sid for _, sid, _ in store.outcomes_since(T0 + timedelta(minutes=1))] == ["s_T2_2"]
    with pytest.raises(DataError, match="`since` must be timezone-aware"):
        store.outcomes_since(T0.replace(tzinfo=None))


def test_concurrent_logs_of_one_call_store_it_once(store: FeedbackStore, db_url: str) -> None:
    decision = make_decision()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: store.log_decision(decision), range(8)))
    assert all(same(result, results[0]) for result in results)
    assert len(table_rows(db_url, "calls")) == 1


def test_concurrent_claims_of_one_call_id_store_one_decision_and_all_answer_it(
    store: FeedbackStore, db_url: str
) -> None:
    # Eight replicas decided the same call at once, each under its own suggestion ids.
    claims = [
        replace(
            make_decision(),
            suggestions=tuple(
                make_suggestion(f"s_T1_{n}_{rank}", rank, benefit)
                for rank, benefit in enumerate(("dining_4x", "grocery_4x"), start=1)
            ),
        )
        for n in range(8)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(store.claim_decision, claims))
    winners = [n for n, claim in enumerate(results) if claim.won]
    assert len(winners) == 1, results
    assert all(same(claim.decision, claims[winners[0]]) for claim in results)
    assert all(claim.outcomes == {} and not claim.closed for claim in results)
    assert same(store.find_decision("T1"), claims[winners[0]])
    assert len(table_rows(db_url, "calls")) == 1
    assert len(table_rows(db_url, "suggestions")) == 2
    assert table_rows(db_url, "suggestion_repeats") == []  # the losers' decisions were never shown


def test_a_lost_claim_answers_the_stored_call_with_its_outcomes_and_whether_it_is_closed(
    store: FeedbackStore, clock: FakeClock
) -> None:
    store.log_decision(make_decision("T1"))
    store.record_outcome("s_T1_1", "declined")
    later = replace(make_decision("T1"), suggestions=(make_suggestion("s_T1_9", 1, "air_5x"),))
    claim = store.claim_decision(later)
    assert not claim.won and same(claim.decision, make_decision("T1"))
    assert (claim.outcomes, claim.closed) == ({"s_T1_1": "declined"}, False)
    clock.now = T0 + timedelta(minutes=30)
    assert store.claim_decision(later).closed is True
    won = store.claim_decision(make_decision("T2"))
    assert won.won and (won.outcomes, won.closed) == ({}, False)


def test_a_claim_under_another_calls_suggestion_id_is_a_conflict(store: FeedbackStore) -> None:
    store.log_decision(make_decision("T1"))
    clash = replace(make_decision("T2"), suggestions=(make_suggestion("s_T1_1", 1, "air_5x"),))
    with pytest.raises(ConflictError, match="call 'T2': suggestion_id 's_T1_1' already belongs"):
        store.claim_decision(clash)
    assert store.find_decision("T2") is None


def test_a_claimed_call_is_stored_exactly_as_a_logged_one(store: FeedbackStore, db_url: str) -> None:
    # On PostgreSQL a claim is one statement of its own (each value cast to its column's type), not the
    # inserts that log a decision: the rows must come out the same, whatever the values hold.
    awkward = {
        "talking_point": 'Say "50%" off; it\'s %s {x} — café ☕',
        "reasons": ("'quoted'", 'json "]', ""),
        "value_usd": 0.1 + 0.2,
        "priority": -0.0,
        "p_adopt": 1e-300,
        "pair_features": feature_bytes((math.nan, -math.inf, 5e-324)),
    }

    def decision(call_id: str) -> CallDecision:
        base = make_decision(call_id)
        shown = tuple(
            replace(s, suggestion_id=f"s_{call_id}_{s.rank}", **awkward)  # type: ignore[arg-type]
            for s in base.suggestions
        )
        return replace(base, note="n%s'", shared_reasons=("a'b", "%(x)s"), suggestions=shown)

    store.log_decision(decision("L1"))
    assert store.claim_decision(decision("C1")).won
    assert same(store.find_decision("L1"), decision("L1"))
    assert same(store.find_decision("C1"), decision("C1"))
    rows = {row["call_id"]: row for row in table_rows(db_url, "calls")}
    assert {k: v for k, v in rows["C1"].items() if k != "call_id"} == {
        k: v for k, v in rows["L1"].items() if k != "call_id"
    }
    shown = sorted(table_rows(db_url, "suggestions"), key=lambda row: (row["call_id"], row["rank"]))
    strip = ("suggestion_id", "call_id")
    assert [{k: v for k, v in row.items() if k not in strip} for row in shown if row["call_id"] == "C1"] == [
        {k: v for k, v in row.items() if k not in strip} for row in shown if row["call_id"] == "L1"
    ]


def test_a_call_with_nothing_to_suggest_is_logged(store: FeedbackStore) -> None:
    decision = make_decision("T2", benefits=(), call_reason="fraud")
    store.log_decision(decision)
    found = store.find_decision("T2")
    assert found is not None and found.suggestions == () and found.call_reason == "fraud"


def test_find_decision_of_an_unknown_call_is_none(store: FeedbackStore) -> None:
    assert store.find_decision("nope") is None


def test_a_suggestion_id_of_another_call_is_a_conflict(store: FeedbackStore) -> None:
    store.log_decision(make_decision("T1"))
    clash = replace(make_decision("T2"), suggestions=(make_suggestion("s_T1_1", 1, "air_5x"),))
    with pytest.raises(
        ConflictError, match="call 'T2': suggestion_id 's_T1_1' already belongs to another call"
    ):
        store.log_decision(clash)
    assert store.find_decision("T2") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"call_reason": "chitchat"}, "`call_reason` must be one of general, .*got 'chitchat'"),
        ({"served_at": datetime(2026, 8, 15, 10, 30)}, "`served_at` must be timezone-aware"),
        (
            {"profile_as_of": "15/08/2026"},
            "`profile_as_of` must be a date in YYYY-MM-DD form, got '15/08/2026'",
        ),
        ({"cardholder_id": ""}, "`cardholder_id` must be a non-empty string"),
        (
            {"suggestions": (make_suggestion("a", 1, "dining_4x"), make_suggestion("b", 2, "dining_4x"))},
            "suggestion 'b': `benefit_id` 'dining_4x' is shown twice on the call",
        ),
        (
            {"suggestions": (make_suggestion("a", 1, "dining_4x"), make_suggestion("a", 2, "air_5x"))},
            "`suggestion_id` must be non-empty and unique within the call",
        ),
        (
            {"suggestions": (make_suggestion("a", 0, "dining_4x"),)},
            "`rank` must be a positive integer, got 0",
        ),
        (
            {"suggestions": (make_suggestion("a", 1, "dining_4x", logging_prob=0.0),)},
            r"`logging_prob` must be a float in \(0, 1\], got 0.0",
        ),
        (
            {"suggestions": (make_suggestion("a", 1, "dining_4x", priority=math.inf),)},
            "`priority` must be a finite number, got inf",
        ),
    ],
)
def test_invalid_decisions_are_refused(store: FeedbackStore, change: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        store.log_decision(replace(make_decision(), **change))  # type: ignore[arg-type]


# -- outcomes and NPS ----------------------------------------------------------------------------


def test_the_same_outcome_twice_is_one_row(store: FeedbackStore, clock: FakeClock, db_url: str) -> None:
    store.log_decision(make_decision())
    first = store.record_outcome("s_T1_1", "accepted", agent_id="A7")
    clock.advance(minutes=1)
    again = store.record_outcome("s_T1_1", "accepted", agent_id="A8")
    assert first.changed is False and again.changed is False
    assert first.stored is True and again.stored is False  # the repeat wrote nothing
    assert again == dataclasses.replace(first, stored=False)
    assert (again.call_id, again.cardholder_id, again.benefit_id) == ("T1", "C0000006", "dining_4x")
    assert again.recorded_at == clock.now - timedelta(minutes=1) and again.recorded_at.tzinfo is UTC
    assert len(table_rows(db_url, "outcomes")) == 1


def test_a_changed_outcome_while_open_keeps_the_history(
    store: FeedbackStore, clock: FakeClock, db_url: str
) -> None:
    store.log_decision(make_decision())
    store.record_outcome("s_T1_1", "accepted")
    clock.advance(minutes=10)
    changed = store.record_outcome("s_T1_1", "declined", decline_reason="not now", agent_id="A7")
    assert changed.changed is True
    assert (changed.outcome, changed.decline_reason, changed.agent_id) == ("declined", "not now", "A7")
    assert store.call_state("T1") == ({"s_T1_1": "declined"}, False)
    history = sorted(table_rows(db_url, "outcomes"), key=lambda row: str(row["id"]))
    assert [(row["outcome"], bool(row["is_current"])) for row in history] == [
        ("accepted", False),
        ("declined", True),
    ]


def test_after_the_call_closes_an_outcome_cannot_change(store: FeedbackStore, clock: FakeClock) -> None:
    store.log_decision(make_decision())
    store.record_outcome("s_T1_1", "accepted")
    assert store.call_state("T1") == ({"s_T1_1": "accepted"}, False)
    clock.now = T0 + timedelta(minutes=30)
    assert store.call_state("T1") == ({"s_T1_1": "accepted"}, True)
    assert store.record_outcome("s_T1_1", "accepted").changed is False
    with pytest.raises(
        ConflictError,
        match=r"cannot record 'declined' for suggestion 's_T1_1': call 'T1' closed at 2026-08-15 11:00:00 UTC "
        r"\(30 minutes after it was served\); its outcome 'accepted' \(recorded 2026-08-15 10:30:05 UTC\) stands",
    ):
        store.record_outcome("s_T1_1", "declined")
    with pytest.raises(ConflictError, match="it was never marked, so it stays 'unmarked'"):
        store.record_outcome("s_T1_2", "accepted")
    assert store.call_state("T1") == ({"s_T1_1": "accepted"}, True)


def test_nps_closes_the_call(store: FeedbackStore, clock: FakeClock, db_url: str) -> None:
    store.log_decision(make_decision())
    store.record_outcome("s_T1_1", "declined")
    clock.advance(minutes=2)
    nps = store.record_nps("T1", 9)
    assert (nps.call_id, nps.score, nps.recorded_at) == ("T1", 9, T0 + timedelta(minutes=2, seconds=5))
    assert store.call_state("T1") == ({"s_T1_1": "declined"}, True)
    with pytest.raises(ConflictError, match=r"closed at 2026-08-15 10:32:05 UTC \(its NPS was recorded\)"):
        store.record_outcome("s_T1_1", "accepted")
    clock.advance(minutes=5)
    assert nps.stored is True
    assert store.record_nps("T1", 9) == dataclasses.replace(nps, stored=False)
    with pytest.raises(
        ConflictError, match=r"call 'T1' already has NPS 9 \(recorded 2026-08-15 10:32:05 UTC\); got 3"
    ):
        store.record_nps("T1", 3)
    assert len(table_rows(db_url, "nps")) == 1


def test_unknown_ids_are_not_found(store: FeedbackStore) -> None:
    store.log_decision(make_decision())
    with pytest.raises(NotFoundError, match="unknown suggestion_id 's_nope'"):
        store.record_outcome("s_nope", "accepted")
    with pytest.raises(NotFoundError, match="unknown call_id 'K404'"):
        store.record_nps("K404", 7)
    assert store.call_state("K404") is None


@pytest.mark.parametrize(
    ("outcome", "decline_reason", "message"),
    [
        (
            "maybe",
            None,
            "`outcome` must be one of accepted, declined, not_discussed, already_aware, got 'maybe'",
        ),
        ("accepted", "too busy", "`decline_reason` is only for outcome 'declined', got outcome 'accepted'"),
    ],
)
def test_bad_outcomes_are_refused(
    store: FeedbackStore, outcome: str, decline_reason: str | None, message: str
) -> None:
    store.log_decision(make_decision())
    with pytest.raises(DataError, match=message):
        store.record_outcome("s_T1_1", outcome, decline_reason=decline_reason)


@pytest.mark.parametrize("score", [-1, 11, 3.5, True, "7"])
def test_bad_nps_scores_are_refused(store: FeedbackStore, score: object) -> None:
    store.log_decision(make_decision())
    with pytest.raises(DataError, match=r"`score` must be an int in \[0, 10\], got "):
        store.record_nps("T1", score)  # type: ignore[arg-type]


# -- availability, migrations, URLs --------------------------------------------------------------


def test_a_database_that_is_down_is_unavailable(down_url: str) -> None:
    store = FeedbackStore(down_url)
    for action in (store.ping, store.migrate, lambda: store.log_decision(make_decision())):
        with pytest.raises(UnavailableError, match=r"^feedback database .* is unavailable: ") as caught:
            action()
        message = str(caught.value)
        assert "\n" not in message and "s3cret-pw" not in message
    store.dispose()


def test_a_sqlite_database_locked_beyond_the_timeout_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nba.feedback._store.SQLITE_BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "feedback.db"
    store = FeedbackStore(f"sqlite:///{path}")
    store.migrate()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(UnavailableError, match=r"is unavailable: database is locked$"):
            store.log_decision(make_decision())
        holder.execute("ROLLBACK")
        store.log_decision(make_decision())
    finally:
        holder.close()
        store.dispose()


def test_migrating_twice_is_a_no_op(store: FeedbackStore, db_url: str) -> None:
    store.log_decision(make_decision())
    store.migrate()
    again = FeedbackStore(db_url)
    again.migrate()
    again.dispose()
    assert table_rows(db_url, "alembic_version") == [{"version_num": HEAD}]
    assert store.find_decision("T1") is not None


def alembic(url: str, action: str, revision: str) -> None:
    """Runs `alembic upgrade|downgrade REVISION` on a database, as an operator would by hand."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("postgresql://", "postgresql+psycopg://"))
    getattr(command, action)(config, revision)


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database with no schema at all: a new SQLite file or a new PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/empty.db"
    return create_database(request.getfixturevalue("pg_server"), f"t_{uuid.uuid4().hex[:16]}")


def test_migration_0002_turns_json_feature_vectors_into_exact_float64_bytes_and_back(empty_url: str) -> None:
    alembic(empty_url, "upgrade", "0001")
    engine = sa.create_engine(empty_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # a suggestion logged by the first schema: features as JSON, NaN as null
        conn.execute(
            sa.text(
                "INSERT INTO calls (call_id, cardholder_id, call_reason, served_at, model_version, profile_as_of) "
                "VALUES ('T1', 'C1', 'general', :at, 'm1', :day)"
            ),
            {"at": T0.replace(tzinfo=None), "day": T0.date()},
        )
        conn.execute(
            sa.text(
                "INSERT INTO suggestions (suggestion_id, call_id, rank, benefit_id, benefit_name, talking_point, "
                "reasons, value_usd, score, p_adopt, logging_prob, features) VALUES "
                "('s1', 'T1', 1, 'dining_4x', 'Dining', 'text', '[\"a\"]', 1.0, 0.5, 0.4, 1.0, :features)"
            ),
            {"features": "[1.5, null, -2.0, 0.30000000000000004]"},
        )
    engine.dispose()
    store = FeedbackStore(empty_url)
    store.migrate()
    decision = store.find_decision("T1")
    assert decision is not None
    features = feature_values(decision.features_of(decision.suggestions[0]))
    assert math.isnan(features[1]) and features[:1] + features[2:] == (1.5, -2.0, 0.1 + 0.2)
    later = make_decision("T2", benefits=("air_5x",))
    later = replace(
        later,
        holder_features=feature_bytes((1.5, math.nan)),
        suggestions=(replace(later.suggestions[0], pair_features=feature_bytes((-2.0, 0.1 + 0.2))),),
    )
    store.log_decision(later)
    store.dispose()
    assert table_rows(empty_url, "alembic_version") == [{"version_num": HEAD}]

    alembic(empty_url, "downgrade", "0001")
    back = {row["suggestion_id"]: row["features"] for row in table_rows(empty_url, "suggestions")}
    as_json = {k: json.loads(v) if isinstance(v, str) else v for k, v in back.items()}
    assert as_json == {"s1": [1.5, None, -2.0, 0.1 + 0.2], "s_T2_1": [1.5, None, -2.0, 0.1 + 0.2]}


def insert_0002_rows(url: str, vectors: dict[str, list[bytes]]) -> None:
    """Calls and suggestions as the 0002 schema held them: each suggestion's whole vector on its row."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for n, (call_id, shown) in enumerate(vectors.items()):
            conn.execute(
                sa.text(
                    "INSERT INTO calls (call_id, cardholder_id, call_reason, served_at, model_version, "
                    "profile_as_of) VALUES (:call, 'C1', 'general', :at, 'm1', :day)"
                ),
                {"call": call_id, "at": (T0 + timedelta(minutes=n)).replace(tzinfo=None), "day": T0.date()},
            )
            for rank, blob in enumerate(shown, start=1):
                conn.execute(
                    sa.text(
                        "INSERT INTO suggestions (suggestion_id, call_id, rank, benefit_id, benefit_name, "
                        "talking_point, reasons, value_usd, score, p_adopt, logging_prob, features_f64) VALUES "
                        "(:sid, :call, :rank, :benefit, 'B', 'text', '[\"a\"]', 1.0, 0.5, 0.4, 1.0, :blob)"
                    ),
                    {
                        "sid": f"s_{call_id}_{rank}",
                        "call": call_id,
                        "rank": rank,
                        "benefit": f"b{rank}",
                        "blob": blob,
                    },
                )
    engine.dispose()


def test_migration_0003_moves_the_shared_cardholder_part_to_the_call_exactly_and_back(
    empty_url: str, tmp_path: Path
) -> None:
    rng = random.Random(3)

    def vector(n: int) -> bytes:
        # Random bit patterns: NaNs with payloads, infinities, subnormals, -0.0 all turn up.
        return b"".join(struct.pack("<Q", rng.getrandbits(64)) for _ in range(n))

    holder = vector(210) + HOLDER
    old = {
        "T1": [holder + vector(21), holder + vector(21), holder + vector(21)],  # as the service logged them
        "T2": [holder + vector(21)],  # one suggestion
        "T3": [],  # nothing to suggest
        "T4": [vector(231), vector(231)],  # nothing shared: kept whole
        "T5": [holder + vector(21), holder + vector(20)],  # vectors of different lengths: kept whole
        "T6": [vector(4)],  # shorter than the pair columns alone: kept whole
    }
    alembic(empty_url, "upgrade", "0002")
    insert_0002_rows(empty_url, old)
    store = FeedbackStore(empty_url)
    store.migrate()
    for call_id, shown in old.items():
        expected = {f"s_{call_id}_{rank}": blob for rank, blob in enumerate(shown, start=1)}
        assert whole_vectors(store.find_decision(call_id)) == expected, call_id
    holders = {row["call_id"]: bytes(row["holder_features_f64"]) for row in table_rows(empty_url, "calls")}
    assert holders == {"T1": holder, "T2": holder, "T3": b"", "T4": b"", "T5": b"", "T6": b""}
    pairs = {
        row["suggestion_id"]: bytes(row["pair_features_f64"]) for row in table_rows(empty_url, "suggestions")
    }
    assert pairs["s_T1_2"] == old["T1"][1][-21 * 8 :] and pairs["s_T4_1"] == old["T4"][0]
    assert "features_f64" not in table_rows(empty_url, "suggestions")[0]
    # The export reads the migrated rows as before.
    assert store.export(tmp_path / "export").conversations == 9
    store.log_decision(make_decision("T7"))
    store.dispose()

    alembic(empty_url, "downgrade", "0002")
    back = {row["suggestion_id"]: bytes(row["features_f64"]) for row in table_rows(empty_url, "suggestions")}
    old_rows = {
        f"s_{call_id}_{rank}": blob
        for call_id, shown in old.items()
        for rank, blob in enumerate(shown, start=1)
    }
    new_rows = {
        sid: HOLDER + feature_bytes((0.1 + 0.2, rank, math.inf))
        for rank, sid in enumerate(("s_T7_1", "s_T7_2"), start=1)
    }
    assert back == old_rows | new_rows
    assert "holder_features_f64" not in table_rows(empty_url, "calls")[0]
    assert "pair_features_f64" not in table_rows(empty_url, "suggestions")[0]


def test_postgresql_urls_without_a_driver_are_accepted(pg_server: PgServer) -> None:
    url = create_database(pg_server, f"t_{uuid.uuid4().hex[:16]}")
    store = FeedbackStore(url.replace("postgresql+psycopg://", "postgresql://"))
    assert store.url.drivername == "postgresql+psycopg"
    store.migrate()
    store.ping()
    store.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "the feedback database URL must look like sqlite:///var/feedback.db"),
        (
            "mysql://u:pw@db/x",
            r"must start with sqlite:/// or postgresql:// .*got mysql:// in 'mysql://u:\*\*\*@db/x'",
        ),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        FeedbackStore(url)


# -- the local buffer ----------------------------------------------------------------------------


def test_the_buffer_replays_into_the_store_and_empties(tmp_path: Path, store: FeedbackStore) -> None:
    buffer = DecisionBuffer(tmp_path / "var" / "buffer.jsonl")
    assert buffer.pending() == 0 and buffer.replay(store) == 0
    first, second = make_decision("T1"), make_decision("T2", benefits=())
    buffer.append(first)
    buffer.append(second)
    assert buffer.pending() == 2
    store.log_decision(first)  # a crash mid-replay: already there, logged again to no effect
    assert buffer.replay(store) == 2
    assert buffer.pending() == 0 and not buffer.path.exists()
    assert same(store.find_decision("T1"), first) and same(store.find_decision("T2"), second)


def test_buffered_feature_vectors_replay_bit_for_bit(tmp_path: Path, store: FeedbackStore) -> None:
    buffer = DecisionBuffer(tmp_path / "buffer.jsonl")
    decision = make_decision("T1")
    buffer.append(decision)
    assert buffer.replay(store) == 1
    assert whole_vectors(store.find_decision("T1")) == whole_vectors(decision)
    assert whole_vectors(decision)["s_T1_1"].startswith(HOLDER)


def test_a_buffer_line_written_before_0003_still_replays(tmp_path: Path, store: FeedbackStore) -> None:
    # Version 1 kept each suggestion's whole vector as JSON numbers, NaN (and ±inf) as null.
    body = decision_to_json(make_decision("T1"))
    body["v"] = 1
    del body["holder_features"]
    for s in body["suggestions"]:
        del s["pair_features"]
        s["features"] = [1.5, None, -2.0, 0.1 + 0.2]
    buffer = DecisionBuffer(tmp_path / "buffer.jsonl")
    buffer.path.write_text(json.dumps(body) + "\n", encoding="utf-8")
    assert buffer.replay(store) == 1
    vectors = whole_vectors(store.find_decision("T1"))
    assert vectors == dict.fromkeys(("s_T1_1", "s_T1_2"), feature_bytes((1.5, math.nan, -2.0, 0.1 + 0.2)))
    assert not buffer.rejected_path.exists()


def test_the_suggestions_table_derived_from_the_record_is_the_one_the_migrations_make(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path}/feedback.db")
    store.migrate()
    store.dispose()
    with sqlite3.connect(tmp_path / "feedback.db") as conn:
        migrated = [(row[1], bool(row[3])) for row in conn.execute("PRAGMA table_info(suggestions)")]
    conn.close()
    assert migrated == [(column.name, not column.nullable) for column in suggestions_table.columns]
    # The record's fields in the contract's words (the engine's `priority` is the column `score`).
    assert [name for name, _ in migrated][2:-1] == [
        PUBLIC_FIELD_NAMES.get(f.name, f.name) for f in dataclasses.fields(SuggestionBase)
    ]


# Buffer lines as nba wrote them before the suggestion record was defined once (version 2, by this
# module's decision_line, and version 1, before 0003): files on disk hold such lines; they must replay,
# and a decision must still be written to the very same bytes.
GOLDEN_V2_LINES: Final = tuple(
    line.encode()
    for line in (
        '{"v":2,"call_id":"c_golden","cardholder_id":"C0000001","call_reason":"travel_notice","model_version":"v1","profile_as_of":"2026-08-01","served_at":"2026-08-15T10:30:00.000250+00:00","note":null,"agent_id":"A7","holder_features":"AAAAAAAA+D8AAAAAAAD4fwAAAAAAAPD/","suggestions":[{"suggestion_id":"s_1","rank":1,"benefit_id":"dining_4x","benefit_name":"4x points at restaurants","talking_point":"Spends about $3,100 a year dining out.","reasons":["spends on dining","new cardholder"],"value_usd":93.0,"score":0.3125,"p_adopt":0.31,"logging_prob":0.9,"pair_features":"AAAAAAAAAEAAAAAAAADwfw=="},{"suggestion_id":"s_2","rank":2,"benefit_id":"lounge","benefit_name":"Lounge access","talking_point":"Flies often — \\"lounge\\" ✈","reasons":[],"value_usd":0.0,"score":0.1,"p_adopt":0.05,"logging_prob":0.05,"pair_features":"AAAAAAAAAIABAAAAAAAAAA=="}]}',
        '{"v":2,"call_id":"c_empty","cardholder_id":"C2","call_reason":"general","model_version":"v1","profile_as_of":"2026-08-01","served_at":"2026-08-15T10:31:00+00:00","note":"nothing to suggest","agent_id":null,"holder_features":"","suggestions":[]}',
    )
)
GOLDEN_V1_LINE: Final = (
    b'{"v":1,"call_id":"c_v1","cardholder_id":"C0000001","call_reason":"general","model_version":"v0",'
    b'"profile_as_of":"2026-07-01","served_at":"2026-07-15T09:00:00+00:00","note":null,"agent_id":null,'
    b'"suggestions":[{"suggestion_id":"s_v1","rank":1,"benefit_id":"dining_4x","benefit_name":"4x points",'
    b'"talking_point":"Dines out.","reasons":["spends on dining"],"value_usd":93.0,"score":0.3,'
    b'"p_adopt":0.31,"logging_prob":1.0,"features":[1.5,null,-2.0]}]}'
)


def test_buffer_lines_of_both_versions_replay_and_are_written_again_byte_for_byte(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path}/feedback.db")
    store.migrate()
    buffer = DecisionBuffer(tmp_path / "buffer.jsonl")
    buffer.append_lines(b"\n".join((*GOLDEN_V2_LINES, GOLDEN_V1_LINE)))
    assert buffer.replay(store) == 3 and not buffer.rejected_path.exists()
    stored = [store.find_decision(call_id) for call_id in ("c_golden", "c_empty", "c_v1")]
    store.dispose()
    assert [decision_line(d) for d in stored[:2] if d is not None] == [
        line + b"\n" for line in GOLDEN_V2_LINES
    ]
    v1 = stored[2]
    assert v1 is not None and v1.holder_features == b""
    (suggestion,) = v1.suggestions
    assert (suggestion.suggestion_id, suggestion.benefit_id, suggestion.reasons, suggestion.p_adopt) == (
        "s_v1",
        "dining_4x",
        ("spends on dining",),
        0.31,
    )
    assert v1.features_of(suggestion) == feature_bytes((1.5, math.nan, -2.0))


def test_replay_while_the_store_is_down_keeps_the_file(tmp_path: Path, down_url: str) -> None:
    buffer = DecisionBuffer(tmp_path / "buffer.jsonl")
    buffer.append(make_decision("T1"))
    buffer.append(make_decision("T2"))
    before = buffer.path.read_bytes()
    store = FeedbackStore(down_url)
    with pytest.raises(UnavailableError):
        buffer.replay(store)
    store.dispose()
    assert buffer.path.read_bytes() == before and buffer.pending() == 2


def test_an_unreadable_buffer_line_is_set_aside_not_lost(tmp_path: Path, store: FeedbackStore) -> None:
    buffer = DecisionBuffer(tmp_path / "buffer.jsonl")
    buffer.append(make_decision("T1"))
    with buffer.path.open("a", encoding="utf-8") as handle:
        handle.write('{"v": 1, "call_id": "torn\n')
    assert buffer.pending() == 2
    assert buffer.replay(store) == 1
    assert buffer.pending() == 0
    assert '"torn' in buffer.rejected_path.read_text(encoding="utf-8")


# -- export --------------------------------------------------------------------------------------


def log_scenario(store: FeedbackStore, clock: FakeClock) -> None:
    """Two calls of C0000006 and one of C0000009: outcomes changed, unmarked, nothing to suggest, NPS."""
    plus_two = timezone(timedelta(hours=2))
    store.log_decision(
        make_decision("T1", served_at=T0.astimezone(plus_two), benefits=("dining_4x", "grocery_4x"))
    )
    store.record_outcome("s_T1_1", "accepted", agent_id="A7")
    store.record_outcome("s_T1_2", "already_aware", agent_id="A8")
    store.record_outcome("s_T1_1", "declined", decline_reason="no", agent_id="A7")
    clock.now = T0 + timedelta(hours=1)
    store.record_nps("T1", 9)
    store.log_decision(
        make_decision("T2", served_at=T0 + timedelta(hours=2), benefits=(), call_reason="fraud")
    )
    store.log_decision(
        make_decision(
            "T3", "C0000009", served_at=T0 + timedelta(days=1, microseconds=250), benefits=("air_5x",)
        )
    )


def test_export_writes_the_data_contract_tables(
    store: FeedbackStore, clock: FakeClock, tmp_path: Path
) -> None:
    log_scenario(store, clock)
    counts = store.export(tmp_path / "out")
    assert (counts.calls, counts.conversations, counts.nps) == (3, 3, 1)
    assert [path.name for path in counts.files] == ["calls.csv", "conversations.csv", "nps.csv"]
    assert (tmp_path / "out" / "calls.csv").read_text() == (
        "call_id,cardholder_id,started_at,call_reason,agent_id\n"
        "T1,C0000006,2026-08-15 10:30:00,general,A7\n"
        "T2,C0000006,2026-08-15 12:30:00,fraud,A7\n"
        "T3,C0000009,2026-08-16 10:30:00.000250,general,A7\n"
    )
    assert (tmp_path / "out" / "conversations.csv").read_text() == (
        "call_id,cardholder_id,benefit_id,presented_at,outcome,agent_id,rank,call_reason,logging_prob,p_adopt\n"
        "T1,C0000006,dining_4x,2026-08-15 10:30:00,declined,A7,1,general,0.8,0.31\n"
        "T1,C0000006,grocery_4x,2026-08-15 10:30:00,already_aware,A8,2,general,0.8,0.31\n"
        "T3,C0000009,air_5x,2026-08-16 10:30:00.000250,unmarked,A7,1,general,0.8,0.31\n"
    )
    assert (
        tmp_path / "out" / "nps.csv"
    ).read_text() == "call_id,score,responded_at\nT1,9,2026-08-15 11:30:00\n"
    assert not list((tmp_path / "out").glob("*.partial"))


def test_export_parquet_has_naive_utc_timestamps(
    store: FeedbackStore, clock: FakeClock, tmp_path: Path
) -> None:
    log_scenario(store, clock)
    store.export(tmp_path / "out", "parquet")
    calls = pd.read_parquet(tmp_path / "out" / "calls.parquet")
    assert str(calls["started_at"].dtype) == "datetime64[us]"
    assert calls["started_at"].iloc[0] == pd.Timestamp("2026-08-15 10:30:00")
    conversations = pd.read_parquet(tmp_path / "out" / "conversations.parquet")
    assert conversations["outcome"].tolist() == ["declined", "already_aware", "unmarked"]
    assert conversations["rank"].tolist() == [1, 2, 1]
    nps = pd.read_parquet(tmp_path / "out" / "nps.parquet")
    assert nps.to_dict("records") == [
        {"call_id": "T1", "score": 9, "responded_at": pd.Timestamp("2026-08-15 11:30:00")}
    ]


def test_an_empty_store_exports_headers_only(store: FeedbackStore, tmp_path: Path) -> None:
    counts = store.export(tmp_path / "csv")
    assert (tmp_path / "csv" / "nps.csv").read_text() == "call_id,score,responded_at\n"
    store.export(tmp_path / "pq", "parquet")
    assert (counts.calls, counts.conversations, counts.nps) == (0, 0, 0)
    assert pd.read_parquet(tmp_path / "pq" / "conversations.parquet").shape == (0, 10)


def test_export_refuses_a_table_in_the_other_format_and_an_unmigrated_database(
    store: FeedbackStore, db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "nps.parquet").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"nps.parquet: already there; a data directory holds nps.csv or nps.parquet"
    ):
        store.export(tmp_path / "out", "csv")
    empty = FeedbackStore(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(DataError, match="has no feedback tables: it was never migrated"):
        empty.export(tmp_path / "out2")
    empty.dispose()


def merge_into_samples(exported: Path, merged: Path, fmt: Literal["csv", "parquet"]) -> None:
    """A copy of data_samples/ with the exported rows appended to its calls, conversations and nps."""
    merged.mkdir()
    for source in SAMPLES.iterdir():
        if source.suffix == ".parquet" and source.stem in ("calls", "conversations", "nps"):
            sample = pd.read_parquet(source)
            if fmt == "csv":
                text = (exported / f"{source.stem}.csv").read_text(encoding="utf-8")
                header, _, rows = text.partition("\n")
                # The export's extra columns (p_adopt) come after the contract's, which match the sample's.
                assert header.split(",")[: len(sample.columns)] == list(sample.columns)
                rows = "".join(
                    ",".join(line.split(",")[: len(sample.columns)]) + "\n" for line in rows.splitlines()
                )
                buffer = io.StringIO()
                sample.to_csv(buffer, index=False)
                (merged / f"{source.stem}.csv").write_text(buffer.getvalue() + rows, encoding="utf-8")
            else:
                extra = pd.read_parquet(exported / f"{source.stem}.parquet")
                assert list(extra.columns)[: len(sample.columns)] == list(sample.columns)
                extra = extra[sample.columns]
                pd.concat([sample, extra], ignore_index=True).to_parquet(merged / source.name, index=False)
        else:
            (merged / source.name).write_bytes(source.read_bytes())


def test_exported_tables_merged_into_the_samples_validate(
    backend: str, store: FeedbackStore, clock: FakeClock, tmp_path: Path
) -> None:
    # One format per backend keeps the test fast; both formats and both backends are covered.
    fmt: Literal["csv", "parquet"] = "csv" if backend == "sqlite" else "parquet"
    log_scenario(store, clock)
    store.export(tmp_path / "exported", fmt)
    merge_into_samples(tmp_path / "exported", tmp_path / "merged", fmt)
    report = validate_data(tmp_path / "merged")
    assert report.ok, [str(problem) for problem in report.problems]
    assert report.summary is not None
    rows = {table.file: table.rows for table in report.summary.tables}
    original = validate_data(SAMPLES).summary
    assert original is not None
    before = {table.file.split(".")[0]: table.rows for table in original.tables}
    assert rows[f"calls.{fmt}"] == before["calls"] + 3
    assert rows[f"conversations.{fmt}"] == before["conversations"] + 3
    assert rows[f"nps.{fmt}"] == before["nps"] + 1


def test_missing_postgresql_binaries_fail_and_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg.shutil, "which", lambda name: None)
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    with pytest.raises(pytest.fail.Exception, match="run `make system-deps`"):
        pg.require_pg_bindir()


def test_only_sqlite_reads_are_local_enough_for_the_event_loop(tmp_path: Path) -> None:
    sqlite_store = FeedbackStore(f"sqlite:///{tmp_path}/f.db")
    pg_store = FeedbackStore("postgresql://nba@127.0.0.1:1/nba")  # never connected: engines connect lazily
    assert sqlite_store.reads_are_local and not pg_store.reads_are_local
    sqlite_store.dispose()
    pg_store.dispose()


# -- faults: a call served twice, migrations in threads, the journal ------------------------------


def test_a_later_decision_under_a_stored_call_id_is_kept_as_a_repeat_and_its_outcomes_count(
    store: FeedbackStore,
) -> None:
    first = make_decision("T1", benefits=("dining_4x", "grocery_4x"))
    store.log_decision(first)
    # Served again under the same call id (the look-up did not answer in time): other ids, one benefit
    # the same, one new (paired by rank).
    later = replace(
        make_decision("T1", benefits=("grocery_4x", "travel_3x")),
        suggestions=tuple(
            replace(s, suggestion_id=f"s_later_{i}")
            for i, s in enumerate(make_decision("T1", benefits=("grocery_4x", "travel_3x")).suggestions)
        ),
    )
    assert store.log_decisions([later]) == 0
    assert same(store.find_decision("T1"), first)  # the first stored is the call
    by_benefit = store.record_outcome("s_later_0", "accepted")  # grocery_4x: the stored grocery one
    assert by_benefit.suggestion_id == "s_T1_2" and by_benefit.benefit_id == "grocery_4x"
    by_rank = store.record_outcome("s_later_1", "declined")  # travel_3x at rank 2: the stored rank 2
    assert by_rank.suggestion_id == "s_T1_2" and by_rank.changed is True
    assert store.call_state("T1") == ({"s_T1_2": "declined"}, False)
    assert store.log_decision(later) is not None  # a replay of the repeat changes nothing
    other_holder = replace(
        later, cardholder_id="C0000099", suggestions=(replace(later.suggestions[0], suggestion_id="s_x"),)
    )
    store.log_decisions([other_holder])
    with pytest.raises(NotFoundError, match="s_x"):
        store.record_outcome("s_x", "accepted")


def test_call_state_reads_outcomes_and_closing_in_one_go(store: FeedbackStore, clock: FakeClock) -> None:
    assert store.call_state("T1", fast=True) is None
    store.log_decision(make_decision("T1"))
    store.record_outcome("s_T1_1", "accepted")
    assert store.call_state("T1", fast=True) == ({"s_T1_1": "accepted"}, False)
    store.record_nps("T1", 9)
    assert store.call_state("T1") == ({"s_T1_1": "accepted"}, True)


def test_threads_migrating_at_once_each_finish_at_head(empty_url: str) -> None:
    # Alembic's module-level context is shared by threads: without the process lock one thread's
    # migration ran on another's connection (KeyError: 'config', or a deadlock on PostgreSQL).
    stores = [FeedbackStore(empty_url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda store: store.migrate(), stores))
    assert all(store.migrated and store.revision() == HEAD for store in stores)
    for store in stores:
        store.dispose()


def test_the_journal_hands_a_dead_process_segments_over_and_keeps_a_living_ones(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    living = DecisionJournal(folder)
    assert living.adopt_orphans() == []
    living.open()
    living.append(decision_line(make_decision("T1")))
    # A segment whose owner died (no lock held on it), with a line torn by the crash.
    dead = folder / "999999-000001.jsonl"
    dead.write_bytes(decision_line(make_decision("T2")) + b'{"v": 2, "call_id": "T3", "car')
    newcomer = DecisionJournal(folder)
    assert newcomer.adopt_orphans() == [dead]  # the living one's segment stays with it
    buffer = DecisionBuffer(tmp_path / "buffer.jsonl")
    buffer.append_lines(dead.read_bytes())
    newcomer.remove(dead)
    assert not dead.exists() and buffer.pending() == 2
    closed = living.rotate()
    assert closed is not None and closed.exists() and living.bytes_written == 0
    living.remove(closed)
    last = living.close()
    assert last is not None and last.read_bytes() == b""
