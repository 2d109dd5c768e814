"""Spend estimator: learns a category's yearly spend from the others, and round-trips through its artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nba.errors import ModelError
from nba.model._spend import ESTIMATOR_FILE, SpendEstimator, category_columns
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
    assert loaded.describe() == estimator.describe()
    assert loaded.modelled_categories == estimator.modelled_categories == tuple(estimator.boosters_)


def test_a_loaded_estimator_checks_its_regressions_features_and_writes_them_back_as_they_were() -> None:
    X, names, _ = _world(2000, 4)
    files = SpendEstimator(num_boost_round=10).fit(X, names).to_artifacts()
    dining = "estimator_dining.txt"
    # Loading reads the regressions' feature lists, not their trees: what it saves is written back as it was.
    assert SpendEstimator.from_artifacts(files).to_artifacts() == files
    other_features = files[dining].replace(b"feature_names=tenure_months", b"feature_names=months_held")
    with pytest.raises(ModelError, match=r"estimator_dining\.txt: its features do not match estimator\.json"):
        SpendEstimator.from_artifacts({**files, dining: other_features})


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
    X, names, _ = _world(100, 0)
    with pytest.raises(
        ValueError, match=r"`categorical` names columns that are not in `names`: \['colour'\]"
    ):
        SpendEstimator().fit(X, names, ["colour"])
    with pytest.raises(ModelError, match=r"estimator\.json: missing or malformed"):
        SpendEstimator.from_artifacts({})


def test_profile_columns_are_inputs_and_history_is_not() -> None:
    X, names, _ = _world(600, 6)
    rng = np.random.default_rng(6)
    names = [*names, "product_id", "income_band", "benefits_used_count", "credit_limit_usd"]
    X = np.column_stack([X, rng.integers(0, 3, (len(X), 2)), rng.integers(0, 5, len(X)), rng.random(len(X))])
    estimator = SpendEstimator(num_boost_round=5, extra_inputs=["income_band"]).fit(
        X, names, ["product_id", "income_band"]
    )
    inputs = set(estimator.inputs_["dining"])
    assert {"product_id", "income_band", "tenure_months", "age_years"} <= inputs
    # Not taken: an extra column the caller did not name, and the benefit history (it leaks use).
    assert not inputs & {"benefits_used_count", "credit_limit_usd"}
    # LightGBM lists the levels of a categorical feature (and none for a numeric one).
    infos = estimator.boosters_["dining"].dump_model()["feature_infos"]
    assert infos["income_band"]["values"] and not infos["age_years"]["values"]


def test_similar_cardholders_carry_spend_the_card_does_not_show() -> None:
    """Dining spend set by an income band alone: the band is what tells non-diners apart."""
    X, names, _ = _world(4000, 7)
    rng = np.random.default_rng(7)
    band = rng.integers(0, 4, len(X)).astype(float)
    index = {name: i for i, name in enumerate(names)}
    true_dining = 500.0 * 2.0**band * rng.lognormal(0, 0.2, len(X))
    on_card = X[:, index["tx_dining_365d"]] > 0
    X[:, index["spend_dining_365d_usd"]] = np.where(on_card, true_dining, 0.0)
    X = np.column_stack([X, band])
    names = [*names, "income_band"]
    estimator = SpendEstimator(num_boost_round=60, extra_inputs=["income_band"]).fit(
        X, names, ["income_band"]
    )
    off_card = ~on_card
    dining = estimator.predict(X, names)[off_card, CATEGORY_INDEX["dining"]]
    assert np.corrcoef(np.log(dining), np.log(true_dining[off_card]))[0, 1] > 0.9


def test_smearing_turns_the_fitted_log_into_a_mean() -> None:
    """Spend with a wide spread around one level: exp(mean log) is the median; the estimate is the mean."""
    X, names, _ = _world(4000, 8)
    rng = np.random.default_rng(8)
    index = {name: i for i, name in enumerate(names)}
    spend = rng.lognormal(7, 0.8, len(X))
    on_card = X[:, index["tx_dining_365d"]] > 0
    X[:, index["spend_dining_365d_usd"]] = np.where(on_card, spend, 0.0)
    estimator = SpendEstimator(num_boost_round=30).fit(X, names)
    assert estimator.smearing_["dining"] > 1.2
    estimate = estimator.predict(X, names)[~on_card, CATEGORY_INDEX["dining"]]
    assert abs(np.mean(estimate) / np.mean(spend[on_card]) - 1) < 0.15


def test_artifacts_written_before_smearing_still_load_as_medians() -> None:
    X, names, _ = _world(2000, 9)
    estimator = SpendEstimator(num_boost_round=20).fit(X, names)
    files = estimator.to_artifacts()
    meta = json.loads(files[ESTIMATOR_FILE])
    for entry in meta["categories"].values():
        del entry["smearing"]
    files[ESTIMATOR_FILE] = json.dumps(meta).encode()
    loaded = SpendEstimator.from_artifacts(files)
    assert set(loaded.smearing_.values()) == {1.0}
    index = {name: i for i, name in enumerate(names)}
    no_dining = X.copy()
    no_dining[:, index["spend_dining_365d_usd"]] = 0.0
    dining = CATEGORY_INDEX["dining"]
    np.testing.assert_allclose(
        loaded.predict(no_dining, names)[:, dining] * estimator.smearing_["dining"],
        estimator.predict(no_dining, names)[:, dining],
        rtol=1e-9,
    )


def test_progress_has_a_bar_over_the_categories_and_one_over_each_regressions_rounds() -> None:
    from tests.unit.test_model import RecordingProgress

    X, names, _ = _world(2000, 5)
    progress = RecordingProgress()
    estimator = SpendEstimator(num_boost_round=30).fit(X, names, progress=progress)
    categories, *rounds = progress.bars
    assert (categories.description, categories.total, categories.advanced) == ("categories", 16, 16)
    # Only groceries and dining have spenders here; each regression's bar is full.
    assert sorted(estimator.boosters_) == ["dining", "groceries"]
    assert [(bar.description.split(":")[0], bar.total, bar.advanced) for bar in rounds] == [
        (c, 30, 30) for c in SPEND_CATEGORIES if c in estimator.boosters_
    ]


def test_threads_reach_lightgbm_and_change_speed_not_estimates() -> None:
    X, names, _ = _world(2000, 5)
    one = SpendEstimator(num_boost_round=20, num_threads=1).fit(X, names)
    two = SpendEstimator(num_boost_round=20, num_threads=2).fit(X, names)
    assert one.boosters_ and all(b.params["num_threads"] == 1 for b in one.boosters_.values())
    assert all(b.params["num_threads"] == 2 for b in two.boosters_.values())
    np.testing.assert_array_equal(one.predict(X, names), two.predict(X, names))
