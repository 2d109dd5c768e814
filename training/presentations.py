"""Presentations: logged conversations + benefit usage → labelled rows (adopted within 30 days) with dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from nba.contract import DataSource, query_one
from nba.vocab import ADOPTION_WINDOW_DAYS

LABEL_WINDOW_DAYS: Final = ADOPTION_WINDOW_DAYS
NATURAL_WINDOW_DAYS: Final = 90


@dataclass(frozen=True)
class LabelledRows:
    """Presentations (or natural-adoption pairs) with their labels, one row each, as an Arrow table.

    Columns: call_id, cardholder_id, benefit_id, as_of (the presentation's calendar date: its
    features use data strictly before it), rank, call_reason, logging_prob, outcome, adopted (0/1).
    """

    table: pa.Table
    label_source: str
    left_out: dict[str, int]


def _date_sql(day: date) -> str:
    return f"DATE '{day.isoformat()}'"


def load_presentations(data: DataSource, as_of: date, window_days: int = LABEL_WINDOW_DAYS) -> LabelledRows:
    """Every logged presentation whose label is known by `as_of`, labelled from benefit_usage.

    A presentation counts as adopted when the benefit's first use is on the day it was presented
    or within the `window_days` days after. Left out, and counted: presentations less than
    `window_days` + 1 days before as_of (label not known yet), presentations dated on or after
    as_of, and benefits the cardholder had already used before the presentation (nothing to adopt).
    Rows with outcome `not_discussed` or `unmarked` are kept (off-policy evaluation needs every logged
    row); the adoption model's training set drops both (not heard, or not known to be: nba.vocab), the
    uplift model takes `not_discussed` as a control and drops `unmarked`.
    """
    cutoff = as_of - timedelta(days=window_days)
    base = """
        SELECT c.call_id, c.cardholder_id, c.benefit_id, CAST(c.presented_at AS DATE) AS as_of,
               c.rank, COALESCE(c.call_reason, k.call_reason) AS call_reason, c.logging_prob, c.outcome,
               u.first_used_date
        FROM conversations c
        LEFT JOIN benefit_usage u ON u.cardholder_id = c.cardholder_id AND u.benefit_id = c.benefit_id
        LEFT JOIN calls k ON k.call_id = c.call_id
    """
    counts = query_one(
        data.con,
        f"""SELECT
              count(*) FILTER (WHERE as_of >= {_date_sql(as_of)}),
              count(*) FILTER (WHERE as_of >= {_date_sql(cutoff)} AND as_of < {_date_sql(as_of)}),
              count(*) FILTER (WHERE as_of < {_date_sql(cutoff)} AND first_used_date < as_of)
            FROM ({base}) p""",
    )
    table = data.con.sql(
        f"""SELECT call_id, cardholder_id, benefit_id, as_of, rank, call_reason, logging_prob, outcome,
                   CAST(CASE WHEN first_used_date >= as_of
                             AND first_used_date <= as_of + INTERVAL '{window_days}' DAY
                        THEN 1 ELSE 0 END AS TINYINT) AS adopted
            FROM ({base}) p
            WHERE as_of < {_date_sql(cutoff)} AND (first_used_date IS NULL OR first_used_date >= as_of)
            ORDER BY as_of, call_id, rank NULLS LAST, benefit_id"""
    ).to_arrow_table()
    left_out = {
        "presented_on_or_after_as_of": int(counts[0]),
        "label_not_known_yet": int(counts[1]),
        "benefit_already_used": int(counts[2]),
    }
    return LabelledRows(table, "conversations: adopted within 30 days of the presentation", left_out)


def load_natural_adoption(
    data: DataSource, snapshot: date, benefit_pairs_sql: str, window_days: int = NATURAL_WINDOW_DAYS
) -> LabelledRows:
    """Labels for a programme with no conversations yet: was an unused benefit first used in the
    `window_days` days after `snapshot`?

    `benefit_pairs_sql` yields (cardholder_id, benefit_id) for every benefit on each cardholder's card.
    """
    end = snapshot + timedelta(days=window_days)
    table = data.con.sql(
        f"""SELECT CAST(NULL AS VARCHAR) AS call_id, p.cardholder_id, p.benefit_id,
                   {_date_sql(snapshot)} AS as_of, CAST(NULL AS BIGINT) AS rank,
                   CAST(NULL AS VARCHAR) AS call_reason, CAST(NULL AS DOUBLE) AS logging_prob,
                   CAST(NULL AS VARCHAR) AS outcome,
                   CAST(CASE WHEN u.first_used_date >= {_date_sql(snapshot)}
                             AND u.first_used_date < {_date_sql(end)} THEN 1 ELSE 0 END AS TINYINT) AS adopted
            FROM ({benefit_pairs_sql}) p
            JOIN cardholders h ON h.cardholder_id = p.cardholder_id AND h.open_date < {_date_sql(snapshot)}
            LEFT JOIN benefit_usage u ON u.cardholder_id = p.cardholder_id AND u.benefit_id = p.benefit_id
            WHERE u.first_used_date IS NULL OR u.first_used_date >= {_date_sql(snapshot)}
            ORDER BY p.cardholder_id, p.benefit_id"""
    ).to_arrow_table()
    source = f"natural adoption: first use in the {window_days} days after {snapshot.isoformat()} (no conversations)"
    return LabelledRows(table, source, {})


@dataclass(frozen=True)
class TimeSplit:
    """Row masks for training, early stopping (a later slice) and evaluation (the latest slice).

    `by` says how the rows were split: by date (each slice later than the one before), or, when the
    presentations fall on too few dates for that, by cardholder at random; `note` then says why.
    """

    train: npt.NDArray[np.bool_]
    valid: npt.NDArray[np.bool_]
    test: npt.NDArray[np.bool_]
    valid_from: date
    test_from: date
    by: Literal["date", "cardholder"] = "date"
    note: str = ""


def split_by_time(
    dates: npt.NDArray[np.datetime64], valid_share: float = 0.15, test_share: float = 0.2
) -> TimeSplit:
    """Splits rows by calendar date so each slice is later than the one before (no row of a day is split).

    The boundaries are the dates at the (1 − valid − test) and (1 − test) quantiles of the rows.
    """
    if len(dates) == 0:
        raise ValueError("`dates` is empty: there are no labelled rows to split")
    days = dates.astype("datetime64[D]")
    valid_from = np.quantile(days.astype(np.int64), 1 - valid_share - test_share, method="higher")
    test_from = np.quantile(days.astype(np.int64), 1 - test_share, method="higher")
    numeric = days.astype(np.int64)
    test = numeric >= test_from
    valid = (numeric >= valid_from) & ~test
    train = numeric < valid_from
    return TimeSplit(train, valid, test, _epoch_day(valid_from), _epoch_day(test_from))


def split_rows(
    dates: npt.NDArray[np.datetime64],
    cardholder_ids: npt.NDArray[np.object_],
    seed: int = 0,
    valid_share: float = 0.15,
    test_share: float = 0.2,
) -> TimeSplit:
    """`split_by_time` where the dates allow it; else (a slice would be empty: the presentations fall on
    one day or a few) a split by cardholder at random, in the same shares, with a note saying so.

    A cardholder's rows stay in one slice, so no one is trained on and evaluated on. The dates of a
    split by cardholder are the first presentation's (the spend estimator learns from data before it).
    """
    by_time = split_by_time(dates, valid_share, test_share)
    if by_time.train.any() and by_time.valid.any() and by_time.test.any():
        return by_time
    days = dates.astype("datetime64[D]")
    n_days = len(np.unique(days))
    holders, holder_of_row = np.unique(cardholder_ids.astype(str), return_inverse=True)
    if len(holders) < 3:
        raise ValueError(
            f"the presentations fall on {n_days} date(s) and reach {len(holders)} cardholder(s): "
            "too few to hold any out for early stopping and evaluation"
        )
    draw = np.random.default_rng(seed).random(len(holders))[holder_of_row]
    test = draw >= 1 - test_share
    valid = (draw >= 1 - test_share - valid_share) & ~test
    train = ~(test | valid)
    first = _epoch_day(float(days.astype(np.int64).min()))
    note = (
        f"the presentations fall on {n_days} date(s), too few to split by time "
        "(training, early stopping and evaluation each need later dates than the one before): "
        f"split by cardholder at random instead ({1 - valid_share - test_share:.0%} / {valid_share:.0%} / "
        f"{test_share:.0%}), so the held-out numbers do not show how the model fares on later calls"
    )
    return TimeSplit(train, valid, test, first, first, by="cardholder", note=note)


def _epoch_day(days_since_epoch: float) -> date:
    return date(1970, 1, 1) + timedelta(days=int(days_since_epoch))
