"""Backtest months: labelled presentation dates and an as-of → the months that can be backtested."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from nba.errors import DataError
from training.backtest_job import backtest_months
from training.backtest_months import BacktestMonth, BacktestResult


def _days(*days: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(days)))


def test_the_latest_months_with_earlier_rows_to_train_on_are_chosen_oldest_first() -> None:
    dates = _days("2026-01-10", "2026-02-03", "2026-03-15", "2026-04-01", "2026-05-20")
    months = backtest_months(dates, date(2026, 7, 1), 3)
    assert months == [
        (date(2026, 3, 1), date(2026, 4, 1)),
        (date(2026, 4, 1), date(2026, 5, 1)),
        # The newest month ends at the label cut-off: as-of − 30 days.
        (date(2026, 5, 1), date(2026, 6, 1)),
    ]
    cut = backtest_months(dates, date(2026, 6, 20), 1)
    assert cut == [(date(2026, 5, 1), date(2026, 5, 21))]


def test_a_month_needs_rows_more_than_30_days_before_it() -> None:
    # Rows from 10 January: labelled by 1 March (more than 30 days), not by 1 February (22 days).
    dates = _days("2026-01-10", "2026-02-10", "2026-03-05")
    assert backtest_months(dates, date(2026, 6, 1), 1) == [(date(2026, 3, 1), date(2026, 4, 1))]
    with pytest.raises(
        DataError, match=r"`--months` 2 is more than the data's history allows: 1 month\(s\) "
    ):
        backtest_months(dates, date(2026, 6, 1), 2)


@pytest.mark.parametrize(
    ("dates", "months", "message"),
    [
        (
            _days("2026-03-02", "2026-03-30"),
            1,
            r"no backtest possible: the labelled presentations span 1 month",
        ),
        (_days("2026-03-02"), 0, r"`--months` must be an integer in \[1, 36\], got 0"),
        (_days("2026-03-02"), 37, r"`--months` must be an integer in \[1, 36\], got 37"),
        (_days(), 1, r"no presentations with a known label before 2026-06-01"),
    ],
)
def test_too_short_a_history_is_one_clear_error(dates: pd.Series, months: int, message: str) -> None:
    with pytest.raises(DataError, match=message):
        backtest_months(dates, date(2026, 6, 1), months)


def _month(label: str, auc: float, base_auc: float, ips: float, base_ips: float) -> BacktestMonth:
    start = date.fromisoformat(f"{label}-01")
    return BacktestMonth(
        start, start, "evaluated", auc=auc, best_baseline_auc=base_auc, ips=ips, best_baseline_ips=base_ips
    )


@pytest.mark.parametrize(
    ("leads", "verdict"),
    [
        ([(0.30, 0.20), (0.31, 0.20), (0.29, 0.20), (0.30, 0.20)], "STABLE"),
        ([(0.40, 0.20), (0.38, 0.20), (0.25, 0.20), (0.24, 0.20)], "SHRINKING"),
        ([(0.40, 0.20), (0.38, 0.20), (0.25, 0.20), (0.19, 0.20)], "GONE"),
        ([(0.18, 0.20), (0.30, 0.20), (0.31, 0.20), (0.30, 0.20)], "UNSTABLE"),
    ],
)
def test_the_verdict_says_whether_the_lead_is_stable_shrinking_or_gone(
    leads: list[tuple[float, float]], verdict: str
) -> None:
    months = [_month(f"2026-0{i + 1}", 0.7, 0.6, ips, base) for i, (ips, base) in enumerate(leads)]
    result = BacktestResult(data_dir=__import__("pathlib").Path("d"), as_of=date(2026, 7, 1), months=months)
    assert result.verdict().startswith(verdict)


def test_nba_trains_own_backtest_says_its_months_and_verdict_or_why_none() -> None:
    """`nba train`'s report section, summary line and step detail for its own backtest of the latest months."""
    from pathlib import Path

    from training.backtest_months import (
        render_training_backtest,
        training_backtest_step,
        training_backtest_summary,
    )

    none = BacktestResult(Path("d"), date(2026, 7, 1), [], note="no backtest possible: one month")
    assert training_backtest_summary(none) == "no backtest month: no backtest possible: one month"
    assert "No backtest month: no backtest possible: one month." in render_training_backtest(none)
    assert training_backtest_step(none) == "no month: see the report"

    skipped = BacktestMonth(
        date(2026, 5, 1),
        date(2026, 6, 1),
        "skipped",
        note="no positive labels: none of 40 heard presentations was adopted",
    )
    months = [skipped, _month("2026-06", 0.7, 0.6, 0.3, 0.2)]
    some = BacktestResult(Path("d"), date(2026, 7, 1), months, note="2 of the 3 month(s) asked for: …")
    assert training_backtest_summary(some).startswith("2026-05, 2026-06: STABLE: ")
    assert training_backtest_summary(some).endswith("(2 of the 3 month(s) asked for: …)")
    assert training_backtest_step(some) == "2026-05, 2026-06: STABLE"
    section = render_training_backtest(some)
    assert (
        "| 2026-05 | 0 | 0 | skipped: no positive labels: none of 40 heard presentations was adopted |"
        in section
    )
    assert "- 2026-05: no positive labels" in section and "- 2 of the 3 month(s) asked for" in section
