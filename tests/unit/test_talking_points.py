"""Talking points: templates filled with the cardholder's numbers, said as a person would, never a raw {placeholder}."""

from __future__ import annotations

import re

import pytest

from nba.contract._catalog import load_catalog
from nba.decision._talking_points import (
    TalkingPointNumbers,
    category_words,
    format_rate,
    format_usd,
    render_talking_point,
    round_estimate_usd,
)


@pytest.mark.parametrize(
    ("amount", "estimate", "text"),
    [
        (412.49, False, "$412"),
        (3112.4, True, "$3,100"),
        (3150.0, True, "$3,200"),
        (93.4, True, "$93"),
        (187.0, True, "$190"),
        (12_345.0, False, "$12,345"),
        (0.4, False, "$0"),
        (-20.0, False, "-$20"),
    ],
)
def test_money_is_said_as_a_person_would(amount: float, estimate: bool, text: str) -> None:
    assert format_usd(amount, estimate) == text


def test_rates_and_categories() -> None:
    assert format_rate(4.0) == "4" and format_rate(1.5) == "1.5"
    assert category_words("air_travel") == "flights"


def test_template_is_filled_with_the_cardholders_numbers() -> None:
    catalog = load_catalog()
    dining = catalog.benefit_by_id["dining_4x"]
    gold = catalog.product_by_id["gold"]
    text, used = render_talking_point(
        dining, gold, TalkingPointNumbers(est_annual_spend_usd=3112.4, est_annual_value_usd=93.37)
    )
    assert used
    assert text == (
        "Spends ~$3,100 a year dining out; the card earns 4x at restaurants: ~$93 a year in points for them."
    )


def test_missing_number_falls_back_to_a_generic_sentence() -> None:
    catalog = load_catalog()
    dining = catalog.benefit_by_id["dining_4x"]
    gold = catalog.product_by_id["gold"]
    for numbers in (
        TalkingPointNumbers(),
        TalkingPointNumbers(est_annual_spend_usd=0.0, est_annual_value_usd=0.0),
    ):
        text, used = render_talking_point(dining, gold, numbers)
        assert not used
        assert text == "The Gold Dining Card includes 4x points at restaurants, at no extra cost."


def test_no_template_in_the_default_catalog_leaves_a_placeholder() -> None:
    catalog = load_catalog()
    full = TalkingPointNumbers(100.0, 400.0, 2500.0, 75.0, "dining", 300.0)
    for product in catalog.products:
        for benefit in catalog.benefits_of(product.id):
            text, used = render_talking_point(benefit, product, full)
            assert used, benefit.id
            assert not re.search(r"[{}]", text), text
            assert "$0 " not in text


@pytest.mark.parametrize(
    ("amount", "shown"),
    [(102.4, 100.0), (3112.4, 3100.0), (99.6, 100.0), (7.6, 8.0), (12.49, 12.0), (0.456, 0.46), (0.0, 0.0)],
)
def test_an_estimate_is_rounded_once_and_saying_it_does_not_round_it_again(
    amount: float, shown: float
) -> None:
    assert round_estimate_usd(amount) == shown
    assert round_estimate_usd(shown) == shown
    assert format_usd(amount, estimate=True) == format_usd(shown, estimate=True)


# Words that speak to the cardholder rather than about them.
_SECOND_PERSON = re.compile(r"\b(you|your|yours|you're)\b", re.IGNORECASE)


def test_default_templates_are_third_person_notes_that_state_the_value_once() -> None:
    catalog = load_catalog()
    for benefit in catalog.benefits:
        template = benefit.talking_point
        assert not _SECOND_PERSON.search(template), (benefit.id, template)
        assert template.count("{est_annual_value_usd}") == 1, benefit.id
        # The catalog's nominal value beside the cardholder's would be two numbers for one fact.
        assert "{nominal_value_usd}" not in template, benefit.id
        # Facts first: a note opens with what the cardholder spends (estimated) or spent (on the card).
        assert template.startswith(("Spends ~{est_annual_spend_usd} a year", "Spent {spend_90d_usd} ")), (
            benefit.id
        )
        assert len(template) <= 220, (benefit.id, len(template))
