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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from nba.contract import Catalog, MccMap
from nba.insights._calls import LeftOut, count_left_out
from nba.vocab import (
    ADOPTION_WINDOW_DAYS,
    CALL_REASONS,
    CATEGORY_INDEX,
    INSIGHTS_MIN_GROUP_ANSWERS,
    OUTCOMES,
    SENSITIVE_CALL_REASONS,
    UNHEARD_OUTCOMES,
)

# A unit whose estimated probability of being presented is above this has no comparable unit that was
# not presented: it is left out (counted), not weighted by a number near 1 / 0.
MAX_PROPENSITY: Final = 0.99
# Suggestions not known to be heard (not discussed, or never marked): neither presented nor comparable.
_UNHEARD: Final = "(" + ", ".join(f"'{outcome}'" for outcome in UNHEARD_OUTCOMES) + ")"
# The propensity model of a benefit is fitted on at most this many of its units (a seeded sample): a
# dozen coefficients need no more, and the fit stays seconds at millions of calls.
MAX_FIT_UNITS: Final = 100_000
# The group of eligible benefits nobody presented, in the table by outcome.
NOT_PRESENTED: Final = "not presented (eligible)"
_Z95: Final = 1.959963984540054
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
               s.call_id IS NOT NULL AND s.outcome NOT IN {_UNHEARD} AS presented,
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
    # window before or after is no comparison: that other conversation may be why it was started. (A join
    # on the cardholder and benefit, then the days: a window over the units sorted them twice, 3x slower.)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_units_marked AS
        WITH shown AS (SELECT DISTINCT cardholder_id, benefit_id, day FROM ins_units WHERE presented),
        nearby AS (
            SELECT DISTINCT u.call_id, u.benefit_id
            FROM ins_units u JOIN shown s USING (cardholder_id, benefit_id)
            WHERE NOT u.presented AND coalesce(u.outcome NOT IN {_UNHEARD}, true)
              AND abs(s.day - u.day) <= {window_days}
        ),
        per_call AS (SELECT call_id, count(*) AS eligible_on_call FROM ins_units GROUP BY call_id)
        SELECT u.*, n.call_id IS NOT NULL AS presented_nearby, c.eligible_on_call
        FROM ins_units u
        LEFT JOIN nearby n USING (call_id, benefit_id)
        JOIN per_call c USING (call_id)
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
            "suggestions marked not discussed, or never marked (neither presented nor comparable: the "
            "cardholder may have been told in passing)",
            f"SELECT call_id FROM ins_units_marked WHERE outcome IN {_UNHEARD} AND NOT used_before "
            "AND NOT window_open",
        ),
    )
    return count_left_out(con, checks)


@dataclass(frozen=True)
class _Units:
    """The units kept for the comparison, as arrays (one entry per unit, in (call id, benefit id) order):
    codes into the name tuples, the covariates, and the yearly value of the benefit when started."""

    benefits: tuple[str, ...]
    groups: tuple[str, ...]  # OUTCOMES, then NOT_PRESENTED
    benefit: npt.NDArray[np.int64]
    group: npt.NDArray[np.int64]
    reason: npt.NDArray[np.int64]
    product: npt.NDArray[np.int64]
    presented: npt.NDArray[np.bool_]
    adopted: npt.NDArray[np.bool_]
    value_usd: FloatArray
    numeric: (
        FloatArray  # (units × 4): spend in the benefit's categories 90 / 365 days, card 90 days, eligible
    )

    def __len__(self) -> int:
        return len(self.benefit)

    def take(self, index: npt.NDArray[np.int64]) -> _Units:
        return _Units(
            self.benefits,
            self.groups,
            self.benefit[index],
            self.group[index],
            self.reason[index],
            self.product[index],
            self.presented[index],
            self.adopted[index],
            self.value_usd[index],
            self.numeric[index],
        )


def _sql_array(values: Sequence[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _covariates(con: duckdb.DuckDBPyConnection, catalog: Catalog, window_days: int) -> _Units:
    """The units kept for the comparison, with their covariates and the yearly value of their benefit
    when started: one DuckDB statement per step, one set of numeric arrays fetched."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ins_kept AS
        SELECT call_id, cardholder_id, day, call_reason, product_id, benefit_id, presented, outcome, adopted,
               first_used_date, eligible_on_call
        FROM ins_units_marked
        WHERE NOT used_before AND NOT window_open AND NOT presented_nearby
          AND coalesce(outcome NOT IN {_UNHEARD}, true)
        """
    )
    # Each (cardholder, call day)'s net spend per category over the 90 and 365 days before the day.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ins_pair_spend AS
        WITH pair AS (SELECT DISTINCT cardholder_id, day FROM ins_kept)
        SELECT p.cardholder_id, p.day, m.category_id,
               coalesce(sum(t.amount) FILTER (WHERE CAST(t.transaction_date AS DATE) >= p.day - 90), 0) AS s90,
               sum(t.amount) AS s365
        FROM pair p
        JOIN transactions t ON t.cardholder_id = p.cardholder_id
         AND CAST(t.transaction_date AS DATE) >= p.day - 365 AND CAST(t.transaction_date AS DATE) < p.day
        JOIN ins_mcc m ON m.mcc = t.mcc
        GROUP BY p.cardholder_id, p.day, m.category_id
        """
    )
    benefits = tuple(sorted(b.id for b in catalog.benefits))
    products = tuple(p.id for p in catalog.products)
    groups = (*OUTCOMES, NOT_PRESENTED)
    # The yearly value of a benefit started: the extra points on its categories at the product's point
    # value, on the spend seen since the first use, per year (over at least the window's days, so a short
    # stretch is not blown up); a credit's or a perk's value as the catalog gives it. Not started: 0.
    arrays = con.sql(
        f"""
        WITH benefit_spend AS (
            SELECT k.call_id, k.benefit_id, sum(ps.s90) AS b90, sum(ps.s365) AS b365
            FROM ins_kept k
            JOIN ins_benefit_categories bc USING (benefit_id)
            JOIN ins_pair_spend ps ON ps.cardholder_id = k.cardholder_id AND ps.day = k.day
             AND ps.category_id = bc.category_id
            GROUP BY k.call_id, k.benefit_id
        ),
        total AS (SELECT cardholder_id, day, sum(s90) AS t90 FROM ins_pair_spend GROUP BY cardholder_id, day),
        adopter AS (
            SELECT call_id, cardholder_id, benefit_id, first_used_date,
                   greatest((SELECT day FROM ins_data_end) - first_used_date + 1, {window_days}) AS days
            FROM ins_kept WHERE adopted
        ),
        started AS (
            SELECT a.call_id, a.benefit_id, any_value(a.days) AS days, coalesce(sum(t.amount), 0) AS spend
            FROM adopter a
            LEFT JOIN (
                SELECT t.cardholder_id, CAST(t.transaction_date AS DATE) AS day, t.amount, m.category_id
                FROM transactions t JOIN ins_mcc m ON m.mcc = t.mcc
            ) t ON t.cardholder_id = a.cardholder_id AND t.day >= a.first_used_date
               AND t.category_id IN (SELECT category_id FROM ins_benefit_categories c
                                     WHERE c.benefit_id = a.benefit_id)
            GROUP BY a.call_id, a.benefit_id
        )
        SELECT list_position({_sql_array(benefits)}, k.benefit_id) - 1 AS benefit,
               CASE WHEN k.presented THEN list_position({_sql_array(groups)}, k.outcome) - 1
                    ELSE {len(groups) - 1} END AS grp,
               coalesce(list_position({_sql_array(CALL_REASONS)}, k.call_reason), 0) AS reason,
               coalesce(list_position({_sql_array(products)}, k.product_id), 0) AS product,
               k.presented, k.adopted,
               CASE WHEN k.adopted
                    THEN v.per_dollar_usd * greatest(s.spend, 0) * 365.0 / s.days + v.fixed_usd
                    ELSE 0 END AS value_usd,
               coalesce(b.b90, 0) AS b90, coalesce(b.b365, 0) AS b365, coalesce(t.t90, 0) AS t90,
               k.eligible_on_call
        FROM ins_kept k
        LEFT JOIN benefit_spend b USING (call_id, benefit_id)
        LEFT JOIN total t ON t.cardholder_id = k.cardholder_id AND t.day = k.day
        LEFT JOIN started s USING (call_id, benefit_id)
        JOIN ins_benefit_value v USING (product_id, benefit_id)
        ORDER BY k.call_id, k.benefit_id
        """
    ).fetchnumpy()
    return _Units(
        benefits,
        groups,
        np.asarray(arrays["benefit"], dtype=np.int64),
        np.asarray(arrays["grp"], dtype=np.int64),
        np.asarray(arrays["reason"], dtype=np.int64),
        np.asarray(arrays["product"], dtype=np.int64),
        np.asarray(arrays["presented"], dtype=bool),
        np.asarray(arrays["adopted"], dtype=bool),
        np.asarray(arrays["value_usd"], dtype=np.float64),
        np.column_stack(
            [np.asarray(arrays[c], dtype=np.float64) for c in ("b90", "b365", "t90", "eligible_on_call")]
        )
        if len(arrays["benefit"])
        else np.zeros((0, 4)),
    )


def _design(units: _Units) -> FloatArray:
    """Standardised log spend and eligible count, then the call reason and the product one-hot."""
    spend = np.log1p(np.clip(units.numeric[:, :3], 0.0, None))
    numeric = np.column_stack([spend, units.numeric[:, 3]])
    reasons = np.eye(len(CALL_REASONS) + 1)[units.reason]
    products = np.eye(int(units.product.max(initial=0)) + 1)[units.product]
    return np.column_stack([StandardScaler().fit_transform(numeric), reasons, products])


def _by_benefit(units: _Units) -> list[tuple[int, npt.NDArray[np.int64]]]:
    """Each benefit code present with the positions of its units."""
    order = np.argsort(units.benefit, kind="stable")
    codes, starts = np.unique(units.benefit[order], return_index=True)
    return [(int(c), part) for c, part in zip(codes, np.split(order, starts[1:]), strict=True)]


def _propensity(units: _Units) -> FloatArray:
    """Each unit's estimated probability of being presented, fitted per benefit."""
    e = np.full(len(units), np.nan)
    for _, index in _by_benefit(units):
        part = units.take(index)
        treated = part.presented
        if treated.all() or not treated.any():
            e[index] = float(treated.mean())
            continue
        design = _design(part)
        fit = np.arange(len(part))
        if len(fit) > MAX_FIT_UNITS:  # a seeded sample fits the few coefficients as well, in a fraction
            fit = np.sort(np.random.default_rng(0).choice(len(fit), MAX_FIT_UNITS, replace=False))
        model = LogisticRegression(C=1.0, max_iter=1_000)
        model.fit(design[fit], treated[fit])
        e[index] = model.predict_proba(design)[:, 1]
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


def _caused_row(benefit_id: str, units: _Units, e: FloatArray, min_units: int) -> CausedRow:
    treated = units.presented
    adopted = units.adopted.astype(float)
    mt, mc, diff, se, effective = _att(adopted, treated, e)
    _, _, value_diff, value_se, _ = _att(units.value_usd * adopted, treated, e)
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


def _rate_rows(
    dimension: str, names: Sequence[str], codes: npt.NDArray[np.int64], units: _Units, min_units: int
) -> tuple[AdoptionRow, ...]:
    """One row per code present, most units first (ties in name order)."""
    size = len(names)
    n: FloatArray = np.bincount(codes, minlength=size).astype(np.float64)
    k: FloatArray = np.bincount(codes, weights=units.adopted.astype(np.float64), minlength=size).astype(
        np.float64
    )
    value = np.bincount(codes, weights=units.value_usd * units.adopted, minlength=size)
    low, high = wilson_interval(k, n)
    shown = sorted(np.flatnonzero(n).tolist(), key=lambda i: (-n[i], names[i]))
    return tuple(
        AdoptionRow(
            dimension,
            names[i],
            int(n[i]),
            int(k[i]),
            float(k[i] / n[i]),
            float(low[i]),
            float(high[i]),
            float(value[i]),
            bool(n[i] < min_units),
        )
        for i in shown
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
    units = _covariates(con, catalog, window_days)
    by_outcome = tuple(
        sorted(
            _rate_rows("outcome", units.groups, units.group, units, min_units),
            key=lambda r: units.groups.index(r.group),
        )
    )
    presented = units.take(np.flatnonzero(units.presented))
    by_benefit = _rate_rows("benefit", units.benefits, presented.benefit, presented, min_units)
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
    if len(units):
        e = _propensity(units)
        beyond = e > max_propensity
        if beyond.any():
            examples = con.execute(
                "SELECT list(DISTINCT call_id ORDER BY call_id) FROM "
                "(SELECT call_id, row_number() OVER (ORDER BY call_id, benefit_id) - 1 AS k FROM ins_kept) "
                f"WHERE k IN ({', '.join(str(i) for i in np.flatnonzero(beyond)[:1_000].tolist())})"
            ).fetchall()[0][0]
            left_out.append(
                LeftOut(
                    f"benefits on calls with an estimated probability of being presented above "
                    f"{max_propensity:g} (no comparable benefit that was not presented)",
                    int(beyond.sum()),
                    tuple(examples[:_EXAMPLES]),
                )
            )
        kept_index = np.flatnonzero(~beyond)
        kept, e_kept = units.take(kept_index), e[kept_index]
        for code, index in _by_benefit(kept):
            part = kept.take(index)
            if part.presented.any():
                caused.append(_caused_row(units.benefits[code], part, e_kept[index], min_units))
        caused.sort(key=lambda r: (-r.presented, r.benefit_id))
        if caused:
            total = _caused_row("all benefits", kept, e_kept, min_units)
    if total is None:
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
