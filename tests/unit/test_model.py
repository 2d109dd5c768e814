"""Model: the LightGBM propensity estimator learns, calibrates, round-trips through its artifacts."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pytest

from nba.errors import ModelError
from nba.model._propensity import (
    Calibrator,
    CategoryEncoder,
    PropensityModel,
    encoders_from_json,
    encoders_to_json,
    fit_calibrator,
)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    x1 = rng.integers(0, 4, size=n).astype(float)
    noise = rng.normal(size=n)
    logit = -1.5 + 1.2 * x0 + np.where(x1 == 2, 1.0, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return np.column_stack([x0, x1, noise]), y


NAMES = ["x0", "kind", "noise"]


def test_fit_learns_signal_and_ranks_better_than_noise() -> None:
    X, y = _data(6000, 1)
    Xv, yv = _data(3000, 2)
    model = PropensityModel(num_boost_round=300, early_stopping_rounds=30).fit(X, y, NAMES, ["kind"], Xv, yv)
    p = model.predict_proba(Xv)[:, 1]
    assert p.shape == (3000,)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(yv, p) > 0.7
    gains = dict(zip(NAMES, model.booster_.feature_importance("gain"), strict=True))
    assert gains["x0"] > gains["noise"]
    assert 1 <= model.best_iteration_ <= 300


def test_refit_trains_the_final_trees_on_both_slices() -> None:
    X, y = _data(4000, 6)
    Xv, yv = _data(1000, 7)
    once = PropensityModel(num_boost_round=300, early_stopping_rounds=20).fit(X, y, NAMES, ["kind"], Xv, yv)
    model = PropensityModel(num_boost_round=300, early_stopping_rounds=20, refit=True).fit(
        X, y, NAMES, ["kind"], Xv, yv
    )
    # The same search for the number of trees, then that many scaled by the rows added (5000 / 4000).
    assert model.early_stopping_iteration_ == once.best_iteration_ == once.early_stopping_iteration_
    assert model.best_iteration_ == round(once.best_iteration_ * 5000 / 4000)
    assert model.booster_.current_iteration() == model.best_iteration_
    # The early-stopping rows are now training rows: the refit model fits them more closely.
    from sklearn.metrics import log_loss

    assert log_loss(yv, model.predict_proba(Xv)[:, 1]) < log_loss(yv, once.predict_proba(Xv)[:, 1])
    loaded = PropensityModel.from_artifacts(model.to_artifacts(), NAMES)
    assert loaded.best_iteration_ == model.best_iteration_


@dataclass
class TrackedBar:
    description: str
    total: int
    advanced: int = 0

    def advance(self, steps: int = 1) -> None:
        self.advanced += steps


@dataclass
class RecordingProgress:
    """A progress hook that keeps every bar it handed out: its total and how far the fit advanced it."""

    bars: list[TrackedBar] = field(default_factory=list)

    def track(self, description: str, total: int) -> AbstractContextManager[TrackedBar]:
        self.bars.append(TrackedBar(description, total))
        return nullcontext(self.bars[-1])

    def query(self, con: duckdb.DuckDBPyConnection, description: str) -> AbstractContextManager[None]:
        return nullcontext()


def test_the_round_bars_follow_the_rounds_trained() -> None:
    X, y = _data(4000, 6)
    Xv, yv = _data(1000, 7)
    progress = RecordingProgress()
    model = PropensityModel(num_boost_round=300, early_stopping_rounds=20, refit=True).fit(
        X, y, NAMES, ["kind"], Xv, yv, progress
    )
    first, refit = progress.bars
    # Early stopping ends the first bar short of its total, at the round that stopped it.
    assert (first.total, first.advanced) == (300, model.early_stopping_iteration_ + 20)
    assert first.advanced < first.total
    assert refit.total == refit.advanced == model.best_iteration_ == model.booster_.current_iteration()


def test_a_fit_without_early_stopping_fills_its_bar() -> None:
    X, y = _data(2000, 8)
    progress = RecordingProgress()
    model = PropensityModel(num_boost_round=15, early_stopping_rounds=50).fit(
        X, y, NAMES, ["kind"], X, y, progress
    )
    assert [(bar.total, bar.advanced) for bar in progress.bars] == [(15, 15)]
    assert model.booster_.current_iteration() == 15


def test_artifacts_round_trip_gives_identical_scores() -> None:
    X, y = _data(3000, 3)
    Xv, yv = _data(1500, 4)
    model = PropensityModel(num_boost_round=100, early_stopping_rounds=20).fit(X, y, NAMES, ["kind"], Xv, yv)
    loaded = PropensityModel.from_artifacts(model.to_artifacts(), NAMES)
    np.testing.assert_array_equal(loaded.predict_proba(Xv), model.predict_proba(Xv))


def test_artifacts_with_other_feature_names_are_refused() -> None:
    X, y = _data(2000, 5)
    model = PropensityModel(num_boost_round=20, early_stopping_rounds=5).fit(X, y, NAMES, [], X, y)
    with pytest.raises(ModelError, match="features do not match the manifest"):
        PropensityModel.from_artifacts(model.to_artifacts(), ["x0", "kind"])


def test_unfitted_model_says_what_to_do() -> None:
    with pytest.raises(ModelError, match=r"not fitted yet\. Call 'fit' first"):
        PropensityModel().predict_proba(np.zeros((1, 3)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y": np.zeros(10)}, "no positive labels"),
        ({"y": np.full(10, 2.0)}, "`y` must hold only 0 and 1"),
        ({"categorical": ["colour"]}, r"not features: \['colour'\]"),
        ({"X": np.zeros((10, 2))}, r"one column per feature name \(3\)"),
    ],
)
def test_bad_fit_input(kwargs: dict[str, object], message: str) -> None:
    X = kwargs.get("X", np.zeros((10, 3)))
    y = kwargs.get("y", np.array([0, 1] * 5, dtype=float))
    with pytest.raises(ValueError, match=message):
        PropensityModel().fit(
            X, y, NAMES, kwargs.get("categorical", []), np.zeros((4, 3)), np.array([0, 1, 0, 1.0])
        )  # type: ignore[arg-type]


def test_calibration_fixes_a_miscalibrated_score_and_leaves_a_good_one() -> None:
    rng = np.random.default_rng(0)
    p_true = rng.uniform(0.02, 0.6, size=20000)
    y = (rng.random(20000) < p_true).astype(float)
    squashed = p_true**2  # systematically too low
    calibrator, losses = fit_calibrator(y, squashed)
    assert calibrator.kind in ("isotonic", "platt")
    assert losses[calibrator.kind] < losses["identity"]
    fixed = calibrator.apply(squashed)
    assert abs(fixed.mean() - y.mean()) < 0.01
    honest, _ = fit_calibrator(y, p_true)
    assert honest.kind == "identity"
    again = Calibrator.from_json(calibrator.to_json())
    np.testing.assert_allclose(again.apply(squashed), fixed)


def test_category_encoder_is_sorted_and_unknown_is_missing() -> None:
    encoder = CategoryEncoder.fit("region", ["west", "north", None, "west"])
    assert encoder.levels == ("north", "west")
    codes = encoder.transform(["west", "south", None])
    assert codes[0] == 1.0 and np.isnan(codes[1]) and np.isnan(codes[2])
    assert encoder.code_of("north") == 0.0 and np.isnan(encoder.code_of("east"))
    assert encoders_from_json(encoders_to_json([encoder])) == [encoder]


@pytest.mark.parametrize("kind", ["identity", "isotonic", "platt"])
def test_calibration_of_raw_scores_is_calibration_of_their_probabilities(kind: str) -> None:
    """The request path calibrates log-odds in one compiled call; it must say what `apply` says of
    LightGBM's probabilities (Platt by its formula, clipped away from 0 and 1)."""
    calibrator = Calibrator(kind, x=(0.0, 0.2, 0.6, 1.0), y=(0.0, 0.1, 0.5, 0.9), a=1.3, b=-0.4)  # type: ignore[arg-type]
    raw = np.concatenate([np.random.default_rng(4).normal(0.0, 3.0, 2000), [0.0, 35.0, -35.0, 700.0, -700.0]])
    with np.errstate(over="ignore"):
        p_raw = 1.0 / (1.0 + np.exp(-raw))
    if kind == "platt":
        clipped = np.log(np.clip(p_raw, 1e-12, 1 - 1e-12) / np.clip(1 - p_raw, 1e-12, 1))
        expected = 1.0 / (1.0 + np.exp(-(1.3 * clipped - 0.4)))
    elif kind == "isotonic":
        expected = np.interp(p_raw, [0.0, 0.2, 0.6, 1.0], [0.0, 0.1, 0.5, 0.9])
    else:
        expected = p_raw
    np.testing.assert_allclose(calibrator.apply(p_raw), expected, rtol=1e-14, atol=0)
    np.testing.assert_allclose(calibrator.of_log_odds(raw), expected, rtol=1e-14, atol=0)
    if kind == "platt":  # clipped: never certain either way, even at ±700 log-odds
        assert ((calibrator.of_log_odds(raw) > 0) & (calibrator.of_log_odds(raw) < 1)).all()


def test_platt_calibration_keeps_the_shape_it_is_given() -> None:
    calibrator = Calibrator("platt", a=1.3, b=-0.4)
    assert np.shape(calibrator.apply(np.float64(0.3))) == ()
    assert calibrator.apply(np.full((2, 3), 0.3)).shape == (2, 3)
    assert np.shape(calibrator.of_log_odds(np.float64(0.5))) == ()
    assert calibrator.of_log_odds(np.zeros((2, 3))).shape == (2, 3)
