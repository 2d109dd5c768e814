"""Features: point in time, equal to a naive loop over the raw rows, one definition for serving and training."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nba.contract._mcc import MccMap, load_mcc_map
from nba.contract._tables import open_data
from nba.errors import DataError, SchemaError
from nba.features._sql import (
    BENEFIT_HISTORY_COLUMNS,
    ExtraColumns,
    FeatureConfig,
    build_benefit_history,
    build_cardholder_features,
    categorical_features,
    feature_names,
    load_feature_config,
    register_snapshots,
    select_extra_columns,
    snapshot_all_sql,
)
from nba.vocab import SPEND_CATEGORIES
from tests.conftest import VALID_TABLES, write_tables
from training.features_job import run_features

WINDOWS = (30, 90, 365)
VALID_AS_OF = date(2025, 3, 4)
WORLD_AS_OF = date(2025, 6, 1)

# ---------------------------------------------------------------------------------------------------------
# The naive reference: slow, obvious loops over the CSV rows, one cardholder and one date at a time.


def _rows(data_dir: Path, table: str) -> list[dict[str, str]]:
    path = data_dir / f"{table}.csv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip())
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _day(text: str) -> date:
    return date.fromisoformat(text.strip())


def naive_features(data_dir: Path, mcc_map: MccMap, cardholder_id: str, as_of: date) -> dict[str, Any]:
    """Every feature of one cardholder as of a date, computed the long way."""
    spend = {(c, w): 0.0 for c in SPEND_CATEGORIES for w in WINDOWS}
    purchases = {(c, w): 0 for c in SPEND_CATEGORIES for w in WINDOWS}
    prior_90d = dict.fromkeys(SPEND_CATEGORIES, 0.0)
    last_purchase_age: dict[str, int] = {}
    refund_usd = dict.fromkeys(WINDOWS, 0.0)
    refund_count = dict.fromkeys(WINDOWS, 0)
    purchase_days: dict[int, set[date]] = {w: set() for w in WINDOWS}
    purchase_months: set[int] = set()
    for row in _rows(data_dir, "transactions"):
        if row["cardholder_id"] != cardholder_id:
            continue
        day, amount = _day(row["transaction_date"]), float(row["amount"])
        if day >= as_of:
            continue
        age = (as_of - day).days
        category = mcc_map.category_of(int(row["mcc"]))
        for w in WINDOWS:
            if age <= w:
                spend[category, w] += amount
                if amount > 0:
                    purchases[category, w] += 1
                    purchase_days[w].add(day)
                if amount < 0:
                    refund_usd[w] += -amount
                    refund_count[w] += 1
        if 90 < age <= 180:
            prior_90d[category] += amount
        if amount > 0:
            last_purchase_age[category] = min(age, last_purchase_age.get(category, age))
            if age <= 365:
                purchase_months.add((age - 1) // 30)

    out: dict[str, Any] = {}
    rounded = {key: round(value, 2) for key, value in spend.items()}
    for c in SPEND_CATEGORIES:
        for w in WINDOWS:
            out[f"spend_{c}_{w}d_usd"] = rounded[c, w]
            out[f"tx_{c}_{w}d"] = purchases[c, w]
            positive_total = sum(max(rounded[other, w], 0.0) for other in SPEND_CATEGORIES)
            out[f"share_{c}_{w}d"] = max(rounded[c, w], 0.0) / positive_total if positive_total > 0 else 0.0
        recent, before = max(rounded[c, 90], 0.0), max(round(prior_90d[c], 2), 0.0)
        out[f"trend_{c}"] = (recent - before) / (recent + before + 1)
        out[f"days_since_{c}"] = last_purchase_age.get(c)
    for w in WINDOWS:
        out[f"spend_total_{w}d_usd"] = round(sum(spend[c, w] for c in SPEND_CATEGORIES), 2)
        out[f"tx_total_{w}d"] = sum(purchases[c, w] for c in SPEND_CATEGORIES)
        out[f"active_days_{w}d"] = len(purchase_days[w])
        out[f"refund_{w}d_usd"] = round(refund_usd[w], 2)
        out[f"refund_count_{w}d"] = refund_count[w]
    out["days_since_last_tx"] = min(last_purchase_age.values(), default=None)
    out["months_with_spend_365d"] = len(purchase_months)

    holder = next(row for row in _rows(data_dir, "cardholders") if row["cardholder_id"] == cardholder_id)
    opened = _day(holder["open_date"])
    out["product_id"] = holder["product_id"]
    out["tenure_months"] = (
        (as_of.year - opened.year) * 12 + as_of.month - opened.month - (1 if as_of.day < opened.day else 0)
    )
    out["age_years"] = as_of.year - int(holder["birth_year"]) if holder.get("birth_year") else None
    out["region"] = holder.get("region") or None
    out["segment"] = holder.get("segment") or None
    out.update(_naive_history(data_dir, cardholder_id, as_of))
    return out


def _naive_history(data_dir: Path, cardholder_id: str, as_of: date) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["benefits_used_count"] = sum(
        1
        for row in _rows(data_dir, "benefit_usage")
        if row["cardholder_id"] == cardholder_id and _day(row["first_used_date"]) < as_of
    )
    # When each call happened: its earliest sighting in the calls table or among its presentations.
    call_time: dict[str, datetime] = {}
    call_owner: dict[str, str] = {}
    sightings = [(r["call_id"], r["cardholder_id"], r["started_at"]) for r in _rows(data_dir, "calls")]
    conversations = _rows(data_dir, "conversations")
    sightings += [(r["call_id"], r["cardholder_id"], r["presented_at"]) for r in conversations]
    for call_id, owner, text in sightings:
        moment = _utc(text)
        call_time[call_id] = min(moment, call_time.get(call_id, moment))
        call_owner[call_id] = owner
    mine = [call for call, owner in call_owner.items() if owner == cardholder_id]
    before = [call for call in mine if call_time[call].date() < as_of]
    out["calls_so_far"] = len(before)
    ages = [(as_of - call_time[call].date()).days for call in before]
    out["days_since_last_call"] = min(ages, default=None)
    heard = accepted = declined = recent = 0
    for row in conversations:
        day = _utc(row["presented_at"]).date()
        if row["cardholder_id"] != cardholder_id or day >= as_of:
            continue
        if row["outcome"] != "not_discussed":
            heard += 1
            recent += (as_of - day).days <= 180
        accepted += row["outcome"] == "accepted"
        declined += row["outcome"] == "declined"
    out.update(
        presentations_so_far=heard,
        accepted_so_far=accepted,
        declined_so_far=declined,
        presentations_180d=recent,
    )
    known: list[tuple[datetime, str, int]] = []
    for row in _rows(data_dir, "nps"):
        if call_owner.get(row["call_id"]) != cardholder_id:
            continue
        moment = _utc(row["responded_at"]) if row.get("responded_at") else call_time[row["call_id"]]
        if moment.date() < as_of:
            known.append((moment, row["call_id"], int(row["score"])))
    out["nps_count"] = len(known)
    out["nps_mean"] = sum(score for _, _, score in known) / len(known) if known else None
    out["nps_last"] = max(known)[2] if known else None
    return out


def naive_benefit_history(data_dir: Path, cardholder_id: str, as_of: date) -> dict[str, dict[str, Any]]:
    """Benefit id → its history row, for one cardholder and date."""
    history: dict[str, dict[str, Any]] = {}

    def entry(benefit_id: str) -> dict[str, Any]:
        empty = {
            "used": False,
            "presented_60d": 0,
            "presented_180d": 0,
            "declined_60d": 0,
            "declined_180d": 0,
        }
        return history.setdefault(
            benefit_id, {**empty, "accepted_ever": False, "days_since_last_presented": None}
        )

    for row in _rows(data_dir, "benefit_usage"):
        if row["cardholder_id"] == cardholder_id and _day(row["first_used_date"]) < as_of:
            entry(row["benefit_id"])["used"] = True
    for row in _rows(data_dir, "conversations"):
        day = _utc(row["presented_at"]).date()
        if row["cardholder_id"] != cardholder_id or day >= as_of or row["outcome"] == "not_discussed":
            continue
        item, age = entry(row["benefit_id"]), (as_of - day).days
        for w in (60, 180):
            item[f"presented_{w}d"] += age <= w
            item[f"declined_{w}d"] += age <= w and row["outcome"] == "declined"
        item["accepted_ever"] |= row["outcome"] == "accepted"
        last = item["days_since_last_presented"]
        item["days_since_last_presented"] = age if last is None else min(last, age)
    return history


# ---------------------------------------------------------------------------------------------------------
# A small world built to sit on every boundary: windows, refunds, zero amounts, old and future rows,
# calls only seen through presentations, time zones, NPS with and without a response time.

_MCCS = (5812, 5411, 4511, 7011, 7512, 4111, 4722, 5541, 5815, 5310, 5964, 7832, 4814, 5912, 5200, 9999, 763)
_BOUNDARY_AGES = (1, 2, 29, 30, 31, 89, 90, 91, 179, 180, 181, 359, 360, 361, 364, 365, 366, 400, 700)
_BENEFITS = ("dining_4x", "grocery_4x", "dining_credit", "travel_3x", "lounge_access")
_OUTCOMES = ("accepted", "declined", "not_discussed", "already_aware")


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_boundary_world(data_dir: Path, n_cardholders: int = 24, seed: int = 7) -> Path:
    """Writes the boundary world as CSV tables (with an extra CRM column) and returns its directory."""
    rng = random.Random(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    ids = [f"B{i:03d}" for i in range(n_cardholders)]
    holders, transactions, usage, conversations, calls, nps = [], [], [], [], [], []
    call_number = 0
    for i, cardholder_id in enumerate(ids):
        opened = WORLD_AS_OF - timedelta(days=rng.randint(40, 3000))
        birth_year = "" if i % 5 == 0 else rng.randint(1940, 2005)
        region = "" if i % 7 == 0 else rng.choice(("north", "south", "east"))
        holders.append(
            [cardholder_id, rng.choice(("gold", "voyager")), opened, birth_year, region, "mass", i * 10]
        )
        if i % 6 == 5:
            continue  # some cardholders never used the card
        for _ in range(rng.randint(5, 60)):
            age = rng.choice(_BOUNDARY_AGES) if rng.random() < 0.5 else rng.randint(-20, 800)
            amount = round(rng.uniform(1, 300), 2) * (-1 if rng.random() < 0.12 else 1)
            amount = 0.0 if rng.random() < 0.03 else amount
            transactions.append([cardholder_id, WORLD_AS_OF - timedelta(days=age), amount, rng.choice(_MCCS)])
        for benefit_id in rng.sample(_BENEFITS, rng.randint(0, 3)):
            usage.append([cardholder_id, benefit_id, WORLD_AS_OF - timedelta(days=rng.randint(-30, 500))])
        for _ in range(rng.randint(0, 4)):
            call_number += 1
            call_id = f"K{call_number:04d}"
            started = datetime(2025, 6, 1, 12) - timedelta(
                days=rng.randint(-10, 400), minutes=rng.randint(0, 900)
            )
            if rng.random() < 0.7:  # the calls table does not hold every call
                calls.append([call_id, cardholder_id, started.isoformat() + "Z", "general"])
            for rank, benefit_id in enumerate(rng.sample(_BENEFITS, rng.randint(1, 2)), start=1):
                # Logged minutes or hours into the call (often past midnight, so the call's day is its
                # start's), and written with an offset: 21:00 at -05:00 is the next day in UTC.
                logged = started + timedelta(minutes=rng.choice((2, 90, 600)))
                presented = (logged - timedelta(hours=5)).isoformat() + "-05:00"
                conversations.append(
                    [call_id, cardholder_id, benefit_id, presented, rng.choice(_OUTCOMES), rank]
                )
            if rng.random() < 0.6:
                lag = timedelta(hours=rng.randint(1, 72))
                responded = (started + lag).isoformat() + "Z" if rng.random() < 0.7 else ""
                nps.append([call_id, rng.randint(0, 10), responded])
    _write_csv(
        data_dir / "cardholders.csv",
        ["cardholder_id", "product_id", "open_date", "birth_year", "region", "segment", "limit_usd"],
        holders,
    )
    _write_csv(
        data_dir / "transactions.csv", ["cardholder_id", "transaction_date", "amount", "mcc"], transactions
    )
    _write_csv(data_dir / "benefit_usage.csv", ["cardholder_id", "benefit_id", "first_used_date"], usage)
    conversation_header = ["call_id", "cardholder_id", "benefit_id", "presented_at", "outcome", "rank"]
    _write_csv(data_dir / "conversations.csv", conversation_header, conversations)
    _write_csv(data_dir / "calls.csv", ["call_id", "cardholder_id", "started_at", "call_reason"], calls)
    _write_csv(data_dir / "nps.csv", ["call_id", "score", "responded_at"], nps)
    return data_dir


@pytest.fixture(scope="module")
def boundary_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_boundary_world(tmp_path_factory.mktemp("boundary") / "data")


@pytest.fixture(scope="module")
def mcc_map() -> MccMap:
    return load_mcc_map()


def _features(data_dir: Path, mcc_map: MccMap, snapshots: pa.Table | date) -> list[dict[str, Any]]:
    with open_data(data_dir) as data:
        extra = select_extra_columns(data.con, FeatureConfig())
        sql = (
            snapshot_all_sql(snapshots)
            if isinstance(snapshots, date)
            else register_snapshots(data.con, snapshots)
        )
        table = build_cardholder_features(data.con, sql, mcc_map, extra)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _assert_matches_naive(row: dict[str, Any], expected: dict[str, Any]) -> None:
    mismatched = {
        name: (row[name], value)
        for name, value in expected.items()
        if not (
            row[name] == value or (isinstance(value, float) and row[name] == pytest.approx(value, abs=1e-9))
        )
    }
    assert not mismatched, f"{row['cardholder_id']} as of {row['as_of']}: (engine, naive) = {mismatched}"


# ---------------------------------------------------------------------------------------------------------
# Against the naive reference


def test_valid_dir_matches_the_naive_reference(valid_dir: Path, mcc_map: MccMap) -> None:
    rows = _features(valid_dir, mcc_map, VALID_AS_OF)
    assert [row["cardholder_id"] for row in rows] == ["C1", "C2", "C3"]
    for row in rows:
        _assert_matches_naive(row, naive_features(valid_dir, mcc_map, row["cardholder_id"], VALID_AS_OF))
    c1 = rows[0]
    # Hand-checked: C1's groceries are 120 bought and 20 refunded, 54 days before the as-of date.
    assert c1["spend_groceries_90d_usd"] == pytest.approx(100.0)
    assert c1["tx_groceries_90d"] == 1
    assert c1["refund_90d_usd"] == pytest.approx(20.0)
    assert c1["days_since_groceries"] == 54
    assert c1["share_dining_90d"] == pytest.approx(45.10 / 145.10)
    assert c1["tenure_months"] == 25
    assert (c1["calls_so_far"], c1["presentations_so_far"], c1["nps_last"]) == (1, 2, 9)


def test_without_a_calls_table_calls_come_from_presentations(valid_dir: Path, mcc_map: MccMap) -> None:
    (valid_dir / "calls.csv").unlink()
    rows = _features(valid_dir, mcc_map, VALID_AS_OF)
    for row in rows:
        _assert_matches_naive(row, naive_features(valid_dir, mcc_map, row["cardholder_id"], VALID_AS_OF))
    # K3 (C2's call) was only in the calls table, so its NPS answer has no call to belong to.
    assert [(row["calls_so_far"], row["nps_count"]) for row in rows] == [(1, 1), (0, 0), (1, 0)]


@pytest.mark.parametrize("as_of", [WORLD_AS_OF, date(2025, 2, 28), date(2024, 12, 31)])
def test_boundary_world_matches_the_naive_reference(boundary_dir: Path, mcc_map: MccMap, as_of: date) -> None:
    rows = _features(boundary_dir, mcc_map, as_of)
    assert rows, "the world has cardholders open at this date"
    for row in rows:
        _assert_matches_naive(row, naive_features(boundary_dir, mcc_map, row["cardholder_id"], as_of))
    if as_of != WORLD_AS_OF:
        return
    # The world reaches every branch of the reference, so agreement means something.
    assert any(row["refund_count_30d"] for row in rows)
    assert any(row["days_since_last_tx"] is None for row in rows)
    assert any(row["trend_dining"] < 0 for row in rows) and any(row["trend_dining"] > 0 for row in rows)
    assert any(row["nps_count"] > 1 for row in rows)


def test_generated_world_matches_the_naive_reference(tmp_path: Path, mcc_map: MccMap) -> None:
    generate = pytest.importorskip("training.synth")
    data_dir = tmp_path / "world"
    generate.generate_world(40, seed=3, out_dir=data_dir, fmt="csv")
    with open_data(data_dir) as data:
        latest = data.latest_date()
    assert latest is not None
    as_of = latest - timedelta(days=45)
    rows = _features(data_dir, mcc_map, as_of)
    for row in rows[::3]:
        _assert_matches_naive(row, naive_features(data_dir, mcc_map, row["cardholder_id"], as_of))


def test_benefit_history_matches_the_naive_reference(boundary_dir: Path, valid_dir: Path) -> None:
    for data_dir, as_of in (
        (boundary_dir, WORLD_AS_OF),
        (boundary_dir, date(2025, 1, 15)),
        (valid_dir, VALID_AS_OF),
    ):
        with open_data(data_dir) as data:
            table = build_benefit_history(data.con, snapshot_all_sql(as_of))
        assert tuple(table.column_names) == BENEFIT_HISTORY_COLUMNS
        got: dict[str, dict[str, dict[str, Any]]] = {}
        for row in table.to_pylist():
            assert row.pop("as_of") == as_of
            got.setdefault(row.pop("cardholder_id"), {})[row.pop("benefit_id")] = row
        holders = {row["cardholder_id"]: _day(row["open_date"]) for row in _rows(data_dir, "cardholders")}
        expected = {
            holder: history
            for holder, opened in holders.items()
            if opened < as_of and (history := naive_benefit_history(data_dir, holder, as_of))
        }
        assert got == expected


def test_valid_dir_benefit_history_by_hand(valid_dir: Path) -> None:
    with open_data(valid_dir) as data:
        rows = build_benefit_history(data.con, snapshot_all_sql(VALID_AS_OF)).to_pylist()
    by_key = {(row["cardholder_id"], row["benefit_id"]): row for row in rows}
    # C3's only presentation was not discussed: not heard, so no history at all.
    assert set(by_key) == {
        ("C1", "dining_4x"),
        ("C1", "grocery_4x"),
        ("C1", "dining_credit"),
        ("C2", "travel_3x"),
    }
    assert by_key["C1", "dining_credit"]["declined_60d"] == 1
    assert by_key["C1", "grocery_4x"]["accepted_ever"] is True
    assert by_key["C1", "dining_4x"]["used"] is True
    assert by_key["C1", "dining_4x"]["days_since_last_presented"] is None


# ---------------------------------------------------------------------------------------------------------
# Point in time


def _append_rows(data_dir: Path, table: str, lines: list[str]) -> None:
    with (data_dir / f"{table}.csv").open("a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


def _later_rows(day: date) -> Iterator[tuple[str, list[str]]]:
    """Rows for C1 and C2 dated on the as-of date and after it, one per table."""
    yield "transactions", [f"C1,{day},999.00,5812", f"C2,{day + timedelta(days=3)},-50.00,4511"]
    yield "benefit_usage", [f"C1,grocery_4x,{day}"]
    yield "conversations", [f"K9,C2,travel_3x,{day}T00:00:00Z,accepted,1,general,0.5"]
    yield "calls", [f"K9,C2,{day}T00:00:00Z,general,A1"]
    yield "nps", [f"K9,2,{day}T00:00:01Z"]


def test_rows_on_or_after_the_as_of_date_change_no_feature(valid_dir: Path, mcc_map: MccMap) -> None:
    before = _features(valid_dir, mcc_map, VALID_AS_OF)
    with open_data(valid_dir) as data:
        history_before = build_benefit_history(data.con, snapshot_all_sql(VALID_AS_OF))
    for table, lines in _later_rows(VALID_AS_OF):
        _append_rows(valid_dir, table, lines)
    assert _features(valid_dir, mcc_map, VALID_AS_OF) == before
    with open_data(valid_dir) as data:
        assert build_benefit_history(data.con, snapshot_all_sql(VALID_AS_OF)).equals(history_before)
    # The same rows a day later are history, and show: the comparison above can fail.
    after = _features(valid_dir, mcc_map, VALID_AS_OF + timedelta(days=1))
    c1, c2 = after[0], after[1]
    assert (c1["tx_dining_30d"], c1["benefits_used_count"]) == (1, 2)
    assert (c2["calls_so_far"], c2["accepted_so_far"], c2["nps_count"]) == (2, 1, 2)


def test_a_timestamp_counts_on_its_utc_day(valid_dir: Path, mcc_map: MccMap) -> None:
    # 22:30 at -05:00 on the 2nd is 03:30 UTC on the 3rd: as of the 3rd it has not happened yet.
    _append_rows(
        valid_dir, "conversations", ["K8,C2,travel_3x,2025-03-02T22:30:00-05:00,declined,1,general,0.5"]
    )
    third, fourth = (_features(valid_dir, mcc_map, date(2025, 3, day))[1] for day in (3, 4))
    assert (third["declined_so_far"], fourth["declined_so_far"]) == (0, 1)


def test_each_presentation_snapshot_gets_its_own_dates_features(boundary_dir: Path, mcc_map: MccMap) -> None:
    opened = {row["cardholder_id"]: _day(row["open_date"]) for row in _rows(boundary_dir, "cardholders")}
    presentations = [
        (row["cardholder_id"], _utc(row["presented_at"]))
        for row in _rows(boundary_dir, "conversations")
        if opened[row["cardholder_id"]] < _utc(row["presented_at"]).date() < WORLD_AS_OF
    ]
    snapshots = pa.table(
        {
            "cardholder_id": [holder for holder, _ in presentations],
            # Zoned timestamps: each presentation is as of its UTC calendar day.
            "as_of": pa.array(
                [moment.replace(tzinfo=UTC) for _, moment in presentations], pa.timestamp("us", "UTC")
            ),
        }
    )
    rows = _features(boundary_dir, mcc_map, snapshots)
    wanted = sorted({(holder, moment.date()) for holder, moment in presentations})
    assert [(row["cardholder_id"], row["as_of"]) for row in rows] == wanted
    assert len({row["as_of"] for row in rows}) > 10
    for row in rows:
        _assert_matches_naive(row, naive_features(boundary_dir, mcc_map, row["cardholder_id"], row["as_of"]))
    # The same rows as a run for all cardholders at each of those dates: one definition for both.
    for row in rows[:: len(rows) // 4]:
        at_that_date = _features(boundary_dir, mcc_map, row["as_of"])
        assert row == next(r for r in at_that_date if r["cardholder_id"] == row["cardholder_id"])


def test_an_nps_answer_counts_from_when_it_was_given(valid_dir: Path, mcc_map: MccMap) -> None:
    # K1 was on 2025-01-20 and answered (9) on the 21st; K3's answer has no time, so its call's day counts.
    (on_21st, on_22nd) = (_features(valid_dir, mcc_map, date(2025, 1, day))[0] for day in (21, 22))
    assert (on_21st["calls_so_far"], on_21st["nps_count"], on_22nd["nps_count"], on_22nd["nps_last"]) == (
        1,
        0,
        1,
        9,
    )
    c2 = _features(valid_dir, mcc_map, date(2025, 3, 4))[1]
    assert (c2["nps_count"], c2["nps_last"], c2["days_since_last_call"]) == (1, 3, 1)


@pytest.mark.parametrize(
    ("snapshots", "message"),
    [
        (pa.table({"cardholder_id": ["C1"]}), "as_of is missing"),
        (
            pa.table({"cardholder_id": ["C1"], "as_of": ["2025-01-01"]}),
            "must hold dates or timestamps, got string",
        ),
        (pa.table({"cardholder_id": [1], "as_of": [date(2025, 1, 1)]}), "must hold strings, got int64"),
    ],
)
def test_bad_snapshots_are_refused(valid_dir: Path, snapshots: pa.Table, message: str) -> None:
    with open_data(valid_dir) as data, pytest.raises(SchemaError, match=message):
        register_snapshots(data.con, snapshots)


# ---------------------------------------------------------------------------------------------------------
# Names and layout


def test_columns_follow_feature_names(valid_dir: Path, mcc_map: MccMap) -> None:
    extra = ExtraColumns(taken={"credit_limit_usd": "numeric"})
    with open_data(valid_dir) as data:
        table = build_cardholder_features(data.con, snapshot_all_sql(VALID_AS_OF), mcc_map, extra)
    names = feature_names(extra)
    assert tuple(table.column_names) == ("cardholder_id", "as_of", *names)
    assert len(names) == len(set(names)) == 16 * 3 * 3 + 16 * 2 + 17 + 5 + 1 + 10
    assert names[:2] == ("spend_dining_30d_usd", "spend_dining_90d_usd")
    assert categorical_features(extra) == ("product_id", "region", "segment")
    categorical = set(categorical_features(extra))
    for field in table.schema:
        if field.name in categorical or field.name == "cardholder_id":
            assert field.type == pa.string(), field.name
        elif field.name != "as_of":
            assert pa.types.is_integer(field.type) or pa.types.is_floating(field.type), field.name


def test_a_cardholder_without_history_gets_zeros_and_nulls(valid_dir: Path, mcc_map: MccMap) -> None:
    row = _features(valid_dir, mcc_map, date(2025, 2, 12))[2]  # C3 opened on 2025-02-10, 2 days before
    assert row["cardholder_id"] == "C3"
    zeros = (
        "spend_total_365d_usd",
        "tx_other_30d",
        "share_other_365d",
        "trend_other",
        "calls_so_far",
        "nps_count",
    )
    assert [row[name] for name in zeros] == [0] * len(zeros)
    nulls = (
        "days_since_other",
        "days_since_last_tx",
        "nps_mean",
        "nps_last",
        "days_since_last_call",
        "region",
    )
    assert [row[name] for name in nulls] == [None] * len(nulls)
    assert (row["tenure_months"], row["age_years"]) == (0, 26)


def test_snapshot_all_skips_cards_opened_on_or_after_the_date(valid_dir: Path, mcc_map: MccMap) -> None:
    assert [row["cardholder_id"] for row in _features(valid_dir, mcc_map, date(2025, 2, 10))] == ["C1", "C2"]


# ---------------------------------------------------------------------------------------------------------
# Extra cardholder columns


def _crm_dir(tmp_path: Path, n: int = 120) -> Path:
    """A data directory whose cardholders carry a bank's own columns of every kind."""
    tables = dict(VALID_TABLES)
    header = "cardholder_id,product_id,open_date,limit_usd,tier,crm_key,customer_no,note,empty,as_of"
    lines = [header]
    for i in range(n):
        note = f"called about statement {i % 70}"
        lines.append(
            f"X{i},gold,2023-01-01,{1000 + 250 * i},{'abc'[i % 3]},k-{i:05d},{10_000 + i},{note},,{i % 2}"
        )
    tables["cardholders"] = "\n".join(lines) + "\n"
    return write_tables(tmp_path / "crm", tables)


def test_extra_columns_follow_the_rules(tmp_path: Path) -> None:
    with open_data(_crm_dir(tmp_path)) as data:
        extra = select_extra_columns(data.con, FeatureConfig())
    assert extra.taken == {"limit_usd": "numeric", "tier": "categorical"}
    assert extra.left_out == {
        "crm_key": "identifier-like: a different value in every row",
        "customer_no": "identifier-like: a different whole number in every row, named like a key",
        "note": (
            "high-cardinality text: 70 distinct values in 120 rows "
            "(a category needs at most 50, and fewer than half the rows)"
        ),
        "empty": "no values",
        "as_of": "its name is a built-in feature's",
    }
    assert (extra.numeric, extra.categorical) == (("limit_usd",), ("tier",))


def test_too_few_rows_per_value_is_not_a_category(tmp_path: Path) -> None:
    with open_data(_crm_dir(tmp_path, n=5)) as data:
        extra = select_extra_columns(data.con, FeatureConfig())
    # 3 tiers in 5 rows: not fewer distinct values than half the rows.
    assert "tier" in extra.left_out and extra.taken == {"limit_usd": "numeric"}


def test_config_includes_and_excludes(tmp_path: Path, mcc_map: MccMap) -> None:
    config_file = tmp_path / "features.yaml"
    config_file.write_text("include: [note, customer_no]\nexclude: [tier]\n", encoding="utf-8")
    config = load_feature_config(config_file)
    with open_data(_crm_dir(tmp_path)) as data:
        extra = select_extra_columns(data.con, config)
        table = build_cardholder_features(data.con, snapshot_all_sql(date(2024, 1, 1)), mcc_map, extra)
    assert extra.taken == {"limit_usd": "numeric", "customer_no": "numeric", "note": "categorical"}
    assert extra.left_out["tier"] == "excluded by the feature config"
    assert categorical_features(extra) == ("product_id", "region", "segment", "note")
    first = table.slice(0, 1).to_pylist()[0]
    assert (first["cardholder_id"], first["limit_usd"], first["note"]) == (
        "X0",
        1000.0,
        "called about statement 0",
    )
    # The decision travels with the model as JSON and comes back equal.
    assert ExtraColumns.model_validate(json.loads(extra.model_dump_json())) == extra


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("include: [nope]\n", "column 'nope', which is not an extra column of cardholders"),
        ("include: [limit_usd]\nexclude: [limit_usd]\n", "both in `include` and `exclude`: limit_usd"),
        ("include: limit_usd\n", "`include`: Input should be a valid tuple"),
        ("max_category_levels: 1\n", "`max_category_levels`: Input should be greater than or equal to 2"),
        ("colour: blue\n", "`colour`: Extra inputs are not permitted"),
        ("include: [\n", "not valid YAML"),
    ],
)
def test_bad_feature_configs_are_refused(tmp_path: Path, text: str, message: str) -> None:
    config_file = tmp_path / "features.yaml"
    config_file.write_text(text, encoding="utf-8")
    with open_data(_crm_dir(tmp_path)) as data, pytest.raises(DataError, match=message):
        select_extra_columns(data.con, load_feature_config(config_file))


def test_serving_uses_the_decided_columns_and_needs_them(
    valid_dir: Path, tmp_path: Path, mcc_map: MccMap
) -> None:
    decided = ExtraColumns(taken={"limit_usd": "numeric"})
    with open_data(_crm_dir(tmp_path)) as data:
        served = build_cardholder_features(data.con, snapshot_all_sql(date(2024, 1, 1)), mcc_map, decided)
    # Not re-inferred: `tier` would be taken on this data, but the model was not trained with it.
    assert "tier" not in served.column_names and "limit_usd" in served.column_names
    with open_data(valid_dir) as data, pytest.raises(SchemaError, match="no column 'limit_usd'"):
        build_cardholder_features(data.con, snapshot_all_sql(VALID_AS_OF), mcc_map, decided)


# ---------------------------------------------------------------------------------------------------------
# The job behind `nba features`


def test_run_features_writes_every_cardholder_at_the_default_date(valid_dir: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "features.json"
    config_file.write_text('{"exclude": ["credit_limit_usd"]}', encoding="utf-8")
    out = tmp_path / "out" / "features.csv"
    result = run_features(valid_dir, None, out, config_file)
    # The latest date in the data is the call on 2025-03-03.
    assert (result.as_of, result.rows, result.columns) == (VALID_AS_OF, 3, 2 + 208)
    assert result.extra_columns.left_out == {"credit_limit_usd": "excluded by the feature config"}
    with out.open(newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [row["cardholder_id"] for row in written] == ["C1", "C2", "C3"]
    assert float(written[0]["spend_groceries_90d_usd"]) == pytest.approx(100.0)
    parquet = run_features(valid_dir, date(2025, 2, 1), tmp_path / "f.parquet")
    assert (parquet.rows, pq.read_table(parquet.out).column("as_of")[0].as_py()) == (2, date(2025, 2, 1))


def test_run_features_refuses_an_unknown_output_format(valid_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"`out` must end in \.parquet or \.csv, got 'features.xlsx'"):
        run_features(valid_dir, None, tmp_path / "features.xlsx")
