"""Talking points: a benefit's template + the cardholder's numbers → a sentence an agent can say."""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.contract._catalog import Benefit, Product
from nba.features._matrix import sum_like_numpy
from nba.vocab import SPEND_CATEGORIES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_CATEGORY_WORDS: Final[dict[str, str]] = {
    "dining": "dining out",
    "groceries": "groceries",
    "air_travel": "flights",
    "lodging": "hotels",
    "car_rental": "car rentals",
    "transit": "transit and rideshare",
    "travel_agency": "travel bookings",
    "gas": "fuel",
    "streaming_digital": "streaming and digital",
    "general_retail": "shopping",
    "online_retail": "online shopping",
    "entertainment": "entertainment",
    "telecom_utilities": "phone and utilities",
    "health": "health",
    "home_improvement": "home improvement",
    "other": "other purchases",
}


def category_words(category: str) -> str:
    """How a person says a spend category ('air_travel' → 'flights')."""
    return _CATEGORY_WORDS.get(category, category.replace("_", " "))


def round_estimate_usd(amount: float) -> float:
    """An estimate in dollars as it is shown, everywhere: two significant figures from $100 up (a model's
    figure is not precise to the dollar, and saying so would mislead), whole dollars from $1, cents below.

    The one rounding of an estimated value: the engine rounds a suggestion's `value_usd` with it once, and
    the header, the talking point, the panel and `nba recommend` all show that number.

    >>> round_estimate_usd(102.4), round_estimate_usd(3112.4), round_estimate_usd(7.6), round_estimate_usd(0.456)
    (100.0, 3100.0, 8.0, 0.46)
    """
    if not math.isfinite(amount):
        return amount
    value = abs(amount)
    if value >= 100:
        value = round(value, 1 - math.floor(math.log10(value)))
    elif value >= 1:
        value = float(round(value))
    else:
        value = round(value, 2)
    return math.copysign(value, amount)


def format_usd(amount: float, estimate: bool = False) -> str:
    """Money as a person says it: '$412' for what was spent; estimates rounded by `round_estimate_usd`
    ('$3,100', '$90', '$7'); amounts actually spent are whole dollars.
    """
    if not math.isfinite(amount):
        raise ValueError(f"`amount` must be a finite number, got {amount}")
    value = abs(round_estimate_usd(amount) if estimate else amount)
    text = f"${value:,.0f}"
    return f"-{text}" if amount < 0 and round(value) != 0 else text


def format_rate(rate: float) -> str:
    """An earn rate as said: 4.0 → '4', 1.5 → '1.5'."""
    return f"{rate:g}"


@dataclass(frozen=True)
class TalkingPointNumbers:
    """The cardholder's numbers a template may use; None when not known for this cardholder."""

    spend_90d_usd: float | None = None
    spend_365d_usd: float | None = None
    est_annual_spend_usd: float | None = None
    est_annual_value_usd: float | None = None
    top_category: str | None = None
    top_category_spend_90d_usd: float | None = None


def talking_point_numbers(
    holder: FloatArray,
    columns: IntArray,
    est_spend: npt.NDArray[np.float32],
    covers: npt.NDArray[np.bool_],
    values: FloatArray,
) -> list[TalkingPointNumbers]:
    """The cardholder's numbers each shown benefit's talking point may use, all at once.

    Takes the cardholder's feature row `holder` (float64, NaN where missing), the positions in it of the
    spend over 90 and 365 days per spend category (`columns`, 2 × SPEND_CATEGORIES), the estimated yearly
    spend per category on any card (`est_spend`), each shown benefit's categories (`covers`, shown ×
    SPEND_CATEGORIES) and estimated yearly value (`values`). Returns, per shown benefit: spend in its
    categories over 90 and 365 days and the estimated yearly spend there (NaN when a covered category's
    figure is missing; None for a benefit with no categories), the estimated value, and the cardholder's
    top category over 90 days.
    """
    sums, covered, top, top_spend = _talking_point_sums(holder, columns, est_spend, covers)
    top_category = SPEND_CATEGORIES[top] if top_spend > 0 else None
    return [
        TalkingPointNumbers(
            spend_90d_usd=spend[0] if has else None,
            spend_365d_usd=spend[1] if has else None,
            est_annual_spend_usd=spend[2] if has else None,
            est_annual_value_usd=value,
            top_category=top_category,
            top_category_spend_90d_usd=top_spend if top_spend > 0 else None,
        )
        for spend, has, value in zip(sums.tolist(), covered.tolist(), values.tolist(), strict=True)
    ]


@compiled
def _talking_point_sums(
    holder: FloatArray,
    columns: IntArray,
    est_spend: npt.NDArray[np.float32],
    masks: npt.NDArray[np.bool_],
) -> tuple[FloatArray, npt.NDArray[np.bool_], int, float]:
    """Per shown benefit (a row of `masks`): spend 90d, spend 365d and estimated yearly spend summed over
    its categories (NaN when a covered category's figure is missing, added in numpy's order), whether it
    covers any category; and the cardholder's top category over 90 days with its spend (numpy's argmax:
    the first largest, or the first NaN)."""
    n_categories = columns.shape[1]
    series = np.empty((3, n_categories))
    for c in range(n_categories):
        series[0, c] = holder[columns[0, c]]
        series[1, c] = holder[columns[1, c]]
        series[2, c] = est_spend[c]
    sums = np.empty((masks.shape[0], 3))
    covered = np.zeros(masks.shape[0], dtype=np.bool_)
    masked = np.empty(n_categories)
    for b in range(masks.shape[0]):
        for kind in range(3):
            for c in range(n_categories):
                masked[c] = series[kind, c] if masks[b, c] else 0.0
            sums[b, kind] = sum_like_numpy(masked)
        for c in range(n_categories):
            covered[b] |= masks[b, c]
    top = int(np.argmax(series[0]))
    return sums, covered, top, series[0, top]


def _money(value: float | None, estimate: bool) -> str | None:
    # An estimate of zero would read as "about $0 a year": say nothing rather than that.
    if value is None or not math.isfinite(value) or (estimate and value < 1):
        return None
    return format_usd(value, estimate)


# How each placeholder is filled; only the ones a template uses are computed (the request path renders
# three talking points per call).
_FILLERS: Final[dict[str, Callable[[Benefit, Product, TalkingPointNumbers], str | None]]] = {
    "benefit_name": lambda b, p, n: b.name,
    "product_name": lambda b, p, n: p.name,
    "earn_rate": lambda b, p, n: format_rate(b.earn_rate) if b.earn_rate is not None else None,
    "annual_credit_usd": lambda b, p, n: _money(b.annual_credit_usd, False),
    "nominal_value_usd": lambda b, p, n: _money(b.nominal_value_usd, True),
    "spend_90d_usd": lambda b, p, n: _money(n.spend_90d_usd, False),
    "spend_365d_usd": lambda b, p, n: _money(n.spend_365d_usd, False),
    "est_annual_spend_usd": lambda b, p, n: _money(n.est_annual_spend_usd, True),
    "est_annual_value_usd": lambda b, p, n: _money(n.est_annual_value_usd, True),
    "top_category": lambda b, p, n: category_words(n.top_category) if n.top_category else None,
    "top_category_spend_90d_usd": lambda b, p, n: _money(n.top_category_spend_90d_usd, False),
}


@functools.lru_cache(maxsize=1024)
def _fields_of(template: str) -> tuple[str, ...]:
    return tuple(field for _, field, _, _ in string.Formatter().parse(template) if field)


def generic_sentence(benefit: Benefit, product: Product) -> str:
    """What is said when the template cannot be filled for this cardholder."""
    return f"The {product.name} includes {benefit.name[0].lower() + benefit.name[1:]}, at no extra cost."


def render_talking_point(
    benefit: Benefit, product: Product, numbers: TalkingPointNumbers
) -> tuple[str, bool]:
    """The benefit's talking point filled with the cardholder's numbers, and whether the template was used.

    A template that needs a number this cardholder does not have falls back to a generic sentence,
    never to a visible {placeholder}.

    Example:
        >>> render_talking_point(dining_4x, gold, TalkingPointNumbers(est_annual_spend_usd=3112.4, ...))
        ('Spends ~$3,100 a year dining out; the card earns 4x at restaurants: ~$93 a year in points ...', True)
    """
    values: dict[str, str] = {}
    for field in _fields_of(benefit.talking_point):
        filler = _FILLERS.get(field)
        value = filler(benefit, product, numbers) if filler is not None else None
        if value is None:
            return generic_sentence(benefit, product), False
        values[field] = value
    return benefit.talking_point.format_map(values), True
