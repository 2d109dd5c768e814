"""Synthetic world, fixed parts: a catalog, an as-of and an MCC map → catalog arrays, calendar, MCC sampler."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from nba.contract import Catalog, MccMap
from nba.errors import DataError
from nba.vocab import (
    BENEFIT_KINDS,
    CALL_REASONS,
    SENSITIVE_CALL_REASONS,
    SPEND_CATEGORIES,
    TRAVEL_CATEGORIES,
)
from training.synth._counterfactual import _Counterfactual
from training.synth._parameters import (
    _ARCHETYPE_SHARES,
    _DIGITAL_CATEGORIES,
    _EPOCH,
    _N_CATS,
    _RELATED_GROUPS,
    F64,
    HISTORY_MONTHS,
    I64,
    LEGACY_EPSILON,
    LEGACY_POPULARITY,
    MCC_SHARES,
    Bool,
    _cat,
)
from training.synth._truth import RegimeShift, _BenefitView

# --- fixed parts of a world: catalog arrays, calendar, MCC sampler -----------------------------------------


@dataclass(frozen=True)
class _CatalogArrays:
    benefit_ids: tuple[str, ...]
    product_ids: tuple[str, ...]
    member: F64  # (benefits, categories) 1.0 where the benefit names the category
    view: _BenefitView
    earn_rate: F64
    credit_usd: F64
    nominal_usd: F64
    presentable: Bool  # (benefits, call reasons)
    affinity_weights: F64  # (benefits, categories)
    affinity_base: F64
    popularity: F64
    product_slots: I64  # (products, max benefits per product), −1 padded
    product_base_rate: F64
    product_fee_usd: F64
    point_value_usd: float


def _catalog_arrays(catalog: Catalog) -> _CatalogArrays:
    benefits = catalog.benefits
    member = np.zeros((len(benefits), _N_CATS))
    for i, benefit in enumerate(benefits):
        for category in benefit.spend_categories:
            member[i, _cat(category)] = 1.0
    presentable = np.zeros((len(benefits), len(CALL_REASONS)), dtype=bool)
    for i, benefit in enumerate(benefits):
        for j, reason in enumerate(CALL_REASONS):
            allowed = reason in benefit.suitable_call_reasons or reason not in SENSITIVE_CALL_REASONS
            presentable[i, j] = allowed and reason not in benefit.unsuitable_call_reasons
    related = np.zeros((_N_CATS, _N_CATS))
    for group, weight in _RELATED_GROUPS:
        index = [_cat(c) for c in group]
        related[np.ix_(index, index)] += weight
    np.fill_diagonal(related, 0.0)
    weights = (member @ related) * (1.0 - member)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    mean_shares = _ARCHETYPE_SHARES.mean(axis=0)
    kind = np.array([BENEFIT_KINDS.index(b.kind) for b in benefits], dtype=np.int8)
    width = max(len(p.benefits) for p in catalog.products)
    slots = np.full((len(catalog.products), width), -1, dtype=np.int64)
    position = {b.id: i for i, b in enumerate(benefits)}
    for p, product in enumerate(catalog.products):
        slots[p, : len(product.benefits)] = [position[b] for b in product.benefits]
    return _CatalogArrays(
        benefit_ids=tuple(b.id for b in benefits),
        product_ids=tuple(p.id for p in catalog.products),
        member=member,
        view=_BenefitView(
            kind=kind,
            enroll=np.array([b.requires_enrollment for b in benefits]),
            travel=np.array([bool(set(b.spend_categories) & TRAVEL_CATEGORIES) for b in benefits]),
            digital=np.array([bool(set(b.spend_categories) & _DIGITAL_CATEGORIES) for b in benefits]),
            typical_log_value=np.zeros(len(benefits)),  # both set by _calibrate_truth
            typical_log_share=np.zeros(len(benefits)),
        ),
        earn_rate=np.array([b.earn_rate or 0.0 for b in benefits]),
        credit_usd=np.array([b.annual_credit_usd or 0.0 for b in benefits]),
        nominal_usd=np.array([b.nominal_value_usd or 0.0 for b in benefits]),
        presentable=presentable,
        affinity_weights=weights,
        affinity_base=weights @ mean_shares,
        popularity=np.array([LEGACY_POPULARITY[k] for k in BENEFIT_KINDS])[kind],
        product_slots=slots,
        product_base_rate=np.array([p.base_earn_rate for p in catalog.products]),
        product_fee_usd=np.array([p.annual_fee_usd for p in catalog.products]),
        point_value_usd=catalog.point_value_usd,
    )


@dataclass(frozen=True)
class _Calendar:
    """Day numbers (days since 1970-01-01) of the history window and per-category seasonal day weights."""

    start_day: int
    as_of_day: int
    day_cdf: F64  # per category, cumulative weight of days [start, as_of), offset by 2 × category
    month_start_days: I64

    @property
    def span_days(self) -> int:
        return self.as_of_day - self.start_day

    def draw_days(self, rng: np.random.Generator, category: npt.NDArray[np.integer], first_day: I64) -> I64:
        """Random days in [first_day, as_of) with the category's seasonality (first_day ≥ start_day)."""
        stride = self.span_days + 1
        base = category.astype(np.int64) * stride
        low = self.day_cdf[base + (first_day - self.start_day)]
        high = self.day_cdf[base + self.span_days]
        target = low + rng.random(len(category)) * (high - low)
        index = np.searchsorted(self.day_cdf, target, side="right") - 1
        day: I64 = np.minimum(index - base, self.span_days - 1) + self.start_day
        return day


def _months_before(day: date, months: int) -> date:
    month = day.year * 12 + day.month - 1 - months
    return date(month // 12, month % 12 + 1, 1)


def _calendar(as_of: date) -> _Calendar:
    start = _months_before(as_of, HISTORY_MONTHS)
    start_day, as_of_day = (start - _EPOCH).days, (as_of - _EPOCH).days
    days = np.arange(start_day, as_of_day)
    day_of_year = np.array(
        [(d - date(d.year, 1, 1)).days for d in (start + timedelta(int(i)) for i in days - start_day)]
    )
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weights = np.ones((_N_CATS, len(days)))
    travel = (
        1
        + 0.35 * np.cos(2 * np.pi * (day_of_year - 195) / 365.25)
        + 0.3 * np.exp(-(((day_of_year - 356) / 10) ** 2))
    )
    holiday_shopping = 1 + 0.8 * np.exp(-(((day_of_year - 340) / 16) ** 2))
    for category in TRAVEL_CATEGORIES:
        weights[_cat(category)] = travel
    for category in ("general_retail", "online_retail"):
        weights[_cat(category)] = holiday_shopping
    for category in ("dining", "entertainment"):
        weights[_cat(category)] = np.where(np.isin(weekday, (4, 5)), 1.35, 1.0)
    weights[_cat("groceries")] = np.where(np.isin(weekday, (5, 6)), 1.25, 1.0)
    cumulative = np.concatenate([np.zeros((_N_CATS, 1)), np.cumsum(weights, axis=1)], axis=1)
    cumulative /= cumulative[:, -1:]
    cumulative += 2.0 * np.arange(_N_CATS)[:, None]
    month_starts, cursor = [], start
    while cursor < as_of:
        month_starts.append((cursor - _EPOCH).days)
        cursor = _months_before(cursor, -1)
    return _Calendar(start_day, as_of_day, cumulative.ravel(), np.array(month_starts, dtype=np.int64))


@dataclass(frozen=True)
class _MccSampler:
    """Draws a real MCC for each transaction of a category, with the category's skew."""

    codes: npt.NDArray[np.int32]
    cdf: F64  # category c's cumulative shares, offset by c, so one searchsorted serves all categories

    def draw(self, rng: np.random.Generator, category: npt.NDArray[np.integer]) -> npt.NDArray[np.int32]:
        index = np.searchsorted(self.cdf, category + rng.random(len(category)), side="right")
        return self.codes[np.minimum(index, len(self.codes) - 1)]


def _mcc_sampler(mcc_map: MccMap) -> _MccSampler:
    codes: list[int] = []
    cdf: list[float] = []
    for c, category in enumerate(SPEND_CATEGORIES):
        shares = {
            code: share
            for code, share in MCC_SHARES[category].items()
            if mcc_map.category_of(code) == category
        }
        if not shares:
            raise DataError(f"the MCC map puts none of the codes used for {category!r} in that category")
        cumulative = np.cumsum(np.array(list(shares.values()), dtype=np.float64))
        cumulative /= cumulative[-1]
        cumulative[-1] = 1.0
        codes.extend(shares)
        cdf.extend(c + cumulative)
    return _MccSampler(np.array(codes, dtype=np.int32), np.array(cdf))


@dataclass(frozen=True)
class _World:
    """Everything that is the same for every chunk of one world."""

    catalog: _CatalogArrays
    calendar: _Calendar
    mcc: _MccSampler
    agent_effect: F64
    agent_not_discussed: F64
    product_constant: F64
    id_width: int
    shift: RegimeShift | None = None
    launch_day: I64 | None = None  # per benefit: the first day it exists (regime-shift worlds only)
    choice_slots: I64 | None = None  # product slots people chose their card by (without launched benefits)
    counterfactual: _Counterfactual | None = None  # counterfactual worlds only (`--uplift-mix`)
    exploration_rate: float = LEGACY_EPSILON  # the legacy policy's ε: calls shown in a random order

    def choice_catalog(self) -> _CatalogArrays:
        """The catalog as people saw it when they chose their card: launched benefits were not on it."""
        if self.choice_slots is None:
            return self.catalog
        return dataclasses.replace(self.catalog, product_slots=self.choice_slots)
