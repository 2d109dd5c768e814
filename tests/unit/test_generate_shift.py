"""A changing world: `generate_world(..., regime_shift=DATE)` is deterministic, like the stationary world
before the shift, and after it moves each declared driver the declared way, measured on the rows written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from nba.contract._catalog import load_catalog
from nba.contract._mcc import load_mcc_map
from nba.contract._validation import validate_data
from nba.errors import DataError
from nba.vocab import TRAVEL_CATEGORIES
from training.evaluate import read_oracle
from training.synth import (
    DEFAULT_AS_OF,
    LAUNCHED_BENEFIT,
    ORACLE_AS_OF_COLUMN,
    TABLE_NAMES,
    generate_world,
)

pytestmark = pytest.mark.slow  # four generated worlds, two of 3,000 cardholders

SHIFT = date(2026, 4, 1)
CARDHOLDERS = 3_000
NEW_BENEFIT = str(LAUNCHED_BENEFIT["id"])


@dataclass(frozen=True)
class Generated:
    tables: dict[str, pd.DataFrame]
    oracle: pd.DataFrame
    out_dir: Path


def _read(out_dir: Path) -> Generated:
    tables = {name: pq.read_table(out_dir / f"{name}.parquet").to_pandas() for name in TABLE_NAMES}
    return Generated(
        tables, pq.read_table(out_dir.parent / f"{out_dir.name}.oracle.parquet").to_pandas(), out_dir
    )


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Generated]:
    root = tmp_path_factory.mktemp("shift")
    generate_world(CARDHOLDERS, seed=5, out_dir=root / "plain" / "data")
    generate_world(CARDHOLDERS, seed=5, out_dir=root / "shift" / "data", regime_shift=SHIFT)
    generate_world(300, seed=5, out_dir=root / "small_a" / "data", regime_shift=SHIFT)
    generate_world(300, seed=5, out_dir=root / "small_b" / "data", regime_shift=SHIFT)
    return {name: _read(root / name / "data") for name in ("plain", "shift", "small_a", "small_b")}


def _month(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.to_period("M")


def _travel_spend_by_month(world: Generated) -> pd.Series:
    mcc_map = load_mcc_map(None)
    tx = world.tables["transactions"]
    codes = tx["mcc"].unique()
    travel_codes = {int(c) for c in codes if mcc_map.category_of(int(c)) in TRAVEL_CATEGORIES}
    travel = tx[tx["mcc"].isin(travel_codes)]
    spend: pd.Series = travel.groupby(_month(travel["transaction_date"]))["amount"].sum()
    return spend


def _reason_shares(calls: pd.DataFrame) -> pd.Series:
    shares: pd.Series = calls["call_reason"].value_counts(normalize=True)
    return shares


def _total_variation(a: pd.Series, b: pd.Series) -> float:
    both = pd.concat([a, b], axis=1).fillna(0.0)
    return float((both.iloc[:, 0] - both.iloc[:, 1]).abs().sum() / 2)


def test_same_seed_same_rows_and_the_shift_changes_the_world(worlds: dict[str, Generated]) -> None:
    a, b = worlds["small_a"], worlds["small_b"]
    for name in TABLE_NAMES:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], obj=name)
    pd.testing.assert_frame_equal(a.oracle, b.oracle)
    assert not worlds["plain"].tables["calls"].equals(worlds["shift"].tables["calls"])


def test_the_shifted_world_is_valid_and_its_catalog_has_the_launched_benefit(
    worlds: dict[str, Generated],
) -> None:
    world = worlds["shift"]
    report = validate_data(world.out_dir, as_of=DEFAULT_AS_OF)
    assert report.ok, [str(p) for p in report.problems[:5]]
    catalog = load_catalog(world.out_dir / "catalog.yaml")
    assert NEW_BENEFIT in {b.id for b in catalog.benefits}
    assert NEW_BENEFIT not in {b.id for b in load_catalog(worlds["plain"].out_dir / "catalog.yaml").benefits}


def test_before_the_shift_the_world_is_the_stationary_one(worlds: dict[str, Generated]) -> None:
    plain, shift = worlds["plain"], worlds["shift"]
    # Cardholders are drawn before anything the shift touches: the same rows.
    pd.testing.assert_frame_equal(plain.tables["cardholders"], shift.tables["cardholders"])
    travel_plain, travel_shift = _travel_spend_by_month(plain), _travel_spend_by_month(shift)
    before = travel_plain.index < pd.Period(SHIFT, "M")
    ratio = travel_shift[before] / travel_plain[before]
    assert ratio.between(0.93, 1.07).all(), ratio
    calls = {k: w.tables["calls"] for k, w in (("plain", plain), ("shift", shift))}
    pre = {k: c[c["started_at"] < pd.Timestamp(SHIFT)] for k, c in calls.items()}
    assert abs(len(pre["shift"]) / len(pre["plain"]) - 1) < 0.05
    assert _total_variation(_reason_shares(pre["plain"]), _reason_shares(pre["shift"])) < 0.04
    conv = {k: w.tables["conversations"] for k, w in (("plain", plain), ("shift", shift))}
    accepted = {
        k: (c.loc[c["presented_at"] < pd.Timestamp(SHIFT), "outcome"] == "accepted").mean()
        for k, c in conv.items()
    }
    assert abs(accepted["plain"] - accepted["shift"]) < 0.03


def test_after_the_shift_travel_collapses_and_recovers(worlds: dict[str, Generated]) -> None:
    ratio = _travel_spend_by_month(worlds["shift"]) / _travel_spend_by_month(worlds["plain"])
    months = [pd.Period(SHIFT, "M") + k for k in range(6)]
    assert ratio[months[0]] < 0.45
    assert ratio[months[-1]] > ratio[months[0]] + 0.3  # recovering
    assert (ratio[months] < 0.95).all()


def test_after_the_shift_callers_and_their_reasons_change(worlds: dict[str, Generated]) -> None:
    shares = {}
    bands = {}
    for key in ("plain", "shift"):
        world = worlds[key]
        calls = world.tables["calls"]
        post = calls[calls["started_at"] >= pd.Timestamp(SHIFT)]
        shares[key] = _reason_shares(post)
        band = world.tables["cardholders"].set_index("cardholder_id")["income_band"]
        bands[key] = band.loc[post["cardholder_id"]].isin(["low", "lower_middle"]).mean()
    assert shares["shift"]["hardship"] > shares["plain"]["hardship"] + 0.04
    assert shares["shift"]["payment"] > shares["plain"]["payment"]
    assert shares["shift"]["travel_notice"] < shares["plain"]["travel_notice"] * 0.6
    assert bands["shift"] > bands["plain"] + 0.05  # more callers from lower incomes


def test_the_new_benefit_is_used_and_presented_only_after_its_launch(worlds: dict[str, Generated]) -> None:
    tables = worlds["shift"].tables
    usage = tables["benefit_usage"]
    used = pd.to_datetime(usage.loc[usage["benefit_id"] == NEW_BENEFIT, "first_used_date"])
    assert len(used) > 100 and (used >= pd.Timestamp(SHIFT)).all()
    conv = tables["conversations"]
    shown = conv.loc[conv["benefit_id"] == NEW_BENEFIT, "presented_at"]
    assert len(shown) > 20 and (shown >= pd.Timestamp(SHIFT)).all()


def test_the_income_effect_on_take_up_flips(worlds: dict[str, Generated]) -> None:
    """Same cardholders in both worlds: the truth's change for non-travel earn rates grows with income."""
    catalog = load_catalog(worlds["plain"].out_dir / "catalog.yaml")
    earn = {
        b.id
        for b in catalog.benefits
        if b.kind == "earn_rate" and not set(b.spend_categories) & TRAVEL_CATEGORIES
    }
    plain = worlds["plain"].oracle
    shift = worlds["shift"].oracle
    shift = shift[shift[ORACLE_AS_OF_COLUMN] == DEFAULT_AS_OF].drop(columns=ORACLE_AS_OF_COLUMN)
    both = plain.merge(shift, on=["cardholder_id", "benefit_id"], suffixes=("_plain", "_shift"))
    both = both[both["benefit_id"].isin(earn)]
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    both["change"] = logit(both["p_true_shift"]) - logit(both["p_true_plain"])
    band = worlds["plain"].tables["cardholders"].set_index("cardholder_id")["income_band"]
    change = both.groupby(band.loc[both["cardholder_id"]].to_numpy())["change"].mean()
    # Before: earn rates appealed to the less well-off; after, to the well-off (0.25 × 2 per income sd).
    assert change["high"] - change["low"] > 0.8


def test_the_oracle_holds_the_truth_as_of_each_month_from_the_shift(worlds: dict[str, Generated]) -> None:
    oracle = worlds["shift"].oracle
    assert list(oracle.columns) == ["cardholder_id", "benefit_id", "p_true", "value_usd", ORACLE_AS_OF_COLUMN]
    dates = sorted(set(oracle[ORACLE_AS_OF_COLUMN]))
    assert dates == [date(2026, m, 1) for m in range(4, 11)]
    assert not oracle.duplicated(["cardholder_id", "benefit_id", ORACLE_AS_OF_COLUMN]).any()
    # A benefit used by a date is not in that date's oracle: the pending pairs shrink for each cardholder.
    usage = worlds["shift"].tables["benefit_usage"]
    first = usage.set_index(["cardholder_id", "benefit_id"])["first_used_date"]
    keyed = oracle.set_index(["cardholder_id", "benefit_id"])
    joined = keyed.join(first, how="inner")
    assert (pd.to_datetime(joined["first_used_date"]) >= pd.to_datetime(joined[ORACLE_AS_OF_COLUMN])).all()
    assert "as_of" not in worlds["plain"].oracle.columns


@pytest.mark.parametrize("shift", [date(2025, 6, 1), DEFAULT_AS_OF, date(2027, 1, 1)])
def test_a_shift_outside_the_history_is_refused(shift: date, tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"`regime_shift` must be a date inside the history, after 2025-07-01"
    ):
        generate_world(10, seed=1, out_dir=tmp_path / "data", regime_shift=shift)


def test_read_oracle_picks_one_date_of_a_shifted_worlds_oracle(worlds: dict[str, Generated]) -> None:
    path = worlds["shift"].out_dir.parent / "data.oracle.parquet"
    oracle = worlds["shift"].oracle
    latest = read_oracle(path)
    expected = oracle[oracle[ORACLE_AS_OF_COLUMN] == DEFAULT_AS_OF].drop(columns=ORACLE_AS_OF_COLUMN)
    pd.testing.assert_frame_equal(latest, expected.reset_index(drop=True))
    may = read_oracle(path, as_of=date(2026, 5, 1))
    assert len(may) == (oracle[ORACLE_AS_OF_COLUMN] == date(2026, 5, 1)).sum()
    assert not may.duplicated(["cardholder_id", "benefit_id"]).any()
    with pytest.raises(DataError, match=r"holds no truth as of 2026-05-02; it has 2026-04-01, 2026-05-01"):
        read_oracle(path, as_of=date(2026, 5, 2))
    # A stationary world's oracle has one date and no column for it.
    plain = worlds["plain"].out_dir.parent / "data.oracle.parquet"
    pd.testing.assert_frame_equal(read_oracle(plain), worlds["plain"].oracle)
