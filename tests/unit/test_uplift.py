"""Uplift: the DR-learner recovers a known effect under confounding, its artifacts round-trip, and the Qini
curve equals a naive loop."""

from __future__ import annotations

import numpy as np
import pytest

from nba.errors import ModelError
from nba.model import UPLIFT_FILE, PropensityModel, UpliftModel, UpliftSample
from nba.model._uplift import dr_pseudo_outcomes
from training.metrics import estimate_caused_adoptions, qini_curve, qini_interval

NAMES = ("x0", "x1", "benefit")


def _naive_qini(
    score: np.ndarray, treated: np.ndarray, adopted: np.ndarray, weights: np.ndarray
) -> list[float]:
    """The reference: for each top n (stable order), the treated's adoptions minus the controls' scaled to
    the treated's weight, per treated weight of all; one unit at a time."""
    order = sorted(range(len(score)), key=lambda i: -score[i])
    total_treated = sum(w for w, t in zip(weights, treated, strict=True) if t)
    curve = []
    for n in range(1, len(order) + 1):
        top = order[:n]
        y_t = sum(weights[i] * adopted[i] for i in top if treated[i])
        n_t = sum(weights[i] for i in top if treated[i])
        y_c = sum(weights[i] * adopted[i] for i in top if not treated[i])
        n_c = sum(weights[i] for i in top if not treated[i])
        curve.append((y_t - (y_c * n_t / n_c if n_c > 0 else 0.0)) / total_treated)
    return curve


def test_qini_curve_equals_a_naive_loop() -> None:
    rng = np.random.default_rng(3)
    n = 300
    score = np.round(rng.normal(size=n), 1)  # ties: input order decides
    treated = rng.random(n) < 0.4
    adopted = (rng.random(n) < 0.2 + 0.3 * treated * (score > 0)).astype(float)
    weights = rng.uniform(1.0, 4.0, n)
    curve = qini_curve(score, treated, adopted, weights, points=n)
    reference = _naive_qini(score, treated, adopted, weights)
    assert curve.qini == pytest.approx(reference, abs=1e-12)
    fractions = np.arange(1, n + 1) / n
    assert curve.coefficient == pytest.approx(np.mean(np.array(reference) - reference[-1] * fractions))
    assert curve.auuc == pytest.approx(np.mean(reference))
    assert (curve.n_treated, curve.n_control) == (int(treated.sum()), int((~treated).sum()))


def test_qini_puts_a_ranking_by_the_true_effect_above_random_and_its_reverse() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    effect = rng.uniform(0, 0.4, n)
    treated = rng.random(n) < 0.5
    adopted = (rng.random(n) < 0.1 + effect * treated).astype(float)
    best = qini_curve(effect, treated, adopted).coefficient
    shuffled = qini_curve(rng.permutation(effect), treated, adopted).coefficient
    worst = qini_curve(-effect, treated, adopted).coefficient
    assert best > 0.03 > abs(shuffled) and worst < -0.03


@pytest.mark.parametrize(
    ("treated", "adopted", "weights", "message"),
    [
        ([1, 1], [0, 1], None, "needs treated and control units: got 2 treated, 0 controls"),
        ([1, 0], [0, 2], None, r"`adopted` must hold only 0 and 1, got 2.0 at row 1"),
        ([1, 0], [0, 1], [1.0, -1.0], r"`weights` must be ≥ 0, got -1.0 at row 1"),
        ([1, 0, 1], [0, 1], None, r"`treated` must have the same length as `uplift` \(2\), got 3"),
    ],
)
def test_qini_refuses_bad_input(
    treated: list[int], adopted: list[int], weights: list[float] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        qini_curve([0.1, 0.2], treated, adopted, weights)


def test_dr_pseudo_outcome_is_the_textbook_formula() -> None:
    treated = np.array([True, False, True, False])
    adopted = np.array([1.0, 1.0, 0.0, 0.0])
    e = np.array([0.5, 0.25, 0.001, 0.999])  # the last two are clipped to [0.02, 0.98]
    mu1, mu0 = np.array([0.6, 0.5, 0.4, 0.3]), np.array([0.2, 0.1, 0.3, 0.2])
    expected = [
        0.6 - 0.2 + (1 - 0.6) / 0.5,
        0.5 - 0.1 - (1 - 0.1) / 0.75,
        0.4 - 0.3 + (0 - 0.4) / 0.02,
        0.3 - 0.2 - (0 - 0.2) / 0.02,
    ]
    assert dr_pseudo_outcomes(treated, adopted, e, mu1, mu0) == pytest.approx(expected)


def _confounded_units(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Units where the logging policy shows more to those who adopt anyway (x1 high), and the effect of a
    conversation is 0.3 for x0 > 0 and 0 else: a naive comparison of treated and controls is biased."""
    rng = np.random.default_rng(seed)
    x0, x1 = rng.normal(size=n), rng.normal(size=n)
    benefit = rng.integers(0, 3, n).astype(float)
    X = np.column_stack([x0, x1, benefit])
    shown_prob = np.where(x1 > 0, 0.7, 0.2)
    shown = rng.random(n) < shown_prob
    discussed = shown & (rng.random(n) < 0.9)
    base = np.where(x1 > 0, 0.35, 0.05)
    effect = np.where(x0 > 0, 0.3, 0.0)
    adopted = (rng.random(n) < base + effect * (shown & discussed)).astype(float)
    cardholders = np.arange(n) // 2
    valid = rng.random(n) < 0.2
    return X, shown, discussed, adopted, shown_prob, cardholders, valid, effect


def test_the_dr_learner_recovers_a_known_effect_under_confounding() -> None:
    X, shown, discussed, adopted, shown_prob, cardholders, valid, effect = _confounded_units(30_000, 11)
    # Half the chances of being shown are not logged: the model estimates those.
    logged = np.where(np.arange(len(X)) % 2 == 0, shown_prob, np.nan)
    units = UpliftSample(X, shown, discussed, adopted, logged, NAMES, ["benefit"], cardholders)
    model = UpliftModel(seed=1).fit(units, valid)
    tau = model.predict(X)
    assert tau[effect > 0].mean() == pytest.approx(0.3, abs=0.06)
    assert tau[effect == 0].mean() == pytest.approx(0.0, abs=0.06)
    treated = shown & discussed
    naive = adopted[treated].mean() - adopted[~treated].mean()
    assert naive > 0.25  # the confounded comparison: ~0.15 of real effect plus ~0.13 of selection
    assert model.shown_prob_estimated_ == pytest.approx(0.5, abs=0.01)


def _setup_d_units(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Nie & Wager (2018)'s setup D, the published world where the treated and untreated outcomes are unrelated
    (μ1 = max(0, x0 + x1 + x2), μ0 = max(0, x3 + x4), treatment confounded through x0 and x1), its means mapped
    to chances by one linear map of their 1st-99th percentiles, as bench/bench_uplift_external.py does with
    causalml's copy of it: (X, treated, chance of treatment, adopted, true uplift)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    mu1, mu0 = np.maximum(0.0, X[:, :3].sum(axis=1)), np.maximum(0.0, X[:, 3:].sum(axis=1))
    e = 1 / (1 + np.exp(-X[:, 0]) + np.exp(-X[:, 1]))
    low, high = np.percentile(np.concatenate([mu0, mu1]), [1, 99])
    p1, p0 = (np.clip((mu - low) / (high - low), 0.01, 0.99) for mu in (mu1, mu0))
    treated = rng.random(n) < e
    adopted = (rng.random(n) < np.where(treated, p1, p0)).astype(float)
    return X, treated, e, adopted, p1 - p0


def test_ranking_by_the_dr_learner_causes_more_adoptions_than_ranking_by_adoption_where_they_diverge() -> (
    None
):
    # The adoption model, fitted on the treated as nba train fits it on presentations, ranks by μ1 and so
    # never sees that some of its favourites would adopt anyway (μ0 high). On 10,000 units (seeds 1-4) the
    # uplift ranking's top half causes 1.23-1.38 times the adoptions of the adoption ranking's.
    X, treated, e, adopted, uplift = _setup_d_units(10_000, 1)
    part = np.arange(len(X)) % 10
    train, valid, test = part < 5, (part >= 5) & (part < 7), part >= 7
    names = [f"x{i}" for i in range(5)]
    on_treated = (X[train & treated], adopted[train & treated])
    adoption = PropensityModel().fit(*on_treated, names, [], X[valid & treated], adopted[valid & treated])
    fit = ~test
    units = UpliftSample(
        X[fit],
        treated[fit],
        np.ones(int(fit.sum()), bool),
        adopted[fit],
        e[fit],
        names,
        [],
        np.arange(len(X))[fit],
    )
    model = UpliftModel(seed=1).fit(units, valid[fit])
    half = int(test.sum()) // 2

    def caused(score: np.ndarray) -> float:
        return float(uplift[test][np.argsort(-score, kind="stable")[:half]].mean())

    by_adoption = caused(adoption.predict_proba(X[test])[:, 1])
    assert by_adoption > 1.5 * caused(np.random.default_rng(0).random(int(test.sum())))  # a fair opponent
    assert caused(model.predict(X[test])) > 1.15 * by_adoption


def test_the_uplift_model_round_trips_through_its_lightgbm_text_file() -> None:
    X, shown, discussed, adopted, shown_prob, cardholders, valid, _ = _confounded_units(4_000, 2)
    units = UpliftSample(X, shown, discussed, adopted, shown_prob, NAMES, [], cardholders)
    model = UpliftModel(seed=0).fit(units, valid)
    files = model.to_artifacts()
    assert list(files) == [UPLIFT_FILE] and files[UPLIFT_FILE].startswith(b"tree")
    again = UpliftModel.from_artifacts(files, NAMES)
    assert np.array_equal(again.predict(X[:50]), model.predict(X[:50]))
    with pytest.raises(ModelError, match="its features do not match the manifest"):
        UpliftModel.from_artifacts(files, ("a", "b"))


def test_served_uplift_walks_the_trees_exactly_as_booster_predict() -> None:
    # The request path walks the effect model's trees in compiled code; it must give LightGBM's own
    # prediction, on a categorical feature, on missing values and on categories never seen, and after
    # the model is read back from its text file.
    X, shown, discussed, adopted, shown_prob, cardholders, valid, _ = _confounded_units(20_000, 7)
    units = UpliftSample(X, shown, discussed, adopted, shown_prob, NAMES, ["benefit"], cardholders)
    model = UpliftModel(seed=3).fit(units, valid)
    rng = np.random.default_rng(8)
    rows = X[:2_000].copy()
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[:50, 2] = 7.0  # a benefit code the model never saw
    expected = model.booster_.predict(rows, num_iteration=model.best_iteration_)
    assert model.best_iteration_ > 1 and np.ptp(expected) > 0.05  # a real model: trees that split
    np.testing.assert_allclose(model.predict(rows), expected, rtol=0, atol=1e-12)
    again = UpliftModel.from_artifacts(model.to_artifacts(), NAMES)
    np.testing.assert_allclose(again.predict(rows), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(again.predict(rows[:1]), expected[:1], rtol=0, atol=1e-12)


def test_the_uplift_model_refuses_units_without_controls_and_says_when_not_fitted() -> None:
    X, shown, discussed, adopted, shown_prob, cardholders, valid, _ = _confounded_units(500, 4)
    everyone = np.ones(len(X), dtype=bool)
    with pytest.raises(ValueError, match=r"needs treated and control units: got 500 treated and 0 controls"):
        UpliftModel().fit(
            UpliftSample(X, everyone, everyone, adopted, shown_prob, NAMES, [], cardholders), valid
        )
    with pytest.raises(ValueError, match="must have one row per unit"):
        UpliftModel().fit(
            UpliftSample(X, shown[:-1], discussed, adopted, shown_prob, NAMES, [], cardholders), valid
        )
    units = UpliftSample(X, shown, discussed, adopted, shown_prob, NAMES, [], cardholders)
    with pytest.raises(ValueError, match="`valid` must have one row per unit"):
        UpliftModel().fit(units, valid[:-1])
    with pytest.raises(ValueError, match="`adopted` must hold only 0 and 1"):
        UpliftModel().fit(
            UpliftSample(X, shown, discussed, adopted * 2, shown_prob, NAMES, [], cardholders), valid
        )
    with pytest.raises(ValueError, match=r"one column per feature name \(2\)"):
        UpliftModel().fit(
            UpliftSample(X, shown, discussed, adopted, shown_prob, NAMES[:2], [], cardholders), valid
        )
    with pytest.raises(ModelError, match=r"This UpliftModel is not fitted yet. Call 'fit' first."):
        UpliftModel().predict(X)


def test_caused_adoptions_sum_the_chosen_pseudo_outcomes_per_call_like_a_naive_loop() -> None:
    rng = np.random.default_rng(12)
    calls = rng.integers(0, 40, 300).astype(str)
    phi = rng.normal(0.1, 0.5, 300)
    chosen = rng.random(300) < 0.4
    estimate = estimate_caused_adoptions(calls, phi, chosen, n_bootstrap=300, seed=2)
    per_call = {c: 0.0 for c in calls}
    for call, value, picked in zip(calls, phi, chosen, strict=True):
        if picked:
            per_call[call] += value
    assert estimate.value == pytest.approx(sum(per_call.values()) / len(per_call), abs=1e-12)
    assert estimate.calls == len(per_call)
    assert estimate.ci[0] < estimate.value < estimate.ci[1]
    # A policy that shows nothing causes nothing, with certainty.
    nothing = estimate_caused_adoptions(calls, phi, np.zeros(300, dtype=bool), n_bootstrap=50)
    assert nothing.value == 0.0 and nothing.ci == (0.0, 0.0)


def test_qini_interval_resamples_whole_calls_and_pairs_the_two_rankings() -> None:
    rng = np.random.default_rng(9)
    n = 4_000
    effect = rng.uniform(0, 0.4, n)
    treated = rng.random(n) < 0.5
    adopted = (rng.random(n) < 0.1 + effect * treated).astype(float)
    weights = np.ones(n)
    calls = np.arange(n) // 4
    interval = qini_interval(effect, treated, adopted, weights, calls, other=-effect, n_bootstrap=100, seed=1)
    point = qini_curve(effect, treated, adopted, weights).coefficient
    assert interval.coefficient_ci[0] < point < interval.coefficient_ci[1]
    assert interval.difference_ci[0] > 0  # ranking by the true effect beats its reverse on every resample
    # The first resample, by hand: calls drawn with replacement, a call drawn m times counts m times.
    draw = np.random.default_rng(1).integers(0, n // 4, n // 4)
    times = np.bincount(draw, minlength=n // 4)[calls]
    kept = times > 0
    by_hand = qini_curve(effect[kept], treated[kept], adopted[kept], times[kept].astype(float)).coefficient
    first = qini_interval(effect, treated, adopted, weights, calls, n_bootstrap=1, seed=1)
    assert first.coefficient_ci[0] == pytest.approx(by_hand, abs=1e-12)
    assert np.isnan(first.difference_ci[0])
