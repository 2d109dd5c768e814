"""NPS insights: the arithmetic against a hand count, the intervals, small groups, agents, the two sources,
bad input, and a generated world end to end."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.contract import load_catalog
from nba.feedback import FeedbackStore
from nba.insights import GroupCounts, bootstrap_nps
from tests.conftest import VALID_TABLES, write_tables
from tests.unit.test_store import T0, FakeClock, make_decision
from training.cli import main
from training.insights_job import InsightsResult, run_insights
from training.progress import SILENT
from training.synth import generate_world


@dataclass
class Call:
    """One hand-made call: who, why, which agent, what happened to each suggestion, and the NPS answer."""

    call_id: str
    score: int | None
    reason: str = "general"
    agent: str = "A1"
    cardholder: str = "C3"
    outcomes: dict[str, str] = field(default_factory=dict)
    day: str = "2025-03-05"


def hand_dir(path: Path, calls: list[Call], *, usage: str | None = None, extra_nps: str = "") -> Path:
    """A data directory (the valid sample's cardholders and spend) holding exactly `calls`."""
    conversations = ["call_id,cardholder_id,benefit_id,presented_at,outcome,agent_id,rank,call_reason"]
    rows = ["call_id,cardholder_id,started_at,call_reason,agent_id"]
    nps = ["call_id,score,responded_at"]
    for c in calls:
        rows.append(f"{c.call_id},{c.cardholder},{c.day}T10:00:00Z,{c.reason},{c.agent}")
        for rank, (benefit, outcome) in enumerate(c.outcomes.items(), start=1):
            conversations.append(
                f"{c.call_id},{c.cardholder},{benefit},{c.day}T10:01:00Z,{outcome},{c.agent},{rank},{c.reason}"
            )
        if c.score is not None:
            nps.append(f"{c.call_id},{c.score},{c.day}T18:00:00Z")
    tables = VALID_TABLES | {
        "calls": "\n".join(rows) + "\n",
        "conversations": "\n".join(conversations) + "\n",
        "nps": "\n".join(nps) + "\n" + extra_nps,
    }
    if usage is not None:
        tables["benefit_usage"] = usage
    return write_tables(path, tables)


def insights_of(data: Path | None, out: Path, db: str | None = None, **kw: int) -> InsightsResult:
    return run_insights(data, db, out, progress=SILENT, **kw)


def hand_nps(scores: list[int]) -> float:
    """The naive reference: count promoters and detractors one by one."""
    promoters = detractors = 0
    for score in scores:
        if score >= 9:
            promoters += 1
        elif score <= 6:
            detractors += 1
    return 100.0 * (promoters - detractors) / len(scores)


def test_nps_is_promoters_minus_detractors_by_a_hand_count() -> None:
    rng = np.random.default_rng(5)
    groups = {name: list(rng.integers(0, 11, size=n)) for name, n in (("a", 7), ("b", 50), ("c", 333))}
    counts = GroupCounts(
        tuple(groups),
        np.array([sum(s >= 9 for s in v) for v in groups.values()]),
        np.array([sum(7 <= s <= 8 for s in v) for v in groups.values()]),
        np.array([sum(s <= 6 for s in v) for v in groups.values()]),
    )
    rows = bootstrap_nps(counts, "x", seed=1)
    for row in rows:
        assert row.nps == pytest.approx(hand_nps(groups[row.group]))
        assert row.answers == len(groups[row.group])


def test_intervals_hold_the_point_and_shrink_as_answers_grow() -> None:
    # The same shares (50% promoters, 20% passives, 30% detractors: NPS +20) at ten times the answers each.
    sizes = np.array([40, 400, 4_000, 40_000])
    counts = GroupCounts(("40", "400", "4000", "40000"), sizes // 2, sizes // 5, sizes * 3 // 10)
    rows = bootstrap_nps(counts, "x", seed=3)
    widths = [row.high - row.low for row in rows]
    for row in rows:
        assert row.nps == pytest.approx(20.0)
        assert row.low < row.nps < row.high
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 10
    # The normal approximation's half-width for 40,000 answers is about 0.8 points.
    assert widths[-1] == pytest.approx(2 * 1.96 * np.sqrt((0.5 + 0.3 - 0.2**2) / 40_000) * 100, rel=0.15)
    assert rows == bootstrap_nps(counts, "x", seed=3)


def test_a_group_with_no_answer_is_refused() -> None:
    counts = GroupCounts(("a", "b"), np.array([1, 0]), np.array([0, 0]), np.array([0, 0]))
    with pytest.raises(ValueError, match=r"\['b'\] have none"):
        bootstrap_nps(counts, "x", seed=0)


def test_outcomes_count_under_the_most_telling_and_empty_calls_say_why(tmp_path: Path) -> None:
    gold = load_catalog().product_by_id["gold"].benefits
    usage = "cardholder_id,benefit_id,first_used_date\n" + "".join(f"C1,{b},2025-01-01\n" for b in gold)
    calls = [
        Call("K1", 10, outcomes={"grocery_4x": "declined", "dining_credit": "accepted"}),
        Call("K2", 3, outcomes={"grocery_4x": "declined", "dining_4x": "already_aware"}),
        Call("K3", 9, outcomes={"grocery_4x": "not_discussed"}),
        Call("K4", 0, reason="fraud"),
        Call("K5", 8, cardholder="C1"),  # gold, every benefit already used: nothing eligible
        Call("K6", 7),  # everyday, benefits unused: the tables cannot say why nothing was shown
        Call("K7", None, outcomes={"grocery_4x": "accepted"}),  # never answered: in no NPS
        Call("K8", 2, outcomes={"grocery_4x": "unmarked"}),  # shown, nobody recorded what happened
    ]
    result = insights_of(hand_dir(tmp_path / "data", calls, usage=usage), tmp_path / "out")
    outcome = {row.group: (row.answers, row.nps) for row in result.insights.tables["outcome"]}
    assert outcome == {
        "accepted": (1, 100.0),
        "declined": (1, -100.0),
        "not_discussed": (1, 100.0),
        "unmarked": (1, -100.0),
        "nothing suggested": (3, -33.333333333333336),
    }
    why = {row.group: row.answers for row in result.insights.tables["nothing_suggested"]}
    assert why == {"sensitive call reason": 1, "nothing eligible": 1, "unknown": 1}
    benefit = {row.group: row.answers for row in result.insights.tables["benefit"]}
    assert benefit == {"grocery_4x": 4, "dining_credit": 1, "dining_4x": 1}
    assert result.insights.answered_calls == 7 and result.insights.calls == 8
    assert result.insights.centre.nps == pytest.approx(hand_nps([10, 3, 9, 0, 8, 7, 2]))
    products = {row.group: row.answers for row in result.insights.tables["product"]}
    assert products == {"everyday": 6, "gold": 1}


def test_small_groups_are_marked_too_few_to_say_on_the_page_and_in_the_csv(tmp_path: Path) -> None:
    calls = [Call(f"K{i}", i % 11, reason="payment" if i < 40 else "dispute") for i in range(45)]
    result = insights_of(hand_dir(tmp_path / "data", calls), tmp_path / "out")
    reasons = {row.group: row for row in result.insights.tables["call_reason"]}
    assert not reasons["payment"].too_few and reasons["dispute"].too_few
    assert reasons["dispute"].low < reasons["dispute"].high
    with (tmp_path / "out" / "nps_by_call_reason.csv").open() as handle:
        marked = {row["group"]: row["too_few"] for row in csv.DictReader(handle)}
    assert marked == {"payment": "False", "dispute": "True"}
    page = (tmp_path / "out" / "insights.html").read_text()
    dispute_row = page[page.index("<td>dispute</td>") :].split("</tr>")[0]
    assert "too few to say" in dispute_row and f"{reasons['dispute'].nps:+.1f}" not in dispute_row
    assert "<script" not in page and "http" not in page.replace('lang="en"', "")


def test_agents_are_listed_from_the_threshold_up_beside_the_centre(tmp_path: Path) -> None:
    calls = [Call(f"K{i}", i % 11, agent="A1" if i < 6 else "A2") for i in range(8)]
    result = insights_of(hand_dir(tmp_path / "data", calls), tmp_path / "out", min_agent_calls=5)
    assert [row.group for row in result.insights.tables["agent"]] == ["A1"]
    assert "1 of 2 agents have fewer than 5 answered calls (2 calls in all)" in str(result)
    with (tmp_path / "out" / "nps_by_agent.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["centre_nps"]) == pytest.approx(round(result.insights.centre.nps, 2))
    assert code_and_err(["--data", str(tmp_path / "data"), "--min-agent-calls", "0"])[0] == 2


def test_an_agent_id_missing_on_most_calls_is_said(tmp_path: Path) -> None:
    calls = [Call(f"K{i}", 9, agent="" if i < 5 else "A1") for i in range(8)]
    result = insights_of(hand_dir(tmp_path / "data", calls), tmp_path / "out")
    assert "agent id missing on 5 of 8 answered calls (62%): the agent table covers only the rest" in str(
        result
    )


def test_rows_left_out_are_counted_and_named(tmp_path: Path) -> None:
    calls = [Call("K1", 9), Call("K2", 4, outcomes={"grocery_4x": "maybe"})]
    extra = "K404,8,2025-03-06T10:00:00Z\nK1,2,2025-03-04T10:00:00Z\n"
    result = insights_of(hand_dir(tmp_path / "data", calls, extra_nps=extra), tmp_path / "out")
    left = {item.reason: (item.rows, item.examples) for item in result.insights.left_out}
    assert left == {
        "conversation rows with no call id, no benefit id or an outcome outside the contract "
        "(not counted as suggestions)": (1, ("K2",)),
        "earlier NPS answers to a call answered again (the latest is counted)": (1, ("K1",)),
        "NPS answers to a call in neither calls nor conversations": (1, ("K404",)),
    }
    assert result.insights.centre.answers == 2 and result.insights.centre.nps == 0.0
    assert "left out: 1 NPS answers to a call in neither calls nor conversations (e.g. K404)" in str(result)


def code_and_err(args: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str]:
    code = main(["insights", "--out", "/tmp/nba-insights-unused", "-q", *args])
    return code, capsys.readouterr().err if capsys else ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: nothing to report on: give --data DIR, --db URL or both"),
        (
            ["--db", "sqlite:////nonexistent/feedback.db"],
            "error: /nonexistent/feedback.db: no such feedback database",
        ),
    ],
)
def test_bad_sources_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = code_and_err(args, capsys)
    assert code == 1 and err.startswith(message) and err.count("\n") == 1


def test_no_nps_answers_at_all_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = hand_dir(tmp_path / "data", [Call("K1", None, outcomes={"grocery_4x": "accepted"})])
    code, err = code_and_err(["--data", str(data)], capsys)
    assert code == 1
    assert (
        err
        == f"error: {data}: no NPS answers at all (the nps table has no rows), so there is no NPS to report\n"
    )


def store_with(path: Path, calls: list[tuple[str, str | None, int]]) -> str:
    """A SQLite feedback store holding (call id, first suggestion's outcome (None: never marked), NPS) calls."""
    url = f"sqlite:///{path}"
    store = FeedbackStore(url, clock=FakeClock(T0 + timedelta(seconds=5)))
    store.migrate()
    for call_id, outcome, score in calls:
        store.log_decision(make_decision(call_id, "C3", benefits=("grocery_4x",), agent_id="A1"))
        if outcome is not None:
            store.record_outcome(f"s_{call_id}_1", outcome)
        store.record_nps(call_id, score)
    store.dispose()
    return url


def test_the_store_alone_and_joined_with_the_data_naming_disagreements(tmp_path: Path) -> None:
    url = store_with(
        tmp_path / "feedback.db",
        [("T1", "accepted", 10), ("T2", "declined", 2), ("T3", "accepted", 9), ("T4", None, 8)],
    )
    alone = insights_of(None, tmp_path / "alone", db=url).insights
    outcomes = {r.group: r.answers for r in alone.tables["outcome"]}
    assert outcomes == {"accepted": 2, "declined": 1, "unmarked": 1}
    assert {r.group for r in alone.tables["product"]} == {"unknown"}
    assert alone.sources == ("the feedback store",)

    # The data directory holds T1 as the store does, T2 with another outcome and T3 with another score;
    # T4's outcome, which the store lacks (unmarked), it fills: no disagreement.
    calls = [
        Call("T4", 8, outcomes={"grocery_4x": "declined"}, day="2026-08-15"),
        Call("T1", 10, outcomes={"grocery_4x": "accepted"}, day="2026-08-15"),
        Call("T2", 2, outcomes={"grocery_4x": "accepted"}, day="2026-08-15"),
        Call("T3", 4, outcomes={"grocery_4x": "accepted"}, day="2026-08-15"),
        Call("K9", 6),
    ]
    joined = insights_of(hand_dir(tmp_path / "data", calls), tmp_path / "joined", db=url).insights
    named = {(d.call_id, d.field, d.data_value, d.store_value) for d in joined.disagreements}
    assert named == {("T2", "outcome", "accepted", "declined"), ("T3", "nps score", "4", "9")}
    assert joined.answered_calls == 3 and joined.calls == 5
    assert {r.group: r.answers for r in joined.tables["outcome"]}["declined"] == 1  # T4, as the data says
    (left,) = joined.left_out
    assert left.rows == 2 and left.examples == ("T2", "T3") and "disagree" in left.reason
    with (tmp_path / "joined" / "disagreements.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_a_generated_world_adds_up(tmp_path: Path) -> None:
    data = tmp_path / "world"
    generate_world(400, seed=7, out_dir=data, fmt="csv", oracle_path=tmp_path / "oracle.parquet")
    result = insights_of(data, tmp_path / "out")
    nps = pd.read_csv(data / "nps.csv", dtype={"call_id": str})
    insights = result.insights
    assert insights.answered_calls == len(nps) and not insights.left_out
    assert insights.centre.nps == pytest.approx(hand_nps(list(nps["score"])))
    for dimension in ("outcome", "call_reason", "product", "week"):
        assert sum(row.answers for row in insights.tables[dimension]) == len(nps), dimension
    nothing = next(r for r in insights.tables["outcome"] if r.group == "nothing suggested")
    assert sum(r.answers for r in insights.tables["nothing_suggested"]) == nothing.answers
    for dimension, rows in insights.tables.items():
        for row in rows:
            assert row.low <= row.nps <= row.high, (dimension, row)
            assert row.too_few == (row.answers < insights.min_answers)
    page = result.page.read_text()
    assert page.count("data:image/png;base64,") == 3 and "<script" not in page


def test_whether_a_pitch_moves_nps_is_said_per_call_reason(tmp_path: Path) -> None:
    # On general calls a discussed pitch comes with detractors and calls without one with promoters; on
    # payment calls both sides answer alike; lost-card calls have too few answers to say.
    calls = [Call(f"G{i}", 2 + i % 3, outcomes={"grocery_4x": "declined"}) for i in range(40)]
    calls += [Call(f"H{i}", 9 + i % 2) for i in range(40)]
    calls += [
        Call(f"P{i}", 5 + 4 * (i % 2), reason="payment", outcomes={"grocery_4x": "accepted"})
        for i in range(40)
    ]
    calls += [
        Call(f"Q{i}", 5 + 4 * (i % 2), reason="payment", outcomes={"grocery_4x": "not_discussed"})
        for i in range(40)
    ]
    calls += [Call(f"L{i}", 8, reason="lost_card", outcomes={"grocery_4x": "accepted"}) for i in range(3)]
    calls += [Call("L9", 3, reason="lost_card")]
    result = insights_of(hand_dir(tmp_path / "data", calls), tmp_path / "out")
    pitch = {r.call_reason: r for r in result.insights.pitch}
    assert set(pitch) == {"general", "payment", "lost_card"}
    general = pitch["general"]
    assert (general.with_pitch.answers, general.without_pitch.answers) == (40, 40)
    assert general.with_pitch.nps == pytest.approx(hand_nps([2 + i % 3 for i in range(40)]))
    assert general.difference == pytest.approx(-100.0 - 100.0)
    assert general.low <= general.difference <= general.high < 0 and general.verdict == "lower with a pitch"
    assert pitch["payment"].difference == 0.0 and pitch["payment"].verdict == "no clear difference"
    assert pitch["lost_card"].too_few and pitch["lost_card"].verdict == "too few to say"
    assert "NPS is lower on calls with a pitch than without, for: general" in str(result)
    with (tmp_path / "out" / "nps_pitch_by_call_reason.csv").open() as handle:
        rows = {row["call_reason"]: row for row in csv.DictReader(handle)}
    assert rows["general"]["verdict"] == "lower with a pitch" and rows["general"]["with_answers"] == "40"
    assert "Does a pitch move NPS? By call reason" in result.page.read_text()


def test_the_pitch_difference_needs_the_same_groups_and_holds_its_point() -> None:
    from nba.insights._nps import bootstrap_pitch_difference

    a = GroupCounts(("x",), np.array([50]), np.array([30]), np.array([20]))
    b = GroupCounts(("y",), np.array([50]), np.array([30]), np.array([20]))
    with pytest.raises(ValueError, match="same groups"):
        bootstrap_pitch_difference(a, b, seed=0)
    (row,) = bootstrap_pitch_difference(
        a, GroupCounts(("x",), np.array([20]), np.array([30]), np.array([50])), seed=0
    )
    assert row.difference == pytest.approx(30.0 - (-30.0))
    assert row.low < row.difference < row.high and row.verdict == "higher with a pitch"
    assert (
        bootstrap_pitch_difference(
            GroupCounts((), *(np.array([], dtype=np.int64),) * 3),
            GroupCounts((), *(np.array([], dtype=np.int64),) * 3),
            seed=0,
        )
        == ()
    )
