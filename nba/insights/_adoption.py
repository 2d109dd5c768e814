"""Adoption after the conversations: every benefit eligible on every logged call → started within the
adoption window or not; by what happened to it, and per benefit the adoptions the conversations caused
beside comparable eligible benefits that were not presented, weighted on an estimated probability of being
presented; and the yearly value, to the cardholder, of what was started.

The unit is (call, benefit): a benefit on the cardholder's card, not used before the call's day and suited
to the call's reason (as the engine's candidates are). It was presented when the call's conversations name
it. The estimate of what the conversations caused is the average effect on the presented (ATT): the
presented units' adoption rate minus the comparable units' rate, the comparable ones weighted by
e / (1 − e), where e is a per-benefit logistic regression of "presented" on what a policy would see at the
call (the cardholder's spend in the benefit's categories over 90 and 365 days, the card's total spend over
90 days, the call's reason, the product, how many benefits were eligible on the call). Its interval is the
normal interval of that weighted difference (Hajek variance), which leaves out the uncertainty of the
propensity model itself. Cardholders never called are not comparable units: they have no call day to
count their window from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from nba.contract import Catalog, MccMap
from nba.features import ExtraColumns, build_cardholder_features, register_snapshots
from nba.insights._calls import LeftOut
from nba.vocab import (
    ADOPTION_WINDOW_DAYS,
    CATEGORY_INDEX,
    INSIGHTS_MIN_GROUP_ANSWERS,
    NOT_DISCUSSED,
    OUTCOMES,
    SENSITIVE_CALL_REASONS,
    SPEND_CATEGORIES,
)

# A unit whose estimated probability of being presented is above this has no comparable unit that was
# not presented: it is left out (counted), not weighted by a number near 1 / 0.
MAX_PROPENSITY: Final = 0.99
# The group of eligible benefits nobody presented, in the table by outcome.
NOT_PRESENTED: Final = "not presented (eligible)"
_Z95: Final = 1.959963984540054
_SNAPSHOT_VIEW: Final = "ins_call_snapshots"
_EXAMPLES: Final = 5

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AdoptionRow:
    """Units of one group, how many started using the benefit within the window (with a 95% Wilson
    interval), and the yearly value of what they started. `too_few`: fewer units than the report's
    threshold."""

    dimension: str
    group: str
    units: int
    adopted: int
    rate: float
    low: float
    high: float
    value_started_usd: float
    too_few: bool


@dataclass(frozen=True)
class CausedRow:
    """One benefit: the adoptions and value its presentations caused beyond comparable eligible benefits
    not presented (ATT, per presentation and in all, 95% intervals). `comparable_effective` is the
    weighted comparison group's effective size; `too_few` when it or the presented are under the
    threshold."""

    benefit_id: str
    presented: int
    presented_rate: float
    comparable: int
    comparable_effective: float
    comparable_rate: float
    caused_per_presentation: float
    low: float
    high: float
    caused_adoptions: float
    caused_value_usd: float
    caused_value_low: float
    caused_value_high: float
    too_few: bool


@dataclass(frozen=True)
class Adoption:
    """The adoption part of the report."""

    window_days: int
    data_end: str
    by_outcome: tuple[AdoptionRow, ...]
    by_benefit: tuple[AdoptionRow, ...]
    caused: tuple[CausedRow, ...]
    caused_total: CausedRow | None
    assumptions: tuple[str, ...]
    left_out: tuple[LeftOut, ...]


def wilson_interval(successes: FloatArray, n: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The 95% Wilson score interval of a proportion (0–1), elementwise; NaN where n is 0."""
    n_safe = np.maximum(n, 1)
    p = np.where(n > 0, successes / n_safe, 0.0)
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * n_safe)) / (1 + z2 / n_safe)
    half = _Z95 * np.sqrt(p * (1 - p) / n_safe + z2 / (4 * n_safe * n_safe)) / (1 + z2 / n_safe)
    empty = n == 0
    # At 0 or n successes a bound is 0 or 1 exactly; the arithmetic can miss it by a rounding error.
    low = np.where(successes == 0, 0.0, centre - half)
    high = np.where(successes == n, 1.0, centre + half)
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def _register_table(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    con.register(f"{name}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


def _catalog_tables(con: duckdb.DuckDBPyConnection, catalog: Catalog, mcc_map: MccMap) -> None:
    """`ins_benefit_value`: each (product, benefit) with its kind's yearly value rule;
    `ins_benefit_categories`: each benefit's spend categories; `ins_mcc`: each code's category."""
    rows = []
    for product in catalog.products:
        for benefit_id in product.benefits:
            b = catalog.benefit_by_id.get(benefit_id)
            if b is None:
                continue
            rate = (
                (b.earn_rate - product.base_earn_rate) * catalog.point_value_usd
                if b.earn_rate is not None
                else 0.0
            )
            fixed = b.annual_credit_usd or b.nominal_value_usd or 0.0
            rows.append((product.id, benefit_id, rate, float(fixed)))
    _register_table(
        con,
        "ins_benefit_value",
        pa.table(
            {
                "product_id": pa.array([r[0] for r in rows], pa.string()),
                "benefit_id": pa.array([r[1] for r in rows], pa.string()),
                "per_dollar_usd": pa.array([r[2] for r in rows], pa.float64()),
                "fixed_usd": pa.array([r[3] for r in rows], pa.float64()),
            }
        ),
    )
    pairs = [(b.id, CATEGORY_INDEX[c]) for b in catalog.benefits for c in b.spend_categories]
    _register_table(
        con,
        "ins_benefit_categories",
        pa.table(
            {
                "benefit_id": pa.array([p[0] for p in pairs], pa.string()),
                "category_id": pa.array([p[1] for p in pairs], pa.int8()),
            }
        ),
    )
    codes = np.asarray(mcc_map.category_index)
    _register_table(
        con,
        "ins_mcc",
        pa.table({"mcc": pa.array(np.arange(len(codes), dtype=np.int16)), "category_id": pa.array(codes)}),
    )


def _units(con: duckdb.DuckDBPyConnection, window_days: int) -> str:
    """`ins_units`: one row per (logged call, benefit on the card) with presented/outcome/adopted; returns
    the data's last day (the latest date any table holds)."""
    sensitive = "(" + ", ".join(f"'{r}'" for r in sorted(SENSITIVE_CALL_REASONS)) + ")"
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ins_data_end AS
        SELECT greatest(
            (SELECT max(CAST(transaction_date AS DATE)) FROM transactions),
            (SELECT max(first_used_date) FROM benefit_usage),
            (SELECT max(CAST(started_at AS DATE)) FROM ins_call_info)) AS day
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_units AS
        WITH call AS (
            SELECT i.call_id, i.cardholder_id, CAST(i.started_at AS DATE) AS day, i.call_reason,
                   ch.product_id
            FROM ins_call_info i
            JOIN (SELECT cardholder_id, any_value(product_id) AS product_id FROM cardholders
                  GROUP BY cardholder_id) ch USING (cardholder_id)
            WHERE i.started_at IS NOT NULL AND i.call_reason IS NOT NULL
              AND i.call_id NOT IN (SELECT call_id FROM ins_disagreements)
        ),
        pair AS (
            SELECT c.*, pb.benefit_id,
                   CASE WHEN list_contains(pb.suitable, c.call_reason) THEN true
                        WHEN c.call_reason IN {sensitive} THEN false
                        ELSE NOT list_contains(pb.unsuitable, c.call_reason) END AS suits
            FROM call c JOIN ins_product_benefits pb USING (product_id)
        ),
        shown AS (SELECT call_id, benefit_id, any_value(outcome) AS outcome FROM ins_suggestions
                  GROUP BY call_id, benefit_id)
        SELECT p.call_id, p.cardholder_id, p.day, p.call_reason, p.product_id, p.benefit_id,
               s.call_id IS NOT NULL AND s.outcome <> '{NOT_DISCUSSED}' AS presented,
               s.outcome,
               u.first_used_date,
               u.first_used_date IS NOT NULL AND u.first_used_date < p.day AS used_before,
               p.suits,
               p.day + {window_days} > (SELECT day FROM ins_data_end) AS window_open,
               coalesce(u.first_used_date BETWEEN p.day AND p.day + {window_days}, false) AS adopted
        FROM pair p
        LEFT JOIN shown s USING (call_id, benefit_id)
        LEFT JOIN benefit_usage u ON u.cardholder_id = p.cardholder_id AND u.benefit_id = p.benefit_id
        WHERE p.suits OR s.call_id IS NOT NULL
        """
    )
    # A benefit not presented on this call but presented to the same cardholder on another call within the
    # window before or after is no comparison: that other conversation may be why it was started.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_units_marked AS
        SELECT u.*,
               NOT u.presented AND u.outcome IS DISTINCT FROM '{NOT_DISCUSSED}' AND EXISTS (
                   SELECT 1 FROM ins_units o
                   WHERE o.presented AND o.cardholder_id = u.cardholder_id AND o.benefit_id = u.benefit_id
                     AND o.call_id <> u.call_id AND abs(o.day - u.day) <= {window_days}
               ) AS presented_nearby,
               count(*) OVER (PARTITION BY u.call_id) AS eligible_on_call
        FROM ins_units u
        """
    )
    return str(con.execute("SELECT day FROM ins_data_end").fetchall()[0][0])


def _left_out(con: duckdb.DuckDBPyConnection, window_days: int) -> tuple[LeftOut, ...]:
    checks = (
        (
            "suggestions on calls with no known day, reason or cardholder product, or of a benefit not on "
            "that product (no eligible benefits to compare with)",
            "SELECT s.call_id FROM ins_suggestions s "
            "WHERE s.call_id NOT IN (SELECT call_id FROM ins_disagreements) AND NOT EXISTS "
            "(SELECT 1 FROM ins_units u WHERE u.call_id = s.call_id AND u.benefit_id = s.benefit_id)",
        ),
        (
            f"benefits on logged calls whose {window_days} days after the call go past the data's last day "
            "(their adoption is not known yet)",
            "SELECT call_id FROM ins_units_marked WHERE window_open AND NOT used_before",
        ),
        (
            "benefits presented that the cardholder had already used before the call (nothing to adopt)",
            "SELECT call_id FROM ins_units_marked WHERE presented AND used_before",
        ),
        (
            "eligible benefits not presented on a call but presented to the same cardholder on another call "
            f"within {window_days} days (not comparable)",
            "SELECT call_id FROM ins_units_marked WHERE presented_nearby AND NOT used_before AND NOT window_open",
        ),
        (
            "suggestions marked not discussed (neither presented nor comparable: the cardholder may have "
            "been told in passing)",
            f"SELECT call_id FROM ins_units_marked WHERE outcome = '{NOT_DISCUSSED}' AND NOT used_before "
            "AND NOT window_open",
        ),
    )
    found = []
    for reason, sql in checks:
        rows, examples = con.execute(
            f"SELECT count(*), list(DISTINCT x ORDER BY x)[1:{_EXAMPLES}] FROM ({sql}) t(x)"
        ).fetchall()[0]
        if rows:
            found.append(LeftOut(reason, int(rows), tuple(examples)))
    return tuple(found)


def _covariates(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, mcc_map: MccMap, window_days: int
) -> pd.DataFrame:
    """The units kept for the comparison with their covariates and the yearly value of their benefit."""
    snapshots = con.sql(
        "SELECT DISTINCT cardholder_id, day AS as_of FROM ins_units_marked "
        "WHERE NOT used_before AND NOT window_open"
    ).to_arrow_table()
    units: pd.DataFrame = con.sql(
        f"""
        SELECT call_id, cardholder_id, day, call_reason, product_id, benefit_id, presented, outcome, adopted,
               eligible_on_call
        FROM ins_units_marked
        WHERE NOT used_before AND NOT window_open AND NOT presented_nearby
          AND outcome IS DISTINCT FROM '{NOT_DISCUSSED}'
        ORDER BY call_id, benefit_id
        """
    ).df()
    if len(units) == 0:
        return units
    columns = [f"spend_{c}_{w}d_usd" for c in SPEND_CATEGORIES for w in (90, 365)]
    features = build_cardholder_features(
        con, register_snapshots(con, snapshots, _SNAPSHOT_VIEW), mcc_map, ExtraColumns()
    ).select(["cardholder_id", "as_of", "spend_total_90d_usd", *columns])
    con.unregister(_SNAPSHOT_VIEW)
    spend = features.to_pandas().rename(columns={"as_of": "day"})
    spend["day"] = pd.to_datetime(spend["day"])
    units["day"] = pd.to_datetime(units["day"])
    frame = units.merge(spend, on=["cardholder_id", "day"], how="left", validate="many_to_one")
    for window in (90, 365):
        frame[f"benefit_spend_{window}d"] = 0.0
    for benefit in catalog.benefits:
        mine = (frame["benefit_id"] == benefit.id).to_numpy()
        for window in (90, 365):
            total = sum(
                (frame.loc[mine, f"spend_{c}_{window}d_usd"] for c in benefit.spend_categories),
                start=pd.Series(0.0, index=frame.index[mine]),
            )
            frame.loc[mine, f"benefit_spend_{window}d"] = total.to_numpy()
    started = con.sql(
        f"""
        WITH adopter AS (
            SELECT call_id, cardholder_id, benefit_id, first_used_date,
                   greatest((SELECT day FROM ins_data_end) - first_used_date + 1, {window_days}) AS days
            FROM ins_units_marked WHERE adopted AND NOT used_before AND NOT window_open
        ),
        spend AS (
            SELECT a.call_id, a.benefit_id, sum(t.amount) AS spend
            FROM adopter a
            JOIN transactions t ON t.cardholder_id = a.cardholder_id
             AND CAST(t.transaction_date AS DATE) >= a.first_used_date
            JOIN ins_mcc m ON m.mcc = t.mcc
            JOIN ins_benefit_categories c ON c.benefit_id = a.benefit_id AND c.category_id = m.category_id
            GROUP BY a.call_id, a.benefit_id
        )
        SELECT a.call_id, a.benefit_id, coalesce(s.spend, 0) * 365.0 / a.days AS yearly_spend_since_start
        FROM adopter a LEFT JOIN spend s USING (call_id, benefit_id)
        """
    ).df()
    value = con.sql("SELECT product_id, benefit_id, per_dollar_usd, fixed_usd FROM ins_benefit_value").df()
    frame = frame.merge(value, on=["product_id", "benefit_id"], how="left", validate="many_to_one")
    frame = frame.merge(started, on=["call_id", "benefit_id"], how="left", validate="one_to_one")
    # The yearly value of a benefit started: the extra points on its categories at the product's point
    # value, on the spend seen since the first use, per year (over at least the window's days, so a short
    # stretch is not blown up); a credit's or a perk's value as the catalog gives it. Not started: 0.
    frame["value_usd"] = np.where(
        frame["adopted"].to_numpy(bool),
        frame["per_dollar_usd"].to_numpy(float)
        * frame["yearly_spend_since_start"].fillna(0.0).clip(lower=0.0).to_numpy(float)
        + frame["fixed_usd"].to_numpy(float),
        0.0,
    )
    kept: pd.DataFrame = frame.drop(columns=columns)
    return kept


def _design(frame: pd.DataFrame) -> FloatArray:
    numeric = np.column_stack(
        [
            np.log1p(frame["benefit_spend_90d"].clip(lower=0.0).to_numpy(float)),
            np.log1p(frame["benefit_spend_365d"].clip(lower=0.0).to_numpy(float)),
            np.log1p(frame["spend_total_90d_usd"].fillna(0.0).clip(lower=0.0).to_numpy(float)),
            frame["eligible_on_call"].to_numpy(float),
        ]
    )
    dummies = pd.get_dummies(frame[["call_reason", "product_id"]].astype(str), dtype=float).to_numpy()
    return np.column_stack([StandardScaler().fit_transform(numeric), dummies])


def _propensity(frame: pd.DataFrame) -> FloatArray:
    """Each unit's estimated probability of being presented, fitted per benefit."""
    e = np.full(len(frame), np.nan)
    for _, index in frame.groupby("benefit_id").indices.items():
        part = frame.iloc[index]
        treated = part["presented"].to_numpy(bool)
        if treated.all() or not treated.any():
            e[index] = float(treated.mean())
            continue
        model = LogisticRegression(C=1.0, max_iter=1_000)
        model.fit(_design(part), treated)
        e[index] = model.predict_proba(_design(part))[:, 1]
    return e


def _att(
    y: FloatArray, treated: npt.NDArray[np.bool_], e: FloatArray
) -> tuple[float, float, float, float, float]:
    """ATT by weighting: (treated mean, comparison's weighted mean, difference, its standard error, the
    comparison's effective size)."""
    yt, yc = y[treated], y[~treated]
    w = e[~treated] / (1.0 - e[~treated])
    if len(yt) == 0 or w.sum() <= 0:
        return math.nan, math.nan, math.nan, math.nan, 0.0
    mt = float(yt.mean())
    mc = float((w * yc).sum() / w.sum())
    var_t = float(yt.var(ddof=1)) / len(yt) if len(yt) > 1 else math.nan
    var_c = float((w * w * (yc - mc) ** 2).sum() / w.sum() ** 2)
    effective = float(w.sum() ** 2 / (w * w).sum())
    return mt, mc, mt - mc, math.sqrt(var_t + var_c), effective


def _caused_row(benefit_id: str, part: pd.DataFrame, e: FloatArray, min_units: int) -> CausedRow:
    treated = part["presented"].to_numpy(bool)
    adopted = part["adopted"].to_numpy(float)
    value = part["value_usd"].to_numpy(float) * adopted
    mt, mc, diff, se, effective = _att(adopted, treated, e)
    _, _, value_diff, value_se, _ = _att(value, treated, e)
    n = int(treated.sum())
    return CausedRow(
        benefit_id=benefit_id,
        presented=n,
        presented_rate=mt,
        comparable=int((~treated).sum()),
        comparable_effective=effective,
        comparable_rate=mc,
        caused_per_presentation=diff,
        low=diff - _Z95 * se,
        high=diff + _Z95 * se,
        caused_adoptions=diff * n,
        caused_value_usd=value_diff * n,
        caused_value_low=(value_diff - _Z95 * value_se) * n,
        caused_value_high=(value_diff + _Z95 * value_se) * n,
        too_few=n < min_units or effective < min_units,
    )


def _rate_rows(dimension: str, frame: pd.DataFrame, key: str, min_units: int) -> tuple[AdoptionRow, ...]:
    if len(frame) == 0:
        return ()
    grouped = (
        frame.assign(started=frame["value_usd"] * frame["adopted"])
        .groupby(key, sort=False)
        .agg(units=("adopted", "size"), adopted=("adopted", "sum"), value=("started", "sum"))
        .sort_values(["units"], ascending=False, kind="stable")
    )
    n = grouped["units"].to_numpy(float)
    k = grouped["adopted"].to_numpy(float)
    low, high = wilson_interval(k, n)
    return tuple(
        AdoptionRow(
            dimension,
            str(group),
            int(n[i]),
            int(k[i]),
            float(k[i] / n[i]),
            float(low[i]),
            float(high[i]),
            float(grouped["value"].iloc[i]),
            bool(n[i] < min_units),
        )
        for i, group in enumerate(grouped.index)
    )


def build_adoption(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    mcc_map: MccMap,
    *,
    window_days: int = ADOPTION_WINDOW_DAYS,
    min_units: int = INSIGHTS_MIN_GROUP_ANSWERS,
    max_propensity: float = MAX_PROPENSITY,
) -> Adoption:
    """The adoption report over the logged calls `build_insights` prepared on `con` (it must have run
    first: `ins_call_info`, `ins_suggestions`, `ins_product_benefits`, `ins_disagreements`), with the
    data directory's `cardholders`, `benefit_usage` and `transactions` views.
    """
    _catalog_tables(con, catalog, mcc_map)
    data_end = _units(con, window_days)
    left_out = list(_left_out(con, window_days))
    frame = _covariates(con, catalog, mcc_map, window_days)
    presented = frame[frame["presented"]] if len(frame) else frame
    outcome_order = {o: i for i, o in enumerate((*OUTCOMES, NOT_PRESENTED))}
    labelled = frame.assign(group=np.where(frame["presented"], frame["outcome"].astype(str), NOT_PRESENTED))
    by_outcome = tuple(
        sorted(
            _rate_rows("outcome", labelled, "group", min_units), key=lambda r: outcome_order.get(r.group, 99)
        )
    )
    by_benefit = _rate_rows("benefit", presented, "benefit_id", min_units)
    caused: list[CausedRow] = []
    total: CausedRow | None = None
    assumptions = [
        "caused adoptions compare presented benefits with eligible benefits not presented on logged calls, "
        "weighted on an estimated probability of being presented (a logistic regression per benefit on the "
        "cardholder's spend in the benefit's categories over 90 and 365 days, the card's spend over 90 days, "
        "the call's reason, the product and how many benefits were eligible on the call): it holds only if "
        "nothing else that drives both presenting and adopting differs between them",
        "cardholders never called are not in the comparison (no call day to count their window from)",
        "the interval leaves out the uncertainty of the propensity model itself",
    ]
    if len(frame):
        e = _propensity(frame)
        beyond = e > max_propensity
        if beyond.any():
            left_out.append(
                LeftOut(
                    f"benefits on calls with an estimated probability of being presented above "
                    f"{max_propensity:g} (no comparable benefit that was not presented)",
                    int(beyond.sum()),
                    tuple(sorted(set(frame.loc[beyond, "call_id"].astype(str)))[:_EXAMPLES]),
                )
            )
        kept = frame[~beyond].reset_index(drop=True)
        e_kept = e[~beyond]
        for benefit_id, index in sorted(kept.groupby("benefit_id").indices.items()):
            part = kept.iloc[index]
            if part["presented"].any():
                caused.append(_caused_row(str(benefit_id), part, e_kept[index], min_units))
        caused.sort(key=lambda r: -r.presented)
        if caused:
            total = _caused_row("all benefits", kept, e_kept, min_units)
        if not (frame["outcome"].notna() & frame["presented"]).any():
            assumptions.append("no benefit was presented on a call whose adoption is known yet")
    return Adoption(
        window_days=window_days,
        data_end=data_end,
        by_outcome=by_outcome,
        by_benefit=by_benefit,
        caused=tuple(caused),
        caused_total=total,
        assumptions=tuple(assumptions),
        left_out=tuple(left_out),
    )
