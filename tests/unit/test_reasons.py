"""Reasons: feature names and values → plain phrases, at most three, no repeats; about the cardholder once
for the call, about each benefit on its card."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from nba.decision._reasons import (
    CallReasons,
    Reasoner,
    _said_once,
    benefit_words,
    feature_category,
    phrase_for,
)
from nba.model._attribution import PathAttributor
from nba.vocab import SPEND_CATEGORIES


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("spend_air_travel_90d_usd", 300.0, "spends on flights"),
        ("days_since_lodging", 4.0, "bought hotels recently"),
        ("trend_groceries", 0.2, "groceries spend is rising"),
        ("tenure_months", 3.0, "new cardholder"),
        ("tenure_months", 60.0, "long-standing cardholder"),
        ("declined_60d", 0.0, "not offered this recently"),
        ("est_annual_value_usd", 93.0, "their dining out spend makes it worth a lot"),
        ("benefit_spend_90d_usd", 120.0, "already spends on dining out with this card"),
        ("benefit_days_since", 3.0, "bought dining out recently"),
        ("annual_credit_usd", 120.0, "a dining out credit left unused"),
        ("call_reason", 4.0, "about to travel"),
        ("call_reason", 5.0, "asked about their rewards"),
    ],
)
def test_phrases(name: str, value: float, phrase: str) -> None:
    assert phrase_for(name, value, "dining out") == phrase


def test_features_that_say_nothing_useful_give_no_phrase() -> None:
    assert phrase_for("declined_60d", 2.0) is None
    assert phrase_for("region", 1.0) is None
    assert phrase_for("rank", 1.0) is None
    assert phrase_for("call_reason", 1.0) is None  # a payment call makes no benefit timely
    # "people like them often take this up", "what their card is built for", "fits their stage of life"
    for name in ("benefit_id", "benefit_kind", "product_id", "age_years"):
        assert phrase_for(name, 1.0) is None
    assert phrase_for("trend_dining", -0.3) is None and phrase_for("days_since_dining", 200.0) is None


def test_a_benefits_categories_in_the_agents_words() -> None:
    def mask(*names: str) -> np.ndarray:
        return np.array([c in names for c in SPEND_CATEGORIES])

    assert benefit_words(mask("dining")) == "dining out"
    assert benefit_words(mask("air_travel", "lodging")) == "flights and hotels"
    assert benefit_words(mask("air_travel", "lodging", "car_rental", "travel_agency")) == "travel"
    assert (
        benefit_words(mask("general_retail", "online_retail", "home_improvement"))
        == "shopping and home improvement"
    )


def test_each_phrase_is_said_once_in_a_call() -> None:
    cards = [["a", "shared", "b"], ["shared", "a", "c"], ["shared", "d"]]
    said = _said_once(cards, ["new cardholder"])
    # Every card's phrase goes above the cards, with the cardholder's; one of two cards stays on the first.
    assert said == CallReasons(("shared", "new cardholder"), (("a", "b"), ("c",), ("d",)))
    # One card: nothing is shared, the cardholder's reasons still go above it.
    assert _said_once([["a", "b"]], ["new cardholder"]) == CallReasons(("new cardholder",), (("a", "b"),))


def test_reasoner_gives_up_to_three_distinct_phrases_per_chosen_row() -> None:
    rng = np.random.default_rng(0)
    names = ["spend_dining_90d_usd", "spend_dining_365d_usd", "tenure_months", "noise"]
    X = rng.normal(size=(2000, 4)) * [200, 800, 24, 1] + [300, 1200, 36, 0]
    y = (X[:, 0] + X[:, 1] / 4 - 10 * X[:, 2] + rng.normal(size=2000) * 100 > 300).astype(float)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "seed": 0}, lgb.Dataset(X, y, feature_name=names), 30
    )
    reasoner = Reasoner(PathAttributor.from_booster(booster), names)
    reasons = reasoner(X, np.array([0, 5, 9]))
    assert len(reasons.cards) == 3
    for phrases in reasons.cards:
        assert len(phrases) <= 3 and len(set(phrases)) == len(phrases)
        assert set(phrases) <= {"spends on dining out"}
    # The cardholder's tenure is no reason for one benefit more than another: it is said for the call.
    assert set(reasons.call) <= {"spends on dining out", "new cardholder", "long-standing cardholder"}
    assert reasons.call and len(set(reasons.call)) == len(reasons.call) <= 3
    assert reasoner(X, np.array([], dtype=np.int64)) == CallReasons((), ())


def test_spend_in_another_category_is_no_reason_for_a_benefit() -> None:
    rng = np.random.default_rng(1)
    names = ["spend_dining_90d_usd", "spend_gas_90d_usd", "tenure_months"]
    X = rng.gamma(2.0, 150.0, size=(3000, 3)) * [1, 1, 0.1]
    y = (X[:, 0] + 2 * X[:, 1] + rng.normal(size=3000) * 150 > 900).astype(float)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "seed": 0}, lgb.Dataset(X, y, feature_name=names), 30
    )
    reasoner = Reasoner(PathAttributor.from_booster(booster), names)
    chosen = np.flatnonzero(X[:, 1] > 500)[:20]
    assert len(chosen) == 20
    # Unfiltered, fuel spend is what pushes these rows up the most.
    said = [reasoner(X, chosen[i : i + 1]) for i in range(len(chosen))]  # one card per call
    assert all("spends on fuel" in reasons.cards[0] for reasons in said)
    dining_only = np.zeros((len(chosen), len(SPEND_CATEGORIES)), dtype=bool)
    dining_only[:, SPEND_CATEGORIES.index("dining")] = True
    for phrases in reasoner(X, chosen, dining_only).cards:
        assert "spends on fuel" not in phrases
    no_categories = np.zeros_like(dining_only)
    for phrases in reasoner(X, chosen, no_categories).cards:
        assert not any(phrase.startswith("spends on") for phrase in phrases)


@pytest.mark.parametrize(
    ("name", "category"),
    [("spend_gas_90d_usd", "gas"), ("days_since_lodging", "lodging"), ("share_other_365d", "other")],
)
def test_feature_category(name: str, category: str) -> None:
    assert feature_category(name) == SPEND_CATEGORIES.index(category)
    assert feature_category("spend_total_90d_usd") == -1 and feature_category("benefit_spend_90d_usd") == -1
