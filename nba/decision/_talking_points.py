"""Talking points: a benefit's template + the cardholder's numbers → a sentence an agent can say."""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from nba.contract._catalog import Benefit, Product

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


def format_usd(amount: float, estimate: bool = False) -> str:
    """Money as a person says it: '$412' for what was spent; estimates rounded ('$3,100', '$90', '$7').

    Estimates are rounded to two significant figures from $100 up (a model's figure is not
    precise to the dollar, and saying so would mislead); amounts actually spent are whole dollars.
    """
    if not math.isfinite(amount):
        raise ValueError(f"`amount` must be a finite number, got {amount}")
    value = abs(amount)
    if estimate and value >= 100:
        digits = math.floor(math.log10(value)) - 1
        value = round(value, -digits)
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
    return f"Your {product.name} includes {benefit.name[0].lower() + benefit.name[1:]}, at no extra cost."


def render_talking_point(
    benefit: Benefit, product: Product, numbers: TalkingPointNumbers
) -> tuple[str, bool]:
    """The benefit's talking point filled with the cardholder's numbers, and whether the template was used.

    A template that needs a number this cardholder does not have falls back to a generic sentence,
    never to a visible {placeholder}.

    Example:
        >>> render_talking_point(dining_4x, gold, TalkingPointNumbers(est_annual_spend_usd=3112.4, ...))
        ('Your Gold Dining Card earns 4x points at restaurants. ... about $3,100 a year on dining; ...', True)
    """
    values: dict[str, str] = {}
    for field in _fields_of(benefit.talking_point):
        filler = _FILLERS.get(field)
        value = filler(benefit, product, numbers) if filler is not None else None
        if value is None:
            return generic_sentence(benefit, product), False
        values[field] = value
    return benefit.talking_point.format_map(values), True
