"""Candidate matrix: cardholder features + benefit + history + spend estimates → the model's input rows.

One function builds the rows for training (thousands of presentations at their own dates) and for
serving (one cardholder's candidates at once), so the model always sees features computed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.contract._catalog import Catalog
from nba.vocab import BENEFIT_KINDS, CALL_REASONS, CATEGORY_INDEX, SPEND_CATEGORIES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

HISTORY_COLUMNS: Final = (
    "presented_60d",
    "presented_180d",
    "declined_60d",
    "declined_180d",
    "days_since_last_presented",
    "accepted_ever",
)
PAIR_CATEGORICAL: Final = ("benefit_id", "benefit_kind", "call_reason")
PAIR_FEATURES: Final = (
    *PAIR_CATEGORICAL,
    "rank",
    "earn_uplift",
    "annual_credit_usd",
    "nominal_value_usd",
    "requires_enrollment",
    "benefit_spend_90d_usd",
    "benefit_spend_365d_usd",
    "benefit_tx_365d",
    "benefit_share_365d",
    "benefit_days_since",
    "est_annual_spend_usd",
    "est_annual_value_usd",
    *HISTORY_COLUMNS,
)


@dataclass(frozen=True, eq=False)
class BenefitTable:
    """The catalog's benefits as arrays (catalog order), so pairs are built without Python loops."""

    ids: tuple[str, ...]
    kind_code: FloatArray
    category_mask: FloatArray  # (benefits × 16): 1 where the benefit covers the category
    earn_rate: FloatArray
    annual_credit_usd: FloatArray
    nominal_value_usd: FloatArray
    requires_enrollment: FloatArray
    lever: FloatArray
    product_ids: tuple[str, ...]
    product_base_rate: FloatArray
    product_benefits: tuple[IntArray, ...]  # per product: indices of its benefits
    point_value_usd: float

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> BenefitTable:
        benefits = catalog.benefits
        mask = np.zeros((len(benefits), len(SPEND_CATEGORIES)))
        for i, benefit in enumerate(benefits):
            for category in benefit.spend_categories:
                mask[i, CATEGORY_INDEX[category]] = 1.0
        position = {b.id: i for i, b in enumerate(benefits)}
        return cls(
            ids=tuple(b.id for b in benefits),
            kind_code=np.array([BENEFIT_KINDS.index(b.kind) for b in benefits], dtype=np.float64),
            category_mask=mask,
            earn_rate=np.array([b.earn_rate or 0.0 for b in benefits]),
            annual_credit_usd=np.array([b.annual_credit_usd or 0.0 for b in benefits]),
            nominal_value_usd=np.array([b.nominal_value_usd or 0.0 for b in benefits]),
            requires_enrollment=np.array([float(b.requires_enrollment) for b in benefits]),
            lever=np.array([b.lever for b in benefits]),
            product_ids=tuple(p.id for p in catalog.products),
            product_base_rate=np.array([p.base_earn_rate for p in catalog.products]),
            product_benefits=tuple(
                np.array([position[b] for b in p.benefits], dtype=np.int64) for p in catalog.products
            ),
            point_value_usd=catalog.point_value_usd,
        )

    def index_of(self, benefit_id: str) -> int:
        return self.ids.index(benefit_id)


_EARN_RATE_KIND: Final = BENEFIT_KINDS.index("earn_rate")
_CREDIT_KIND: Final = BENEFIT_KINDS.index("statement_credit")


@dataclass(frozen=True, eq=False)
class HolderColumns:
    """Where the per-category spend features sit in the cardholder feature matrix."""

    spend_90d: IntArray
    spend_365d: IntArray
    tx_365d: IntArray
    share_365d: IntArray
    days_since: IntArray

    @classmethod
    def from_names(cls, names: Sequence[str]) -> HolderColumns:
        index = {name: i for i, name in enumerate(names)}

        def columns(template: str) -> IntArray:
            return np.array([index[template.format(c=c)] for c in SPEND_CATEGORIES], dtype=np.int64)

        return cls(
            spend_90d=columns("spend_{c}_90d_usd"),
            spend_365d=columns("spend_{c}_365d_usd"),
            tx_365d=columns("tx_{c}_365d"),
            share_365d=columns("share_{c}_365d"),
            days_since=columns("days_since_{c}"),
        )


# Where each pair column sits among PAIR_FEATURES (after the cardholder's columns in X).
_PAIR_COLUMN: Final = {name: i for i, name in enumerate(PAIR_FEATURES)}
_CALL_REASON: Final = _PAIR_COLUMN["call_reason"]
_RANK: Final = _PAIR_COLUMN["rank"]
_EARN_UPLIFT: Final = _PAIR_COLUMN["earn_uplift"]
_CATEGORY_SUMS_START: Final = _PAIR_COLUMN["benefit_spend_90d_usd"]  # then 365d spend, tx and share
_DAYS: Final = _PAIR_COLUMN["benefit_days_since"]
_EST_ANNUAL_SPEND: Final = _PAIR_COLUMN["est_annual_spend_usd"]
_EST_ANNUAL_VALUE: Final = _PAIR_COLUMN["est_annual_value_usd"]
_HISTORY_START: Final = _PAIR_COLUMN[HISTORY_COLUMNS[0]]
_ANNUAL_CREDIT: Final = _PAIR_COLUMN["annual_credit_usd"]
_NOMINAL_VALUE: Final = _PAIR_COLUMN["nominal_value_usd"]
# PAIR_FEATURES[:_N_CATALOG_COLUMNS] come from the catalog and the model, apart from the per-pair
# call_reason, rank and earn_uplift, which are written over their slots.
_N_CATALOG_COLUMNS: Final = _PAIR_COLUMN["requires_enrollment"] + 1
_N_CATEGORIES: Final = len(SPEND_CATEGORIES)
# `PairTables.benefit_values` columns after the catalog ones.
_EARN_RATE: Final = _N_CATALOG_COLUMNS
_REFERENCE: Final = _N_CATALOG_COLUMNS + 1
_CATEGORY_MASK_START: Final = _N_CATALOG_COLUMNS + 2
_CATEGORY_MASK: Final = slice(_CATEGORY_MASK_START, _CATEGORY_MASK_START + _N_CATEGORIES)
# `PairTables.benefit_flags` columns.
_HAS_EARN_RATE, _IS_EARN_RATE, _IS_CREDIT, _HAS_REFERENCE = range(4)
_COVERS_START: Final = 4
_COVERS: Final = slice(_COVERS_START, _COVERS_START + _N_CATEGORIES)
# Rows of the per-cardholder category block (`PairTables.holder_block_columns`): spend 90d, spend
# 365d, tx 365d and share 365d (the order of the pair's category sums), the spend estimate, days since.
_EST_SPEND: Final = 4
_DAYS_SINCE: Final = 5
_LARGEST: Final = float(np.finfo(np.float64).max)


@dataclass(frozen=True, eq=False)
class PairTables:
    """Everything of the catalog and the model that the candidate matrix takes, prepared once.

    Laid out so each pair gathers its benefit's part in one take (`benefit_values`, `benefit_flags`)
    and each cardholder's per-category columns in one take (`holder_block_columns`): the serving path
    builds a few rows per call, where each numpy call costs more than its arithmetic.
    """

    benefit_values: (
        FloatArray  # (benefits × 26): PAIR_FEATURES[:8], earn rate, reference spend, category mask
    )
    benefit_flags: (
        BoolArray  # (benefits × 20): earn rate > 0, earn_rate kind, credit kind, reference > 0, covers
    )
    holder_block_columns: IntArray  # (6 × 16): holder_X columns of spend 90d/365d, tx, share, -, days since
    point_value_usd: float

    @classmethod
    def from_model(
        cls,
        benefits: BenefitTable,
        benefit_codes: FloatArray,
        holder_columns: HolderColumns,
        reference_spend_by_category: FloatArray,
    ) -> PairTables:
        """Tables for `benefits` as a model sees them: its benefit codes, cardholder columns and
        reference spend per category (the arguments of the same names in `build_candidate_matrix`)."""
        mask = benefits.category_mask
        reference = (reference_spend_by_category[None, :] * mask).sum(axis=1)
        values = np.full((len(benefits.ids), _CATEGORY_MASK.stop), np.nan)
        values[:, _PAIR_COLUMN["benefit_id"]] = benefit_codes
        values[:, _PAIR_COLUMN["benefit_kind"]] = benefits.kind_code
        values[:, _PAIR_COLUMN["annual_credit_usd"]] = benefits.annual_credit_usd
        values[:, _PAIR_COLUMN["nominal_value_usd"]] = benefits.nominal_value_usd
        values[:, _PAIR_COLUMN["requires_enrollment"]] = benefits.requires_enrollment
        values[:, _EARN_RATE] = benefits.earn_rate
        values[:, _REFERENCE] = reference
        values[:, _CATEGORY_MASK] = mask
        flags = np.zeros((len(benefits.ids), _COVERS.stop), dtype=bool)
        flags[:, _HAS_EARN_RATE] = benefits.earn_rate > 0
        flags[:, _IS_EARN_RATE] = benefits.kind_code == _EARN_RATE_KIND
        flags[:, _IS_CREDIT] = benefits.kind_code == _CREDIT_KIND
        flags[:, _HAS_REFERENCE] = reference > 0
        flags[:, _COVERS] = mask > 0
        block = np.stack(
            [
                holder_columns.spend_90d,
                holder_columns.spend_365d,
                holder_columns.tx_365d,
                holder_columns.share_365d,
                holder_columns.spend_90d,  # a placeholder: the estimate row comes from est_spend
                holder_columns.days_since,
            ]
        )
        return cls(values, flags, block, benefits.point_value_usd)


def build_candidate_matrix(
    holder_X: FloatArray,
    holder_columns: HolderColumns,
    est_spend_by_category: FloatArray,
    reference_spend_by_category: FloatArray,
    pair_holder: IntArray,
    pair_benefit: IntArray,
    pair_base_earn_rate: FloatArray,
    pair_history: FloatArray,
    pair_call_reason: FloatArray,
    pair_rank: FloatArray,
    benefits: BenefitTable,
    benefit_codes: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Rows of the model's input, one per (cardholder, benefit) pair, and each pair's yearly value.

    Takes the encoded cardholder features (`holder_X`, one row per cardholder snapshot), the
    spend estimates per category for the same rows, and per pair: the row of its cardholder, the
    benefit's index in `benefits`, the product's base earn rate, the history columns
    (HISTORY_COLUMNS order), the call reason's code and the rank it is (or would be) shown at.
    `benefit_codes` gives each benefit's code in the model's `benefit_id` encoder (NaN for a benefit
    added to the catalog after training: the model then scores it from its kind, value and spend).
    Returns (X, value_usd): X has the cardholder's columns followed by PAIR_FEATURES.

    The per-category pair features sum the cardholder's values over the benefit's categories
    (a missing spend, count or share counts as 0); `benefit_days_since` is the fewest days since a
    purchase in any of them (NaN when none has one). Serving prepares `PairTables` once and calls
    `assemble_candidate_matrix`, which this calls too.
    """
    tables = PairTables.from_model(benefits, benefit_codes, holder_columns, reference_spend_by_category)
    return assemble_candidate_matrix(
        tables,
        holder_X,
        est_spend_by_category,
        pair_holder,
        pair_benefit,
        pair_base_earn_rate,
        pair_history,
        pair_call_reason,
        pair_rank,
    )


_NARROW_HOLDER: Final = -2  # `_assemble`: holder_X lacks a column the tables read


def assemble_candidate_matrix(
    tables: PairTables,
    holder_X: FloatArray,
    est_spend_by_category: FloatArray,
    pair_holder: IntArray,
    pair_benefit: IntArray,
    pair_base_earn_rate: FloatArray,
    pair_history: FloatArray,
    pair_call_reason: FloatArray,
    pair_rank: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """`build_candidate_matrix` with the catalog and model part prepared (`PairTables.from_model`).

    One compiled pass over the pairs (`_assemble`): serving builds a few rows per call, where two dozen
    numpy calls on a handful of rows cost ~50 µs and the arithmetic well under one. The compiled code reads
    arrays unchecked, so shapes and indices are checked here and there: a mismatch is a ValueError naming
    the argument, not a row read from outside the arrays.
    """
    holder = np.ascontiguousarray(holder_X, dtype=np.float64)
    est_spend = np.ascontiguousarray(est_spend_by_category, dtype=np.float64)
    n = len(pair_benefit)
    holder_rows = np.ascontiguousarray(pair_holder, dtype=np.int64)
    benefit_rows = np.ascontiguousarray(pair_benefit, dtype=np.int64)
    base_rate = np.ascontiguousarray(pair_base_earn_rate, dtype=np.float64)
    history = np.ascontiguousarray(pair_history, dtype=np.float64)
    call_reason = np.ascontiguousarray(pair_call_reason, dtype=np.float64)
    rank = np.ascontiguousarray(pair_rank, dtype=np.float64)
    for name, array, shape in (
        ("pair_benefit", benefit_rows, (n,)),
        ("pair_holder", holder_rows, (n,)),
        ("pair_base_earn_rate", base_rate, (n,)),
        ("pair_history", history, (n, len(HISTORY_COLUMNS))),
        ("pair_call_reason", call_reason, (n,)),
        ("pair_rank", rank, (n,)),
    ):
        if array.shape != shape and not (n == 0 and array.size == 0):
            raise ValueError(f"`{name}` must have shape {shape} (one entry per pair), got {array.shape}")
    if holder.ndim != 2 or est_spend.shape != (len(holder), _N_CATEGORIES):
        raise ValueError(
            f"`holder_X` must be 2-D and `est_spend_by_category` ({len(holder)}, {_N_CATEGORIES}); got shapes "
            f"{holder.shape} and {est_spend.shape}"
        )
    return fill_candidate_matrix(
        tables,
        holder,
        est_spend,
        holder_rows,
        benefit_rows,
        base_rate,
        history.reshape(n, len(HISTORY_COLUMNS)),
        call_reason,
        rank,
    )


def fill_candidate_matrix(
    tables: PairTables,
    holder_X: FloatArray,
    est_spend_by_category: FloatArray,
    pair_holder: IntArray,
    pair_benefit: IntArray,
    pair_base_earn_rate: FloatArray,
    pair_history: FloatArray,
    pair_call_reason: FloatArray,
    pair_rank: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """`assemble_candidate_matrix` without its conversions and shape checks, for a caller whose arrays are
    already what those make of them: C-contiguous float64 (int64 for the pairs' holders and benefits), one
    entry (or one row of HISTORY_COLUMNS) per pair, `est_spend_by_category` one row per `holder_X` row. The
    engine builds such arrays itself on every call. A holder or benefit index out of range is still a
    ValueError.
    """
    holder, holder_rows, benefit_rows = holder_X, pair_holder, pair_benefit
    n = len(benefit_rows)
    X = np.empty((n, holder.shape[1] + len(PAIR_FEATURES)))
    value = np.empty(n)
    bad = _assemble(
        holder,
        est_spend_by_category,
        holder_rows,
        benefit_rows,
        pair_base_earn_rate,
        pair_history,
        pair_call_reason,
        pair_rank,
        tables.benefit_values,
        tables.benefit_flags,
        tables.holder_block_columns,
        float(tables.point_value_usd),
        X,
        value,
    )
    if bad == _NARROW_HOLDER:
        raise ValueError(
            f"`holder_X` has {holder.shape[1]} columns; the tables read per-category columns up to "
            f"{int(tables.holder_block_columns.max())}"
        )
    if bad >= 0:
        raise ValueError(
            f"pair {bad}: `pair_holder` {int(holder_rows[bad])} must be a row of `holder_X` "
            f"(0–{len(holder) - 1}) and `pair_benefit` {int(benefit_rows[bad])} a benefit of the "
            f"tables (0–{len(tables.benefit_values) - 1})"
        )
    return X, value


# numpy's pairwise summation adds fewer than 8 values one after another and a row of 8 to 128 in eight
# running sums (`pairwise_sum` in numpy's loops_utils.h); `sum_like_numpy` adds in that order, so the
# compiled rows carry the same last bits as the numpy sums the first models were trained on.
_PAIRWISE_BLOCK: Final = 128
assert _N_CATEGORIES <= _PAIRWISE_BLOCK, "sum_like_numpy follows numpy's order for up to 128 values only"


@compiled
def sum_like_numpy(values: FloatArray) -> float:
    """`values.sum()` as numpy adds a contiguous row of up to 128 float64 values (ValueError past that:
    numpy then splits the row in halves, which this does not follow)."""
    n = values.shape[0]
    if n > _PAIRWISE_BLOCK:
        raise ValueError("sum_like_numpy follows numpy's order for up to 128 values only")
    if n < 8:
        small = 0.0
        for i in range(n):
            small += values[i]
        return small
    r0, r1, r2, r3, r4, r5, r6, r7 = (
        values[0],
        values[1],
        values[2],
        values[3],
        values[4],
        values[5],
        values[6],
        values[7],
    )
    whole = n - n % 8
    for i in range(8, whole, 8):
        r0 += values[i]
        r1 += values[i + 1]
        r2 += values[i + 2]
        r3 += values[i + 3]
        r4 += values[i + 4]
        r5 += values[i + 5]
        r6 += values[i + 6]
        r7 += values[i + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(whole, n):
        total += values[i]
    return float(total)


@compiled
def _pair_value(
    is_earn_rate: bool,
    is_credit: bool,
    extra_earn_rate: float,
    credit_usd: float,
    nominal_value_usd: float,
    point_value_usd: float,
    est_spend_usd: float,
    reference_spend_usd: float,
    has_reference: bool,
) -> float:
    """Yearly dollar value of a (cardholder, benefit) pair to the cardholder: the one definition of it.

    earn_rate: estimated yearly spend in its categories × extra points per dollar × point value;
    statement_credit: the credit, up to the yearly spend it can be used on; perk and protection:
    the catalog's nominal value × how much the cardholder spends in its categories relative to a
    typical cardholder who spends there (`reference_spend_usd`, learned with the estimator), capped at 1.
    Comparisons treat NaN as numpy's minimum does (a NaN on the left wins).
    """
    if is_earn_rate:
        return est_spend_usd * extra_earn_rate * point_value_usd
    if is_credit:
        return credit_usd if credit_usd <= est_spend_usd or math.isnan(credit_usd) else est_spend_usd
    relevance = est_spend_usd / reference_spend_usd if has_reference else 0.0
    return nominal_value_usd * (relevance if relevance <= 1.0 or math.isnan(relevance) else 1.0)


@compiled
def _assemble(
    holder_X: FloatArray,
    est_spend: FloatArray,
    pair_holder: IntArray,
    pair_benefit: IntArray,
    pair_base_earn_rate: FloatArray,
    pair_history: FloatArray,
    pair_call_reason: FloatArray,
    pair_rank: FloatArray,
    benefit_values: FloatArray,
    benefit_flags: BoolArray,
    block_columns: IntArray,
    point_value_usd: float,
    X: FloatArray,
    value: FloatArray,
) -> int:
    """Fills X (the cardholder's columns, then PAIR_FEATURES) and value, one pair at a time; returns -1,
    or the first pair whose holder or benefit index is out of range (rows before it are filled), or
    _NARROW_HOLDER when holder_X lacks a column `block_columns` names (nothing filled).

    The per-category sums count a missing spend, count or share as 0 and clip ±inf to ±largest float;
    the estimate is taken as it is. `benefit_days_since` is the least days since a purchase in the
    benefit's categories, NaN when none has one or when the least is not finite.
    """
    n_holder = holder_X.shape[1]
    if block_columns.size and (block_columns.max() >= n_holder or block_columns.min() < 0):
        return _NARROW_HOLDER
    products = np.empty((_EST_SPEND + 1, _N_CATEGORIES))
    for i in range(pair_benefit.shape[0]):
        h = pair_holder[i]
        b = pair_benefit[i]
        if not (0 <= h < holder_X.shape[0] and 0 <= b < benefit_values.shape[0]):
            return i
        for column in range(n_holder):
            X[i, column] = holder_X[h, column]
        for c in range(_N_CATEGORIES):
            mask = benefit_values[b, _CATEGORY_MASK_START + c]
            for kind in range(_EST_SPEND):
                x = holder_X[h, block_columns[kind, c]]
                if math.isnan(x):
                    x = 0.0
                x = min(max(x, -_LARGEST), _LARGEST)
                products[kind, c] = x * mask
            products[_EST_SPEND, c] = est_spend[h, c] * mask
        days = np.nan
        for c in range(_N_CATEGORIES):
            if benefit_flags[b, _COVERS_START + c]:
                x = holder_X[h, block_columns[_DAYS_SINCE, c]]
                if math.isnan(days) or x < days:  # np.fmin: a NaN gives way to a number
                    days = x
        if math.isinf(days):
            days = np.nan
        gap = benefit_values[b, _EARN_RATE] - pair_base_earn_rate[i]
        extra_earn_rate = gap if gap >= 0.0 or math.isnan(gap) else 0.0  # np.maximum(gap, 0.0)
        est_annual_spend = sum_like_numpy(products[_EST_SPEND])
        pair_value = _pair_value(
            benefit_flags[b, _IS_EARN_RATE],
            benefit_flags[b, _IS_CREDIT],
            extra_earn_rate,
            benefit_values[b, _ANNUAL_CREDIT],
            benefit_values[b, _NOMINAL_VALUE],
            point_value_usd,
            est_annual_spend,
            benefit_values[b, _REFERENCE],
            benefit_flags[b, _HAS_REFERENCE],
        )
        value[i] = pair_value
        pair = n_holder
        for column in range(_N_CATALOG_COLUMNS):
            X[i, pair + column] = benefit_values[b, column]
        X[i, pair + _CALL_REASON] = pair_call_reason[i]
        X[i, pair + _RANK] = pair_rank[i]
        X[i, pair + _EARN_UPLIFT] = extra_earn_rate if benefit_flags[b, _HAS_EARN_RATE] else 0.0
        for kind in range(_EST_SPEND):
            X[i, pair + _CATEGORY_SUMS_START + kind] = sum_like_numpy(products[kind])
        X[i, pair + _DAYS] = days
        X[i, pair + _EST_ANNUAL_SPEND] = est_annual_spend
        X[i, pair + _EST_ANNUAL_VALUE] = pair_value
        for column in range(pair_history.shape[1]):
            X[i, pair + _HISTORY_START + column] = pair_history[i, column]
    return -1


def call_reason_code(call_reason: str | None) -> float:
    """The code of a call reason in the model's input (NaN when unknown or not recorded)."""
    return float(CALL_REASONS.index(call_reason)) if call_reason in CALL_REASONS else float("nan")
