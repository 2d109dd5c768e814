"""Talking points: a benefit's template + the cardholder's numbers → a sentence an agent can say."""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Final

from nba.catalog import Benefit, Product

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


def _fill_values(benefit: Benefit, product: Product, numbers: TalkingPointNumbers) -> dict[str, str | None]:
    def money(value: float | None, estimate: bool) -> str | None:
        # An estimate of zero would read as "about $0 a year": say nothing rather than that.
        if value is None or not math.isfinite(value) or (estimate and value < 1):
            return None
        return format_usd(value, estimate)

    return {
        "benefit_name": benefit.name,
        "product_name": product.name,
        "earn_rate": format_rate(benefit.earn_rate) if benefit.earn_rate is not None else None,
        "annual_credit_usd": money(benefit.annual_credit_usd, False),
        "nominal_value_usd": money(benefit.nominal_value_usd, True),
        "spend_90d_usd": money(numbers.spend_90d_usd, False),
        "spend_365d_usd": money(numbers.spend_365d_usd, False),
        "est_annual_spend_usd": money(numbers.est_annual_spend_usd, True),
        "est_annual_value_usd": money(numbers.est_annual_value_usd, True),
        "top_category": category_words(numbers.top_category) if numbers.top_category else None,
        "top_category_spend_90d_usd": money(numbers.top_category_spend_90d_usd, False),
    }


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
    values = _fill_values(benefit, product, numbers)
    needed = [field for _, field, _, _ in string.Formatter().parse(benefit.talking_point) if field]
    if any(values.get(field) is None for field in needed):
        return generic_sentence(benefit, product), False
    return benefit.talking_point.format_map({k: v for k, v in values.items() if v is not None}), True
