"""Candidate matrix: cardholder features + benefit + history + spend estimates → the model's input rows.

One function builds the rows for training (thousands of presentations at their own dates) and for
serving (one cardholder's candidates at once), so the model always sees features computed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from nba.catalog import Catalog
from nba.vocab import BENEFIT_KINDS, CALL_REASONS, CATEGORY_INDEX, SPEND_CATEGORIES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

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


def estimate_value_usd(
    benefits: BenefitTable,
    benefit_index: IntArray,
    base_earn_rate: FloatArray,
    est_spend_usd: FloatArray,
    reference_spend_usd: FloatArray,
) -> FloatArray:
    """Yearly dollar value of each (cardholder, benefit) pair to the cardholder.

    earn_rate: estimated yearly spend in its categories × extra points per dollar × point value;
    statement_credit: the credit, up to the yearly spend it can be used on; perk and protection:
    the catalog's nominal value × how much the cardholder spends in its categories relative to a
    typical cardholder who spends there (`reference_spend_usd`, learned with the estimator), capped at 1.
    """
    kind = benefits.kind_code[benefit_index]
    uplift = np.maximum(benefits.earn_rate[benefit_index] - base_earn_rate, 0.0)
    earn = est_spend_usd * uplift * benefits.point_value_usd
    credit = np.minimum(benefits.annual_credit_usd[benefit_index], est_spend_usd)
    relevance = np.divide(
        est_spend_usd, reference_spend_usd, out=np.zeros_like(est_spend_usd), where=reference_spend_usd > 0
    )
    nominal = benefits.nominal_value_usd[benefit_index] * np.minimum(relevance, 1.0)
    value: FloatArray = np.select(
        [kind == BENEFIT_KINDS.index("earn_rate"), kind == BENEFIT_KINDS.index("statement_credit")],
        [earn, credit],
        default=nominal,
    )
    return value


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
    """
    mask = benefits.category_mask[pair_benefit]
    holder = holder_X[pair_holder]
    spend_90d = np.nan_to_num(holder[:, holder_columns.spend_90d])
    spend_365d = np.nan_to_num(holder[:, holder_columns.spend_365d])
    tx_365d = np.nan_to_num(holder[:, holder_columns.tx_365d])
    share_365d = np.nan_to_num(holder[:, holder_columns.share_365d])
    days_since = holder[:, holder_columns.days_since]
    # Days since the last purchase in any of the benefit's categories: NaN (never) stays NaN.
    masked_days = np.where((mask > 0) & ~np.isnan(days_since), days_since, np.inf)
    benefit_days = np.min(masked_days, axis=1)
    benefit_days[~np.isfinite(benefit_days)] = np.nan
    est_spend = (est_spend_by_category[pair_holder] * mask).sum(axis=1)
    reference = (reference_spend_by_category[None, :] * mask).sum(axis=1)
    value = estimate_value_usd(benefits, pair_benefit, pair_base_earn_rate, est_spend, reference)
    earn_rate = benefits.earn_rate[pair_benefit]
    pair = np.column_stack(
        [
            benefit_codes[pair_benefit],
            benefits.kind_code[pair_benefit],
            pair_call_reason,
            pair_rank,
            np.where(earn_rate > 0, np.maximum(earn_rate - pair_base_earn_rate, 0.0), 0.0),
            benefits.annual_credit_usd[pair_benefit],
            benefits.nominal_value_usd[pair_benefit],
            benefits.requires_enrollment[pair_benefit],
            (spend_90d * mask).sum(axis=1),
            (spend_365d * mask).sum(axis=1),
            (tx_365d * mask).sum(axis=1),
            (share_365d * mask).sum(axis=1),
            benefit_days,
            est_spend,
            value,
            pair_history,
        ]
    )
    return np.hstack([holder, pair]), value


def call_reason_code(call_reason: str | None) -> float:
    """The code of a call reason in the model's input (NaN when unknown or not recorded)."""
    return float(CALL_REASONS.index(call_reason)) if call_reason in CALL_REASONS else float("nan")
