"""Trees: the compiled walk lands every row in the leaf `Booster.predict(pred_leaf=True)` gives, whatever the value."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nba.errors import ModelError
from nba.model._trees import K_ZERO_THRESHOLD, flatten_trees, leaves_of

N_FEATURES = 6
CATEGORICAL = 0  # column of the categorical feature in the categorical models
N_CATEGORIES = 100  # codes 0..99: a split's left categories can reach into the bitset's fourth word
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.2,
    "num_leaves": 15,
    "min_data_in_leaf": 10,
    "verbosity": -1,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
}
CATEGORICAL_PARAMS: dict[str, Any] = {
    # Small groups and many categories per split, so splits send codes of every bitset word left.
    "max_cat_to_onehot": 4,
    "max_cat_threshold": 64,
    "min_data_per_group": 5,
    "cat_smooth": 1.0,
    "cat_l2": 1.0,
}


def _numeric_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Signal in every column; NaNs, exact zeros, negatives and huge values among the inputs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)) * [1, 10, 1e6, 1, 1, 1]
    X[rng.random(n) < 0.3, 1] = 0.0
    X[rng.random(n) < 0.15, 2] = 0.0
    X[rng.random(n) < 0.10, 0] = np.nan
    X[rng.random(n) < 0.10, 3] = np.nan
    X[rng.random(n) < 0.02, 4] = 1e300
    X[rng.random(n) < 0.02, 4] = -1e300
    filled = np.nan_to_num(X, nan=0.5)
    logit = filled[:, 0] - 0.2 * filled[:, 1] + (filled[:, 2] > 0) + np.isnan(X[:, 3]) + np.sign(filled[:, 4])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit - filled[:, 5]))).astype(np.float64)
    return X, y


def _categorical_data(
    n: int, seed: int, n_categories: int = N_CATEGORIES, with_nan: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Column 0 holds codes 0..n_categories-1 with an effect each (NaN for 5% of rows when `with_nan`)."""
    rng = np.random.default_rng(seed)
    X, _ = _numeric_data(n, seed)
    codes = rng.integers(0, n_categories, size=n).astype(np.float64)
    if with_nan:
        codes[rng.random(n) < 0.05] = np.nan
    X[:, CATEGORICAL] = codes
    effect = np.random.default_rng(99).normal(size=n_categories + 1) * 1.5
    logit = effect[np.nan_to_num(codes, nan=n_categories).astype(int)] + np.nan_to_num(X[:, 3])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return X, y


@functools.cache
def _model(kind: str) -> lgb.Booster:
    if kind in ("nan-missing", "zero-as-missing", "no-missing"):
        X, y = _numeric_data(3000, seed=1)
        extra = {
            "nan-missing": {},
            "zero-as-missing": {"zero_as_missing": True},
            "no-missing": {"use_missing": False},
        }
        return lgb.train({**PARAMS, **extra[kind]}, lgb.Dataset(X, y), 30)
    if kind in ("categorical", "few-categories"):
        # Many categories, some rare, put LightGBM's categorical splits' missing type at NaN; a few
        # categories and no NaN leave it at None.
        few = kind == "few-categories"
        X, y = _categorical_data(5000, seed=2, n_categories=10 if few else N_CATEGORIES, with_nan=not few)
        train = lgb.Dataset(X, y, categorical_feature=[CATEGORICAL])
        return lgb.train({**PARAMS, **CATEGORICAL_PARAMS}, train, 30)
    raise AssertionError(kind)


def _awkward_values() -> np.ndarray:
    """Values a numeric split must route as LightGBM does: NaN, zeros, near-zeros, huge and infinite."""
    k = K_ZERO_THRESHOLD
    near_zero = [0.0, -0.0, k, -k, np.nextafter(k, 1), -np.nextafter(k, 1), 1e-36, -1e-36, 5e-324, -5e-324]
    large = [1e9, -1e9, 1e300, -1e300, np.nextafter(1e300, np.inf), 1.7976931348623157e308, np.inf, -np.inf]
    return np.array([np.nan, *near_zero, 1.0, -1.0, 0.5, -0.5, *large])


def _category_codes() -> np.ndarray:
    """Codes a categorical split must route as LightGBM does: unseen, negative, fractional, past every
    bitset word, beyond int32, infinite, NaN."""
    codes = [0, 1, 5, 31, 32, 33, 63, 64, 65, 95, 96, 99, 100, 127, 128, 1000]
    odd = [-1, -2, -0.5, -1e-40, 0.5, 31.9, 32.5, 99.99, -(2**31), -(2**32) + 1]
    huge = [2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**32 + 33, 2**53, 1e300, np.inf, -np.inf]
    return np.array([*codes, *odd, *huge, np.nan], dtype=np.float64)


def _awkward_rows(kind: str) -> np.ndarray:
    """Held-out rows, then every awkward value in every column (the others held at a held-out row's)."""
    if kind in ("categorical", "few-categories"):
        held_out, _ = _categorical_data(300, seed=3)
    else:
        held_out, _ = _numeric_data(300, seed=3)
    values = _awkward_values()
    rows = [held_out]
    for column in range(N_FEATURES):
        probe = np.repeat(held_out[:1], len(values), axis=0)
        probe[:, column] = values
        rows.append(probe)
    if kind in ("categorical", "few-categories"):
        codes = _category_codes()
        probe = held_out[: len(codes)].copy()
        probe[:, CATEGORICAL] = codes
        rows.append(probe)
    return np.concatenate(rows)


def _splits(booster: lgb.Booster) -> Iterator[Mapping[str, Any]]:
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_index" in node:
                yield node
                stack.extend((node["left_child"], node["right_child"]))


def _walk(booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
    model = booster.dump_model(num_iteration=num_iteration)
    return leaves_of(flatten_trees(model["tree_info"], int(model["max_feature_idx"]) + 1), X)


# --- the leaves ---------------------------------------------------------------------------------------------


KINDS = ["nan-missing", "zero-as-missing", "no-missing", "categorical", "few-categories"]


@pytest.mark.parametrize("kind", KINDS)
def test_leaves_match_the_booster_on_awkward_values(kind: str) -> None:
    booster = _model(kind)
    X = _awkward_rows(kind)
    leaves = _walk(booster, X)
    assert leaves.shape == (len(X), booster.num_trees()) and leaves.dtype == np.intp
    np.testing.assert_array_equal(leaves, booster.predict(X, pred_leaf=True))


@pytest.mark.parametrize(
    ("kind", "splits"),
    [
        ("nan-missing", {("<=", "NaN", True), ("<=", "NaN", False), ("<=", "None", True)}),
        ("zero-as-missing", {("<=", "Zero", True), ("<=", "Zero", False)}),
        ("no-missing", {("<=", "None", True)}),
        ("categorical", {("==", "NaN", False)}),
        ("few-categories", {("==", "None", False)}),
    ],
)
def test_the_models_have_the_splits_the_tests_are_about(
    kind: str, splits: set[tuple[str, str, bool]]
) -> None:
    found = list(_splits(_model(kind)))
    assert {
        (split["decision_type"], split["missing_type"], split["default_left"]) for split in found
    } >= splits
    if kind == "nan-missing":
        # A split at +inf (NaN apart from every number), which dump_model writes as 1e300.
        assert any(split["threshold"] == 1e300 for split in found)
    if kind == "categorical":
        left_codes = [
            int(code)
            for split in found
            if split["decision_type"] == "=="
            for code in str(split["threshold"]).split("||")
        ]
        # Codes in every word of the bitsets, so a wrong word index would send some row the wrong way.
        assert {code // 32 for code in left_codes} == {0, 1, 2, 3}


@pytest.mark.parametrize("kind", ["nan-missing", "zero-as-missing", "no-missing"])
def test_values_on_and_next_to_every_threshold(kind: str) -> None:
    booster = _model(kind)
    base, _ = _numeric_data(1, seed=4)
    rows = []
    for split in _splits(booster):
        threshold = float(split["threshold"])
        for value in (threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf)):
            row = base[0].copy()
            row[split["split_feature"]] = value
            rows.append(row)
    X = np.array(rows)
    # Thresholds must come out of dump_model to the last bit for these rows to land where LightGBM's do.
    np.testing.assert_array_equal(_walk(booster, X), booster.predict(X, pred_leaf=True))


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_near_zero_values_reach_the_trees_as_zero(zero_as_missing: bool) -> None:
    # Splitting -1 from 0 from 1 puts thresholds at ±kZeroThreshold, where reading -kZeroThreshold as itself
    # instead of as 0 (LightGBM's C API drops |x| <= kZeroThreshold from the row) would change sides.
    rng = np.random.default_rng(5)
    x = rng.choice([-1.0, 0.0, 1.0], size=3000)
    y = (rng.random(3000) < np.select([x < 0, x > 0], [0.8, 0.5], 0.2)).astype(np.float64)
    params = {**PARAMS, "num_leaves": 4, "zero_as_missing": zero_as_missing}
    booster = lgb.train(params, lgb.Dataset(np.column_stack([x, rng.normal(size=3000)]), y), 3)
    thresholds = {float(split["threshold"]) for split in _splits(booster) if split["split_feature"] == 0}
    assert thresholds == {-K_ZERO_THRESHOLD, K_ZERO_THRESHOLD}
    values = np.concatenate([[0.0, K_ZERO_THRESHOLD, -K_ZERO_THRESHOLD], _awkward_values()])
    X = np.column_stack([values, np.zeros(len(values))])
    leaves = _walk(booster, X)
    np.testing.assert_array_equal(leaves, booster.predict(X, pred_leaf=True))
    np.testing.assert_array_equal(leaves[1:3], leaves[[0, 0]])  # ±kZeroThreshold land where 0 does


def test_pandas_categories_unseen_ones_included() -> None:
    X, y = _categorical_data(3000, seed=6)
    names = [f"f{column}" for column in range(N_FEATURES)]
    seen = [f"c{code}" for code in range(N_CATEGORIES)]

    def frame(rows: np.ndarray, labels: list[str | None]) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=names)
        df[names[CATEGORICAL]] = pd.Series(labels, dtype="category")
        return df

    train = frame(X, [None if code != code else seen[int(code)] for code in X[:, CATEGORICAL]])
    booster = lgb.train({**PARAMS, **CATEGORICAL_PARAMS}, lgb.Dataset(train, y), 20)
    held_out, _ = _categorical_data(200, seed=7)
    # Every fifth row carries a category the model never saw; `predict` maps the frame's categories onto
    # the training ones (in their sorted order), which makes those NaN. The walker gets the training
    # codes, NaN for the rest.
    labels = [
        None if code != code else (f"new{int(code)}" if row % 5 == 0 else seen[int(code)])
        for row, code in enumerate(held_out[:, CATEGORICAL])
    ]
    trained: list[str] = list(train[names[CATEGORICAL]].cat.categories)
    assert booster.pandas_categorical == [trained]
    X_codes = held_out.copy()
    X_codes[:, CATEGORICAL] = [trained.index(label) if label in trained else np.nan for label in labels]
    assert np.isnan(X_codes[::5, CATEGORICAL]).all()
    expected = booster.predict(frame(held_out, labels), pred_leaf=True)
    np.testing.assert_array_equal(_walk(booster, X_codes), expected)


def test_single_leaf_trees() -> None:
    X, y = _numeric_data(1000, seed=8)
    # No split is affordable at the first iteration: tree 0 is one leaf, the later ones are not.
    never_then_free = lgb.reset_parameter(min_gain_to_split=[1e9] + [0.0] * 5)
    booster = lgb.train(PARAMS, lgb.Dataset(X, y), 6, callbacks=[never_then_free])
    sizes = [tree["num_leaves"] for tree in booster.dump_model()["tree_info"]]
    assert sizes[0] == 1 and min(sizes[1:]) > 1
    rows = _awkward_rows("nan-missing")
    np.testing.assert_array_equal(_walk(booster, rows), booster.predict(rows, pred_leaf=True))
    stump = lgb.train({**PARAMS, "min_gain_to_split": 1e9}, lgb.Dataset(X, y), 3)
    assert [tree["num_leaves"] for tree in stump.dump_model()["tree_info"]] == [1]
    assert _walk(stump, rows).tolist() == [[0]] * len(rows)


def test_the_first_trees_only() -> None:
    booster = _model("categorical")
    X = _awkward_rows("categorical")
    leaves = _walk(booster, X, num_iteration=7)
    assert leaves.shape == (len(X), 7)
    np.testing.assert_array_equal(leaves, booster.predict(X, pred_leaf=True, num_iteration=7))


def test_rows_of_any_numeric_dtype_or_layout() -> None:
    booster = _model("categorical")
    X = np.nan_to_num(_awkward_rows("categorical"), nan=1.0, posinf=7.0, neginf=-7.0)
    X = np.round(np.clip(X, -1e6, 1e6))
    expected = booster.predict(X, pred_leaf=True)
    for variant in (
        X.astype(np.int64),
        X.astype(np.float32),
        np.asfortranarray(X),
        np.repeat(X, 2, axis=0)[::2],  # a view with gaps between its rows
        X.tolist(),
    ):
        np.testing.assert_array_equal(_walk(booster, variant), expected)
    assert _walk(booster, np.zeros((0, N_FEATURES))).shape == (0, booster.num_trees())


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros(N_FEATURES), r"`X` must be a 2-D array of shape \(n_rows, 6\), got shape \(6,\)"),
        (
            np.zeros((2, N_FEATURES - 1)),
            r"`X` must be a 2-D array of shape \(n_rows, 6\), got shape \(2, 5\)",
        ),
        (np.zeros((2, N_FEATURES + 1)), r"got shape \(2, 7\)"),
    ],
    ids=["1-d", "too-few-columns", "too-many-columns"],
)
def test_rows_of_the_wrong_shape_are_refused(X: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _walk(_model("nan-missing"), X)


def _root(tree: dict[str, Any]) -> dict[str, Any]:
    root: dict[str, Any] = tree["tree_structure"]
    return root


def _edit(edit: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    trees: list[dict[str, Any]] = copy.deepcopy(_model("categorical").dump_model()["tree_info"][:2])
    edit(trees[1])
    return trees


def _first_categorical(tree: dict[str, Any]) -> dict[str, Any]:
    stack = [_root(tree)]
    while stack:
        node = stack.pop()
        if node.get("decision_type") == "==":
            return node
        stack.extend(node[side] for side in ("left_child", "right_child") if side in node)
    raise AssertionError("no categorical split")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda tree: _root(tree).update(decision_type="<"), r"tree 1: split 0 has decision type '<'"),
        (lambda tree: _root(tree).update(missing_type="Inf"), r"tree 1: split 0 has missing type 'Inf'"),
        (
            lambda tree: _root(tree).update(split_feature=N_FEATURES),
            r"tree 1: split on feature 6, outside \[0, 6\)",
        ),
        (lambda tree: _first_categorical(tree).update(threshold="3||-1"), r"tree 1: negative category code"),
        (
            lambda tree: tree.update(num_leaves=tree["num_leaves"] + 1),
            r"tree 1: \d+ splits and \d+ leaves expected",
        ),
        (
            lambda tree: _root(tree).pop("split_index"),
            r"tree 1: unexpected structure in dump_model \(KeyError",
        ),
        (
            lambda tree: _root(tree).update(threshold="high"),
            r"tree 1: unexpected structure in dump_model \(ValueError",
        ),
    ],
    ids=[
        "decision-type",
        "missing-type",
        "feature",
        "negative-code",
        "leaf-count",
        "no-split-index",
        "threshold",
    ],
)
def test_unexpected_dumps_are_refused(edit: Callable[[dict[str, Any]], None], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        flatten_trees(_edit(edit), N_FEATURES)


# --- compiling -------------------------------------------------------------------------------------------------


@pytest.mark.slow  # compiles every kernel afresh in a new interpreter
def test_works_where_numba_cannot_cache() -> None:
    # No cache locator that works (as for a read-only install without a writable home): numba refuses
    # `cache=True` at import. The modules must still import and their functions compile in memory.
    code = (
        "import nba.model._attribution\n"
        "from nba._compiled import compiled\n"
        "@compiled\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "print(add(2, 3))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator", "NUMBA_CACHE_DIR": ""}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5"
