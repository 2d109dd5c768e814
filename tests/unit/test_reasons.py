"""Reasons: feature names and values → plain phrases, at most three, no repeats."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from nba.decision._reasons import Reasoner, feature_category, phrase_for
from nba.model._attribution import PathAttributor
from nba.vocab import SPEND_CATEGORIES


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("spend_air_travel_90d_usd", 300.0, "spends on flights"),
        ("days_since_lodging", 4.0, "spends on hotels"),
        ("trend_groceries", 0.2, "spends on groceries"),
        ("tenure_months", 3.0, "new cardholder"),
        ("tenure_months", 60.0, "long-standing cardholder"),
        ("declined_60d", 0.0, "not offered this recently"),
        ("est_annual_value_usd", 93.0, "worth a lot to them"),
        ("call_reason", 4.0, "about to travel"),
        ("call_reason", 5.0, "asked about their rewards"),
    ],
)
def test_phrases(name: str, value: float, phrase: str) -> None:
    assert phrase_for(name, value) == phrase


def test_features_that_say_nothing_useful_give_no_phrase() -> None:
    assert phrase_for("declined_60d", 2.0) is None
    assert phrase_for("region", 1.0) is None
    assert phrase_for("rank", 1.0) is None
    assert phrase_for("call_reason", 1.0) is None  # a payment call makes no benefit timely


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
    assert len(reasons) == 3
    for phrases in reasons:
        assert len(phrases) <= 3 and len(set(phrases)) == len(phrases)
        assert set(phrases) <= {"spends on dining out", "new cardholder", "long-standing cardholder"}
    assert reasoner(X, np.array([], dtype=np.int64)) == []


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
    assert all("spends on fuel" in phrases for phrases in reasoner(X, chosen))
    dining_only = np.zeros((len(chosen), len(SPEND_CATEGORIES)), dtype=bool)
    dining_only[:, SPEND_CATEGORIES.index("dining")] = True
    for phrases in reasoner(X, chosen, dining_only):
        assert "spends on fuel" not in phrases
    no_categories = np.zeros_like(dining_only)
    for phrases in reasoner(X, chosen, no_categories):
        assert not any(phrase.startswith("spends on") for phrase in phrases)


@pytest.mark.parametrize(
    ("name", "category"),
    [("spend_gas_90d_usd", "gas"), ("days_since_lodging", "lodging"), ("share_other_365d", "other")],
)
def test_feature_category(name: str, category: str) -> None:
    assert feature_category(name) == SPEND_CATEGORIES.index(category)
    assert feature_category("spend_total_90d_usd") == -1 and feature_category("benefit_spend_90d_usd") == -1
