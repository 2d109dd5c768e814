"""Spend estimator: learns a category's yearly spend from the others, and round-trips through its artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from nba.errors import ModelError
from nba.estimator import SpendEstimator, category_columns
from nba.vocab import CATEGORY_INDEX, SPEND_CATEGORIES


def _names() -> list[str]:
    names = ["tenure_months", "age_years"]
    for c in SPEND_CATEGORIES:
        names += [f"spend_{c}_90d_usd", f"spend_{c}_365d_usd", f"tx_{c}_365d", f"days_since_{c}"]
    names += ["spend_total_365d_usd"]
    return names


def _world(n: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Cardholders whose dining spend is 30% of their grocery spend; half do not dine on this card."""
    rng = np.random.default_rng(seed)
    names = _names()
    index = {name: i for i, name in enumerate(names)}
    X = np.zeros((n, len(names)))
    X[:, index["tenure_months"]] = rng.uniform(13, 120, n)
    X[:, index["age_years"]] = rng.uniform(20, 80, n)
    groceries = rng.lognormal(8, 0.6, n)
    true_dining = 0.3 * groceries
    dines_on_card = rng.random(n) < 0.5
    for c in SPEND_CATEGORIES:
        X[:, index[f"spend_{c}_365d_usd"]] = 0.0
        X[:, index[f"days_since_{c}"]] = np.nan
    X[:, index["spend_groceries_365d_usd"]] = groceries
    X[:, index["tx_groceries_365d"]] = 50
    X[:, index["spend_groceries_90d_usd"]] = groceries / 4
    X[:, index["spend_dining_365d_usd"]] = np.where(dines_on_card, true_dining, 0.0)
    X[:, index["tx_dining_365d"]] = np.where(dines_on_card, 20, 0)
    X[:, index["spend_total_365d_usd"]] = (
        X[:, index["spend_groceries_365d_usd"]] + X[:, index["spend_dining_365d_usd"]]
    )
    return X, names, true_dining


def test_estimates_spend_where_the_card_has_none_from_other_categories() -> None:
    X, names, _ = _world(4000, 0)
    estimator = SpendEstimator(num_boost_round=100).fit(X, names)
    Xt, _, truth = _world(1000, 1)
    index = {name: i for i, name in enumerate(names)}
    Xt[:, index["spend_dining_365d_usd"]] = 0.0
    Xt[:, index["tx_dining_365d"]] = 0
    dining = estimator.predict(Xt, names)[:, CATEGORY_INDEX["dining"]]
    # Within 25% of the hidden truth for most cardholders, from their grocery spend alone.
    assert np.median(np.abs(dining / truth - 1)) < 0.25
    assert np.corrcoef(np.log(dining), np.log(truth))[0, 1] > 0.9


def test_observed_card_spend_is_a_floor() -> None:
    X, names, _ = _world(2000, 2)
    estimator = SpendEstimator(num_boost_round=50).fit(X, names)
    index = {name: i for i, name in enumerate(names)}
    high = X.copy()
    high[:, index["spend_dining_365d_usd"]] = 1e6
    assert (estimator.predict(high, names)[:, CATEGORY_INDEX["dining"]] == 1e6).all()


def test_own_category_and_totals_are_not_inputs() -> None:
    X, names, _ = _world(2000, 3)
    estimator = SpendEstimator(num_boost_round=20).fit(X, names)
    inputs = set(estimator.inputs_["dining"])
    assert not inputs & category_columns("dining")
    assert "spend_total_365d_usd" not in inputs
    assert "spend_groceries_365d_usd" in inputs


def test_artifacts_round_trip() -> None:
    X, names, _ = _world(2000, 4)
    estimator = SpendEstimator(num_boost_round=30).fit(X, names)
    loaded = SpendEstimator.from_artifacts(estimator.to_artifacts())
    np.testing.assert_allclose(loaded.predict(X, names), estimator.predict(X, names))
    assert loaded.reference_usd_ == estimator.reference_usd_


def test_categories_with_too_few_spenders_fall_back_to_the_median() -> None:
    X, names, _ = _world(2000, 5)
    estimator = SpendEstimator(num_boost_round=10).fit(X, names)
    assert "lodging" not in estimator.boosters_
    assert (estimator.predict(X, names)[:, CATEGORY_INDEX["lodging"]] == 0.0).all()


def test_errors_say_what_is_wrong() -> None:
    with pytest.raises(ModelError, match=r"not fitted yet\. Call 'fit' first"):
        SpendEstimator().predict(np.zeros((1, 3)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="`names` must include 'tenure_months'"):
        SpendEstimator().fit(np.zeros((1, 1)), ["x"])
    with pytest.raises(ModelError, match=r"estimator\.json: missing or malformed"):
        SpendEstimator.from_artifacts({})
