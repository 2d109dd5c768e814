"""Attribution: path (Saabas) contributions add up to the raw score, match a naive tree walk, agree with TreeSHAP."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from nba.errors import ModelError
from nba.model._attribution import PathAttributor, rank_contributions, top_contributions

N_FEATURES = 8
CATEGORICAL = 1  # column index of the categorical feature (integer codes)
BASE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "max_cat_to_onehot": 4,
    "cat_smooth": 5.0,
    "verbosity": -1,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
}


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Six features with signal of different strengths, two of noise; a categorical one; missing values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, CATEGORICAL] = rng.integers(0, 8, size=n)
    X[:, 5] = np.where(rng.random(n) < 0.3, 0.0, X[:, 5])  # many exact zeros (for zero_as_missing)
    filled = X.copy()
    X[rng.random(n) < 0.10, 2] = np.nan
    X[rng.random(n) < 0.05, CATEGORICAL] = np.nan
    X[rng.random(n) < 0.05, 4] = np.nan
    cat = filled[:, CATEGORICAL]
    logit = (
        -0.5
        + 1.2 * filled[:, 0]
        + 1.0 * np.isin(cat, (1, 3, 6))
        - 0.8 * (cat == 5)
        + 0.9 * np.where(np.isnan(X[:, 2]), 1.0, filled[:, 2])
        - 0.7 * filled[:, 3]
        + 0.6 * filled[:, 4] * (filled[:, 5] > 0)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return X, y


def _train(rounds: int = 60, **params: Any) -> lgb.Booster:
    X, y = _data(4000, seed=1)
    train = lgb.Dataset(X, y, categorical_feature=[CATEGORICAL])
    return lgb.train({**BASE_PARAMS, **params}, train, rounds)


def _rows(n: int = 400) -> np.ndarray:
    """Held-out rows, plus category codes the model never saw (negative, unseen, fractional) and NaNs."""
    X, _ = _data(n, seed=2)
    X[:8, CATEGORICAL] = [-1, -0.5, 99, 2.7, np.nan, 0, 7, 3]
    X[8:12, 0] = np.nan
    X[12:16, 5] = 0.0
    return X


@pytest.fixture(scope="module", params=[False, True], ids=["nan-missing", "zero-as-missing"])
def booster(request: pytest.FixtureRequest) -> lgb.Booster:
    return _train(zero_as_missing=request.param)


# --- the naive reference: walk each dumped tree, row by row ------------------------------------------------


def _goes_left(node: Mapping[str, Any], x: float) -> bool:
    """LightGBM's routing of one value at one split (tree.h: NumericalDecision, CategoricalDecision)."""
    if node["decision_type"] == "==":
        if math.isnan(x) or int(x) < 0:
            return False
        return int(x) in {int(code) for code in str(node["threshold"]).split("||")}
    missing = node["missing_type"]
    if math.isnan(x) and missing != "NaN":
        x = 0.0
    if (missing == "Zero" and abs(x) <= 1e-35) or (missing == "NaN" and math.isnan(x)):
        return bool(node["default_left"])
    return x <= float(node["threshold"])


def _value(node: Mapping[str, Any]) -> float:
    return float(node["leaf_value"] if "leaf_value" in node else node["internal_value"])


def _reference(
    booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """Contributions, bias and leaf indices, by following every row down every tree in plain Python."""
    trees = booster.dump_model(num_iteration=num_iteration)["tree_info"]
    contributions = np.zeros((len(X), X.shape[1]))
    leaves = np.zeros((len(X), len(trees)), dtype=int)
    bias = sum(_value(tree["tree_structure"]) for tree in trees)
    for r, row in enumerate(X):
        for t, tree in enumerate(trees):
            node = tree["tree_structure"]
            while "leaf_value" not in node:
                child = (
                    node["left_child"]
                    if _goes_left(node, float(row[node["split_feature"]]))
                    else node["right_child"]
                )
                contributions[r, node["split_feature"]] += _value(child) - _value(node)
                node = child
            leaves[r, t] = node.get("leaf_index", 0)
    return contributions, bias, leaves


def _top_reference(row: np.ndarray, k: int, positive_only: bool) -> list[tuple[int, float]]:
    order = sorted(range(len(row)), key=lambda f: (-row[f], f))
    return [(f, float(row[f])) for f in order if row[f] > 0 or not positive_only][:k]


# --- the sum, the reference, TreeSHAP ------------------------------------------------------------------------


def test_contributions_plus_bias_equal_the_raw_score(booster: lgb.Booster) -> None:
    X = _rows()
    attributor = PathAttributor.from_booster(booster)
    raw = booster.predict(X, raw_score=True)
    contributions = attributor.contributions(X)
    assert contributions.shape == (len(X), N_FEATURES)
    assert contributions.dtype == np.float64
    np.testing.assert_allclose(contributions.sum(axis=1) + attributor.bias_, raw, rtol=0, atol=1e-9)
    np.testing.assert_allclose(attributor.raw_scores(X), raw, rtol=0, atol=1e-12)
    scores, same = attributor.score_and_contributions(X)
    np.testing.assert_array_equal(scores, attributor.raw_scores(X))
    np.testing.assert_array_equal(same, contributions)
    # The signal features carry the attribution, not the noise ones.
    mean_abs = np.abs(contributions).mean(axis=0)
    assert min(mean_abs[[0, 1, 2, 3]]) > max(mean_abs[[6, 7]])


def test_contributions_match_a_naive_walk_of_every_tree(booster: lgb.Booster) -> None:
    X = _rows(150)
    attributor = PathAttributor.from_booster(booster)
    expected, bias, leaves = _reference(booster, X)
    # The reference routes rows as LightGBM does (categorical, NaN, zero and unseen codes included) ...
    np.testing.assert_array_equal(leaves, booster.predict(X, pred_leaf=True))
    # ... and credits the same splits with the same amounts.
    np.testing.assert_allclose(attributor.contributions(X), expected, rtol=1e-12, atol=1e-12)
    assert attributor.bias_ == pytest.approx(bias, abs=1e-12)


def test_route_once_score_every_row_explain_a_few(booster: lgb.Booster) -> None:
    X = _rows(40)
    attributor = PathAttributor.from_booster(booster)
    routes = attributor.route(X)
    assert routes.n_rows == 40 and routes.leaves.shape == (40, booster.num_trees())
    raw = attributor.raw_scores_of(routes)
    np.testing.assert_allclose(raw, booster.predict(X, raw_score=True), rtol=0, atol=1e-12)
    shown = np.argsort(-raw, kind="stable")[:3]
    all_rows = attributor.contributions(X)
    np.testing.assert_array_equal(attributor.contributions_of(routes, shown), all_rows[shown])
    np.testing.assert_array_equal(attributor.contributions_of(routes, [5, 5, 0]), all_rows[[5, 5, 0]])
    np.testing.assert_array_equal(attributor.contributions_of(routes), all_rows)
    assert attributor.contributions_of(routes, []).shape == (0, N_FEATURES)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_the_request_paths_ranking_is_the_ranking_of_the_chosen_rows_contributions(
    booster: lgb.Booster, k: int
) -> None:
    X = _rows(40)
    attributor = PathAttributor.from_booster(booster)
    routes = attributor.route(X)
    for chosen in (np.array([7, 2, 31]), np.array([5, 5, 0]), np.arange(40), np.array([], dtype=np.int64)):
        features, counts = attributor.top_features_of(routes, chosen, k)
        expected, _, expected_counts = top_contributions(attributor.contributions_of(routes, chosen), k)
        np.testing.assert_array_equal(counts, expected_counts)
        for row, count in enumerate(counts.tolist()):  # past a row's count the columns are padding
            np.testing.assert_array_equal(features[row, :count], expected[row, :count])
    assert attributor.top_features_of(routes, np.arange(40), k)[1].max() > 0  # the rows have reasons
    with pytest.raises(IndexError):
        attributor.top_features_of(routes, np.array([40]), k)
    with pytest.raises(ValueError, match="`routes` must come from this attributor"):
        PathAttributor.from_booster(booster).top_features_of(routes, chosen, k)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([0, 40], r"`rows` must be positions in \[0, 40\), got \[0, 40\]"),
        ([-1], r"`rows` must be positions in \[0, 40\), got \[-1\]"),
        ([[0, 1]], r"`rows` must be a 1-D sequence of row positions, got \[\[0, 1\]\]"),
        ([0.0, 1.0], r"`rows` must be a 1-D sequence of row positions"),
        (np.ones(40, dtype=bool), r"`rows` must be a 1-D sequence of row positions"),
    ],
    ids=["past-the-end", "negative", "2-d", "floats", "mask"],
)
def test_bad_rows_of_routes_are_refused(rows: Any, message: str) -> None:
    attributor = PathAttributor.from_booster(_train(rounds=3))
    routes = attributor.route(_rows(40))
    with pytest.raises(ValueError, match=message):
        attributor.contributions_of(routes, rows)


def test_routes_belong_to_the_attributor_that_made_them() -> None:
    booster = _train(rounds=3)
    ours, other = PathAttributor.from_booster(booster), PathAttributor.from_booster(booster)
    routes = other.route(_rows(20))
    for method in (ours.raw_scores_of, ours.contributions_of):
        with pytest.raises(ValueError, match=r"`routes` must come from this attributor's `route`"):
            method(routes)
    with pytest.raises(ModelError, match="not fitted yet"):
        PathAttributor().raw_scores_of(routes)


def test_contributions_of_the_first_trees_only() -> None:
    booster = _train(rounds=30)
    X = _rows(100)
    attributor = PathAttributor.from_booster(booster, num_iteration=7)
    assert attributor.num_iteration_ == 7
    expected, _, _ = _reference(booster, X, num_iteration=7)
    np.testing.assert_allclose(attributor.contributions(X), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        attributor.raw_scores(X), booster.predict(X, raw_score=True, num_iteration=7), rtol=0, atol=1e-12
    )
    # Like `predict`, the default is the best iteration when early stopping set one.
    booster.best_iteration = 11
    assert PathAttributor.from_booster(booster).num_iteration_ == 11


def _overlap(ours: list[tuple[int, float]], theirs: list[tuple[int, float]]) -> float:
    a, b = {f for f, _ in ours}, {f for f, _ in theirs}
    return 1.0 if not a and not b else len(a & b) / max(len(a), len(b))


def test_top_three_agree_with_treeshap_on_most_rows(booster: lgb.Booster) -> None:
    X = _rows(600)
    ours = PathAttributor.from_booster(booster).top_features(X, k=3)
    shap = np.asarray(booster.predict(X, pred_contrib=True))
    assert shap.shape == (len(X), N_FEATURES + 1)  # the last column is TreeSHAP's expected value
    theirs = rank_contributions(shap[:, :-1], k=3)
    overlap = np.mean([_overlap(a, b) for a, b in zip(ours, theirs, strict=True)])
    both = [(a[0][0], b[0][0]) for a, b in zip(ours, theirs, strict=True) if a and b]
    top1 = np.mean([a == b for a, b in both])
    # Measured: top-3 overlap 0.857 / 0.867, top-1 0.896 / 0.898, identical top-3 sets on 64% / 65% of rows
    # (NaN-missing / zero-as-missing model).
    assert overlap >= 0.8, f"top-3 overlap with TreeSHAP {overlap:.3f}"
    assert top1 >= 0.8, f"top-1 agreement with TreeSHAP {top1:.3f} over {len(both)} rows"
    assert len(both) >= 0.9 * len(X)


# --- routing without the booster -----------------------------------------------------------------------------


def _many_categories_model() -> lgb.Booster:
    """Codes 0..99 in the categorical column, so its splits' category sets reach past bit 63."""
    X, _ = _data(4000, seed=9)
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 100, size=len(X)).astype(np.float64)
    codes[rng.random(len(X)) < 0.05] = np.nan
    X[:, CATEGORICAL] = codes
    effect = np.random.default_rng(10).normal(size=101) * 1.5
    logit = effect[np.nan_to_num(codes, nan=100).astype(int)] + np.nan_to_num(X[:, 0])
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    params = {**BASE_PARAMS, "max_cat_threshold": 64, "min_data_per_group": 5, "cat_smooth": 1.0}
    return lgb.train(params, lgb.Dataset(X, y, categorical_feature=[CATEGORICAL]), 40)


@pytest.mark.parametrize(
    "make",
    [lambda: _train(use_missing=False), _many_categories_model],
    ids=["no-missing", "many-categories"],
)
def test_routes_and_scores_match_the_booster_on_any_split(make: Any) -> None:
    booster = make()
    X = _rows(300)
    # Codes around the bitset's word boundaries and beyond int32; huge, infinite and near-zero numbers.
    X[16:30, CATEGORICAL] = [31, 32, 63, 64, 95, 96, 99, 100, 1e9, 2**31, 2**32 + 1, np.inf, -np.inf, -2]
    X[30:34, 3] = [1e300, -1e300, np.inf, -np.inf]
    X[34:38, 5] = [1e-36, -1e-36, 1e-35, -0.0]
    attributor = PathAttributor.from_booster(booster)
    routes = attributor.route(X)
    np.testing.assert_array_equal(
        routes.leaves - attributor.leaf_offsets_[:-1], booster.predict(X, pred_leaf=True)
    )
    raw = booster.predict(X, raw_score=True)
    np.testing.assert_allclose(attributor.raw_scores_of(routes), raw, rtol=0, atol=1e-9)
    contributions = attributor.contributions_of(routes)
    np.testing.assert_allclose(contributions.sum(axis=1) + attributor.bias_, raw, rtol=0, atol=1e-9)


def test_requests_do_not_call_the_booster(monkeypatch: pytest.MonkeyPatch) -> None:
    booster = _train(rounds=20)
    X = _rows(50)
    attributor = PathAttributor.from_booster(booster)
    raw = booster.predict(X, raw_score=True)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the request path called Booster.predict")

    monkeypatch.setattr(lgb.Booster, "predict", refuse)
    routes = attributor.route(X)
    np.testing.assert_allclose(attributor.raw_scores_of(routes), raw, rtol=0, atol=1e-12)
    scores, contributions = attributor.score_and_contributions(X)
    np.testing.assert_array_equal(scores, attributor.raw_scores(X))
    np.testing.assert_array_equal(attributor.contributions_of(routes, [3, 1]), contributions[[3, 1]])
    assert attributor.top_features(X[:2]) == rank_contributions(contributions[:2])


# --- single-leaf trees -------------------------------------------------------------------------------------


def test_a_single_leaf_tree_adds_to_the_bias_only() -> None:
    X, y = _data(2000, seed=3)
    # A split nobody can afford at the first iteration: tree 0 is one leaf (the average log-odds).
    never_then_free = lgb.reset_parameter(min_gain_to_split=[1e9] + [0.0] * 9)
    booster = lgb.train({**BASE_PARAMS, "num_leaves": 7}, lgb.Dataset(X, y), 10, callbacks=[never_then_free])
    sizes = [tree["num_leaves"] for tree in booster.dump_model()["tree_info"]]
    assert sizes[0] == 1 and min(sizes[1:]) > 1
    attributor = PathAttributor.from_booster(booster)
    assert not attributor.leaf_contributions()[0].any()
    rows = _rows(100)
    expected, _, _ = _reference(booster, rows)
    np.testing.assert_allclose(attributor.contributions(rows), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        attributor.contributions(rows).sum(axis=1) + attributor.bias_,
        booster.predict(rows, raw_score=True),
        rtol=0,
        atol=1e-9,
    )


def test_a_model_of_one_leaf_explains_nothing() -> None:
    X, y = _data(500, seed=4)
    booster = lgb.train({**BASE_PARAMS, "min_gain_to_split": 1e9}, lgb.Dataset(X, y), 3)
    assert [tree["num_leaves"] for tree in booster.dump_model()["tree_info"]] == [1]
    attributor = PathAttributor.from_booster(booster)
    rows = _rows(20)
    raw, contributions = attributor.score_and_contributions(rows)
    assert not contributions.any()
    np.testing.assert_allclose(raw, booster.predict(rows, raw_score=True), rtol=0, atol=1e-12)
    assert attributor.bias_ == pytest.approx(float(raw[0]), abs=1e-12)
    assert attributor.top_features(rows) == [[] for _ in range(20)]


# --- the reasons ---------------------------------------------------------------------------------------------


def test_rank_contributions_sorts_descending_and_breaks_ties_by_feature() -> None:
    contributions = np.array(
        [
            [0.2, -0.1, 0.5, 0.2, 0.0],
            [-0.3, -0.1, -0.2, -0.4, -0.5],
            [0.1, 0.1, 0.1, 0.1, 0.1],
            [0.0, 0.3, 0.0, 0.0, 0.0],
        ]
    )
    assert rank_contributions(contributions) == [
        [(2, 0.5), (0, 0.2), (3, 0.2)],
        [],
        [(0, 0.1), (1, 0.1), (2, 0.1)],
        [(1, 0.3)],
    ]
    assert rank_contributions(contributions, k=2, positive_only=False) == [
        [(2, 0.5), (0, 0.2)],
        [(1, -0.1), (2, -0.2)],
        [(0, 0.1), (1, 0.1)],
        [(1, 0.3), (0, 0.0)],
    ]
    assert rank_contributions(contributions, k=5, positive_only=False)[1] == [
        (1, -0.1),
        (2, -0.2),
        (0, -0.3),
        (3, -0.4),
        (4, -0.5),
    ]
    assert rank_contributions(np.zeros((0, 5))) == []


@pytest.mark.parametrize(("k", "positive_only"), [(1, True), (3, True), (3, False), (8, False)])
def test_top_features_match_a_full_sort(booster: lgb.Booster, k: int, positive_only: bool) -> None:
    X = _rows(200)
    attributor = PathAttributor.from_booster(booster)
    contributions = attributor.contributions(X)
    expected = [_top_reference(row, k, positive_only) for row in contributions]
    assert attributor.top_features(X, k=k, positive_only=positive_only) == expected


def test_rows_come_as_floats_ints_or_nothing() -> None:
    booster = _train(rounds=10)
    attributor = PathAttributor.from_booster(booster)
    X = np.nan_to_num(_rows(30))
    as_ints = np.round(X).astype(np.int64)
    np.testing.assert_array_equal(
        attributor.contributions(as_ints), attributor.contributions(as_ints.astype(float))
    )
    np.testing.assert_allclose(
        attributor.contributions(X.astype(np.float32)),
        attributor.contributions(X.astype(np.float32).astype(np.float64)),
    )
    raw, contributions = attributor.score_and_contributions(np.zeros((0, N_FEATURES)))
    assert raw.shape == (0,) and contributions.shape == (0, N_FEATURES)
    assert attributor.top_features(np.zeros((0, N_FEATURES))) == []


# --- errors --------------------------------------------------------------------------------------------------


def test_an_unfitted_attributor_says_what_to_do() -> None:
    with pytest.raises(
        ModelError, match=r"This PathAttributor is not fitted yet\. Call 'fit' or 'from_booster' first\."
    ):
        PathAttributor().contributions(np.zeros((1, N_FEATURES)))
    with pytest.raises(ModelError, match="not fitted yet"):
        PathAttributor().top_features(np.zeros((1, N_FEATURES)))


def _untrained() -> lgb.Booster:
    X, y = _data(200, seed=5)
    return lgb.Booster(params=BASE_PARAMS, train_set=lgb.Dataset(X, y))


def _multiclass() -> lgb.Booster:
    X, _ = _data(300, seed=6)
    labels = np.arange(300) % 3
    params = {**BASE_PARAMS, "objective": "multiclass", "num_class": 3}
    return lgb.train(params, lgb.Dataset(X, labels), 2)


def _random_forest() -> lgb.Booster:
    X, y = _data(300, seed=7)
    params = {**BASE_PARAMS, "boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}
    return lgb.train(params, lgb.Dataset(X, y), 2)


def _linear() -> lgb.Booster:
    X, y = _data(300, seed=8)
    return lgb.train({**BASE_PARAMS, "linear_tree": True}, lgb.Dataset(np.nan_to_num(X), y), 2)


@pytest.mark.parametrize(
    ("make", "num_iteration", "error", "message"),
    [
        (
            lambda: {"trees": []},
            None,
            TypeError,
            r"`booster` must be a lightgbm\.Booster, got a dict$",
        ),
        (
            _untrained,
            None,
            ModelError,
            r"The booster has no trees: train it before building a PathAttributor\.",
        ),
        (
            lambda: _train(rounds=5),
            0,
            ValueError,
            r"`num_iteration` must be an int in \[1, 5\], got 0$",
        ),
        (
            lambda: _train(rounds=5),
            6,
            ValueError,
            r"`num_iteration` must be an int in \[1, 5\], got 6$",
        ),
        (
            lambda: _train(rounds=5),
            True,
            ValueError,
            r"`num_iteration` must be an int in \[1, 5\], got True$",
        ),
        (_multiclass, None, ModelError, r"one tree per iteration \(binary or regression\); this one has 3"),
        (_random_forest, None, ModelError, r"this model averages them \(boosting='rf'\)"),
        (_linear, None, ModelError, r"tree 0: linear trees \(linear_tree=True\) are not supported"),
    ],
    ids=[
        "not-a-booster",
        "untrained",
        "zero-iterations",
        "too-many-iterations",
        "bool-iterations",
        "multiclass",
        "rf",
        "linear",
    ],
)
def test_boosters_it_cannot_explain_are_refused(
    make: Any, num_iteration: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        PathAttributor.from_booster(make(), num_iteration=num_iteration)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros(N_FEATURES), r"`X` must be a 2-D array of shape \(n_rows, 8\), got shape \(8,\)"),
        (
            np.zeros((3, N_FEATURES - 1)),
            r"`X` must be a 2-D array of shape \(n_rows, 8\), got shape \(3, 7\)",
        ),
        (np.zeros((2, 3, N_FEATURES)), r"got shape \(2, 3, 8\)"),
        (
            np.full((2, N_FEATURES), "gold"),
            r"`X` must hold numbers \(categorical features as integer codes, NaN for missing\), got dtype <U4",
        ),
        ([[None] * N_FEATURES], r"`X` must hold numbers .*got dtype object"),
    ],
    ids=["1-d", "too-few-columns", "3-d", "strings", "objects"],
)
def test_bad_rows_are_refused_with_their_shape_or_dtype(X: Any, message: str) -> None:
    attributor = PathAttributor.from_booster(_train(rounds=3))
    for method in (
        attributor.route,
        attributor.contributions,
        attributor.raw_scores,
        attributor.score_and_contributions,
        attributor.top_features,
    ):
        with pytest.raises(ValueError, match=message):
            method(X)


@pytest.mark.parametrize(
    ("contributions", "k", "message"),
    [
        (np.zeros((2, 5)), 0, r"`k` must be an int in \[1, 5\], got 0$"),
        (np.zeros((2, 5)), 6, r"`k` must be an int in \[1, 5\], got 6$"),
        (np.zeros((2, 5)), True, r"`k` must be an int in \[1, 5\], got True$"),
        (np.zeros((2, 5)), "3", r"`k` must be an int in \[1, 5\], got '3'$"),
        (np.zeros((2, 80)), 51, r"`k` must be an int in \[1, 50\], got 51$"),
        (np.zeros(5), 3, r"`contributions` must be a 2-D array \(rows × features\), got shape \(5,\)"),
    ],
)
def test_bad_k_or_contributions_are_refused(contributions: np.ndarray, k: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rank_contributions(contributions, k=k)


def test_top_features_checks_k_before_routing_the_rows() -> None:
    attributor = PathAttributor.from_booster(_train(rounds=3))
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 8\], got 9$"):
        attributor.top_features(np.zeros((2, N_FEATURES)), k=9)


def test_rank_contributions_equals_a_full_sort_with_ties_and_signs() -> None:
    rng = np.random.default_rng(5)
    for trial in range(400):
        n_rows, n_features = int(rng.integers(1, 5)), int(rng.integers(1, 40))
        if trial % 2:  # few distinct values: many ties, zeros and negatives
            contributions = rng.choice([-1.0, 0.0, 0.25, 0.5, 2.0], size=(n_rows, n_features))
        else:
            contributions = rng.normal(size=(n_rows, n_features))
        for k in range(1, min(50, n_features) + 1, 4):
            for positive_only in (True, False):
                expected = [
                    [
                        (f, float(row[f]))
                        for f in sorted(range(n_features), key=lambda f, row=row: (-row[f], f))
                        if row[f] > 0 or not positive_only
                    ][:k]
                    for row in contributions
                ]
                assert rank_contributions(contributions, k, positive_only) == expected


def test_routing_and_scoring_in_one_call_is_the_two_calls(booster: lgb.Booster) -> None:
    attributor = PathAttributor.from_booster(booster)
    X = _rows()
    routes, raw = attributor.route_and_score(X)
    separate = attributor.route(X)
    np.testing.assert_array_equal(routes.leaves, separate.leaves)
    assert raw.tobytes() == attributor.raw_scores_of(separate).tobytes()
    np.testing.assert_allclose(raw, booster.predict(X, raw_score=True), rtol=1e-12, atol=1e-12)
    with pytest.raises(ModelError, match="not fitted yet"):
        PathAttributor().route_and_score(X)
    with pytest.raises(ValueError, match="must be a 2-D array"):
        attributor.route_and_score(X[:, :3])
