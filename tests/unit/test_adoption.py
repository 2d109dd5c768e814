"""Adoption after the calls (`nba insights --data`): the units and their windows against a count in pandas,
the weighted comparison against a world whose effect is known, and what the report says without data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.insights._adoption import NOT_PRESENTED, _caused_row, _propensity, _Units, wilson_interval
from nba.vocab import ADOPTION_WINDOW_DAYS, OUTCOMES
from training.insights_job import _adoption_section, adoption_lines, run_insights
from training.progress import SILENT
from training.synth import generate_world


def _confounded(n: int, effect: float, seed: int) -> _Units:
    """Units of one benefit where the cardholders who spend in its categories are both presented it more
    often and start it more often on their own: the naive comparison overstates the effect."""
    rng = np.random.default_rng(seed)
    spend = rng.lognormal(5.0, 1.2, n)
    reason = rng.integers(0, 3, n)
    x = (np.log1p(spend) - 5.0) / 1.2
    presented = rng.random(n) < 1 / (1 + np.exp(-(-1.0 + 1.5 * x + 0.5 * (reason == 2))))
    natural = 1 / (1 + np.exp(-(-3.5 + 1.2 * x)))
    adopted = rng.random(n) < natural + effect * presented
    return _Units(
        benefits=("dining_4x",),
        groups=(*OUTCOMES, NOT_PRESENTED),
        benefit=np.zeros(n, dtype=np.int64),
        group=np.where(presented, 0, len(OUTCOMES)),
        reason=reason,
        product=np.zeros(n, dtype=np.int64),
        presented=presented,
        adopted=adopted,
        value_usd=np.where(adopted, 100.0, 0.0),
        numeric=np.column_stack([spend / 4, spend, spend * 3, np.full(n, 4.0)]),
    )


def test_weighting_recovers_the_effect_a_naive_comparison_overstates() -> None:
    effect = 0.15
    units = _confounded(40_000, effect, seed=3)
    treated = units.presented
    naive = units.adopted[treated].mean() - units.adopted[~treated].mean()
    assert naive - effect > 0.04  # the world is confounded enough for the check to mean something
    row = _caused_row("dining_4x", units, _propensity(units), min_units=30)
    assert row.caused_per_presentation == pytest.approx(effect, abs=0.02)
    assert row.low <= effect <= row.high and row.high - row.low < 0.05
    assert row.caused_adoptions == pytest.approx(row.caused_per_presentation * row.presented)
    assert row.caused_value_usd == pytest.approx(100.0 * row.caused_adoptions, rel=1e-9)
    assert not row.too_few and row.comparable_effective < row.comparable


def test_wilson_interval_holds_the_share_and_is_empty_without_units() -> None:
    low, high = wilson_interval(np.array([0.0, 5.0, 30.0]), np.array([10.0, 10.0, 0.0]))
    assert low[0] == 0.0 < high[0] < 0.35
    assert low[1] < 0.5 < high[1]
    assert np.isnan(low[2]) and np.isnan(high[2])


def test_a_generated_world_s_adoption_counts_match_a_count_in_pandas(tmp_path: Path) -> None:
    data = tmp_path / "world"
    generate_world(600, seed=11, out_dir=data, fmt="csv", oracle_path=tmp_path / "oracle.parquet")
    result = run_insights(data, None, tmp_path / "out", progress=SILENT)
    adoption = result.adoption
    assert adoption is not None and adoption.caused_total is not None

    # The reference: presented benefits, by outcome, counted row by row in pandas.
    conversations = pd.read_csv(data / "conversations.csv", parse_dates=["presented_at"])
    calls = pd.read_csv(data / "calls.csv", parse_dates=["started_at"])
    usage = pd.read_csv(data / "benefit_usage.csv", parse_dates=["first_used_date"])
    transactions = pd.read_csv(data / "transactions.csv", parse_dates=["transaction_date"])
    end = max(
        transactions["transaction_date"].max(),
        usage["first_used_date"].max(),
        calls["started_at"].dt.tz_localize(None).dt.normalize().max(),
    )
    assert adoption.data_end == end.date().isoformat()
    rows = conversations.merge(calls[["call_id", "started_at"]], on="call_id").merge(
        usage, on=["cardholder_id", "benefit_id"], how="left"
    )
    rows["day"] = rows["started_at"].dt.tz_localize(None).dt.normalize()
    window = timedelta(days=ADOPTION_WINDOW_DAYS)
    known = rows["day"] + window <= end
    fresh = ~(rows["first_used_date"] < rows["day"])
    rows["adopted"] = (rows["first_used_date"] >= rows["day"]) & (
        rows["first_used_date"] <= rows["day"] + window
    )
    counted = rows[known & fresh & (rows["outcome"] != "not_discussed")]
    expected = counted.groupby("outcome")["adopted"].agg(["size", "sum"])
    got = {r.group: (r.units, r.adopted) for r in adoption.by_outcome if r.group != NOT_PRESENTED}
    assert got == {o: (int(n), int(k)) for o, (n, k) in expected.iterrows()}
    for row in (*adoption.by_outcome, *adoption.by_benefit):
        assert row.low <= row.rate <= row.high and row.too_few == (row.units < 30)
    assert sum(r.units for r in adoption.by_benefit) == len(counted)
    not_discussed = next(i for i in adoption.left_out if "not discussed" in i.reason)
    assert not_discussed.rows == int((known & fresh & (rows["outcome"] == "not_discussed")).sum())

    total = adoption.caused_total
    assert total.presented == sum(r.presented for r in adoption.caused) <= len(counted)
    assert total.low <= total.caused_per_presentation <= total.high
    assert total.comparable_rate < total.presented_rate
    out = tmp_path / "out"
    assert {p.name for p in result.files} >= {
        "adoption_by_outcome.csv",
        "adoption_by_benefit.csv",
        "caused_adoption.csv",
    }
    assert len(pd.read_csv(out / "caused_adoption.csv")) == len(adoption.caused) + 1
    page = result.page.read_text()
    assert "Adoption within 30 days after the call" in page and "caused per presentation" in page
    assert "adoption within 30 days:" in str(result)


def test_without_the_data_directory_the_report_says_adoption_needs_it() -> None:
    assert adoption_lines(None) == [
        "adoption: needs --data (benefit usage and spend are in the data directory, not the store)"
    ]
    assert "Needs the data directory" in "".join(_adoption_section(None))
