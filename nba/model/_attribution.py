"""Attribution: a LightGBM booster and candidate rows → per-feature path (Saabas) contributions to the raw score.

Each suggestion shows two or three plain-language reasons, and the request path cannot afford TreeSHAP
(`pred_contrib=True` costs milliseconds per row). Path attribution is cheap because a row's path through a
tree is fixed by the leaf it lands in: its contribution vector (for every split on the path, the value of
the child taken minus the value of the split node, credited to the split feature) depends only on
(tree, leaf). `PathAttributor` precomputes that vector for every leaf of every tree once, as a sparse
table; at request time a compiled walk of the trees (`nba.model._trees`, the same leaves as the booster's
`pred_leaf`, without a booster call) gives the leaves, and the raw score and contributions are compiled
sums over the leaf table. The sum of a row's contributions plus `bias_` (the root values) is its raw score
(log-odds for a binary model).

Scoring and explaining share that one walk. The request path routes its candidate rows once, scores them
all from the leaves, and explains only the rows it shows.

Example:
    >>> attributor = PathAttributor.from_booster(model.booster_, num_iteration=model.best_iteration_)
    >>> raw, contributions = attributor.score_and_contributions(X)   # one walk of the trees
    >>> rank_contributions(contributions, k=3)                         # [(feature index, log-odds), ...]
    >>> routes = attributor.route(X)                                   # or: route once, ...
    >>> raw = attributor.raw_scores_of(routes)                         # ... score every row, ...
    >>> shown = np.argsort(-raw)[:3]
    >>> rank_contributions(attributor.contributions_of(routes, shown))  # ... explain the three shown
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.errors import ModelError, check_param
from nba.model._trees import FlatTrees, flatten_trees, leaves_of

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

# A reason list longer than this is not a reason list; it also bounds the cost of ranking.
MAX_K: Final = 50
Reasons = list[tuple[int, float]]


def rank_contributions(contributions: FloatArray, k: int = 3, positive_only: bool = True) -> list[Reasons]:
    """The `k` largest contributions of each row, as (feature index, contribution), largest first.

    Ties go to the lower feature index, so the same row always gives the same reasons. With
    `positive_only`, features that push the score down (or not at all) are left out, so a row may
    get fewer than `k` reasons, or none.

    `contributions` must be finite (what `PathAttributor` returns is). Raises ValueError when it is not
    2-D or `k` is not an int in [1, min(50, n_features)].

    Example:
        >>> rank_contributions(np.array([[0.2, -0.1, 0.5, 0.2]]), k=3)
        [[(2, 0.5), (0, 0.2), (3, 0.2)]]
    """
    features, values, counts = top_contributions(contributions, k, positive_only)
    return [
        list(zip(row_features[:count], row_values[:count], strict=True))
        for row_features, row_values, count in zip(
            features.tolist(), values.tolist(), counts.tolist(), strict=True
        )
    ]


def top_contributions(
    contributions: FloatArray, k: int = 3, positive_only: bool = True
) -> tuple[npt.NDArray[np.int64], FloatArray, npt.NDArray[np.int64]]:
    """`rank_contributions` as arrays: per row the features (rows × k), their contributions and how many
    of the k are filled (the rest of a row is padding). Same ties, checks and errors."""
    contributions = np.asarray(contributions)
    if contributions.ndim != 2:
        raise ValueError(
            f"`contributions` must be a 2-D array (rows × features), got shape {contributions.shape}"
        )
    _check_k(k, contributions.shape[1])
    return _top_k(np.ascontiguousarray(contributions, dtype=np.float64), int(k), bool(positive_only))


@compiled
def _top_k(
    contributions: FloatArray, k: int, positive_only: bool
) -> tuple[npt.NDArray[np.int64], FloatArray, npt.NDArray[np.int64]]:
    """Per row the k largest values (ties: lower feature first), as features, values and how many."""
    n_rows, n_features = contributions.shape
    features = np.zeros((n_rows, k), dtype=np.int64)
    values = np.zeros((n_rows, k))
    counts = np.zeros(n_rows, dtype=np.int64)
    for row in range(n_rows):
        count = 0
        for feature in range(n_features):
            value = contributions[row, feature]
            if positive_only and not value > 0.0:
                continue
            if count == k and not value > values[row, k - 1]:
                continue  # not above the k-th: an equal value comes later, so the earlier one stays
            # Insertion into the row's sorted list: after every value >= it (earlier features win ties).
            position = min(count, k - 1)
            while position > 0 and values[row, position - 1] < value:
                if position < k:
                    values[row, position] = values[row, position - 1]
                    features[row, position] = features[row, position - 1]
                position -= 1
            values[row, position] = value
            features[row, position] = feature
            count = min(count + 1, k)
        counts[row] = count
    return features, values, counts


def _check_k(k: int, n_features: int) -> None:
    highest = min(MAX_K, n_features)
    is_int = isinstance(k, Integral) and not isinstance(k, bool)
    check_param("k", k, is_int and 1 <= k <= highest, f"an int in [1, {highest}]")


@dataclass(frozen=True, eq=False)
class Routes:
    """Where each of a batch of rows lands: from `PathAttributor.route`, for that attributor only.

    `leaves` is (n_rows, n_trees): the leaf each row reaches in each tree, in the attributor's global
    leaf numbering (tree offset + LightGBM's leaf index).
    """

    leaves: IndexArray
    attributor: PathAttributor

    @property
    def n_rows(self) -> int:
        return int(self.leaves.shape[0])


class PathAttributor:
    """Path-based (Saabas) feature contributions of a single-output LightGBM model, cheap enough per request.

    Follows the estimator contract: `__init__` stores its argument, `fit` reads the booster's trees
    and learns the leaf table, and every method that scores rows first checks it was fitted.

    Learned attributes:
        booster_: the booster it was built from (requests do not call it).
        trees_: its first `num_iteration_` trees as flat arrays, which `route` walks (`nba.model._trees`).
        num_iteration_: how many trees are used (the booster's best iteration unless told otherwise).
        n_features_, feature_names_: the booster's input columns.
        bias_: the sum of the trees' root values; contributions + `bias_` = raw score.
        leaf_offsets_: (n_trees + 1,) where each tree's leaves start in the global leaf numbering.
        leaf_values_: (n_leaves,) each leaf's output; a row's raw score is the sum over its leaves.
        leaf_contrib_indptr_, leaf_contrib_features_, leaf_contrib_values_: the (n_leaves × n_features)
            leaf contribution table in compressed sparse rows: a leaf's path touches few features.

    Example:
        >>> attributor = PathAttributor.from_booster(booster)
        >>> attributor.contributions(X).sum(axis=1) + attributor.bias_   # == booster raw scores
    """

    def __init__(self, num_iteration: int | None = None) -> None:
        self.num_iteration = num_iteration

    @classmethod
    def from_booster(cls, booster: lgb.Booster, num_iteration: int | None = None) -> PathAttributor:
        """A fitted attributor for the first `num_iteration` trees of `booster` (default: as `predict` does)."""
        return cls(num_iteration).fit(booster)

    def fit(self, booster: lgb.Booster) -> PathAttributor:
        """Reads the trees of `booster` (`dump_model`) and precomputes every leaf's contribution vector.

        Raises TypeError when `booster` is not a `lightgbm.Booster`, ValueError for a `num_iteration`
        outside [1, trees trained], and ModelError for a booster without trees, with several outputs
        per iteration (multiclass), averaged output (random forest) or linear trees.
        """
        if not isinstance(booster, lgb.Booster):
            raise TypeError(f"`booster` must be a lightgbm.Booster, got a {type(booster).__name__}")
        trained = booster.current_iteration()
        if trained < 1:
            raise ModelError("The booster has no trees: train it before building a PathAttributor.")
        num_iteration = self.num_iteration
        if num_iteration is None:
            # What `booster.predict` uses when it is not told: the best iteration if early stopping set one.
            num_iteration = booster.best_iteration if booster.best_iteration > 0 else trained
        is_int = isinstance(num_iteration, Integral) and not isinstance(num_iteration, bool)
        check_param(
            "num_iteration",
            num_iteration,
            is_int and 1 <= num_iteration <= trained,
            f"an int in [1, {trained}]",
        )
        num_iteration = int(num_iteration)
        model = booster.dump_model(num_iteration=num_iteration)
        per_iteration = int(model.get("num_tree_per_iteration", 1))
        if per_iteration != 1:
            raise ModelError(
                f"PathAttributor needs a model with one tree per iteration (binary or regression); this one has "
                f"{per_iteration} (objective {model.get('objective')!r})"
            )
        if model.get("average_output", False):
            raise ModelError("PathAttributor needs summed trees; this model averages them (boosting='rf')")
        trees: list[Mapping[str, Any]] = model["tree_info"]
        if len(trees) != num_iteration:
            raise ModelError(f"The booster dumped {len(trees)} trees for {num_iteration} iterations")
        n_features = int(model["max_feature_idx"]) + 1

        offsets = [0]
        leaf_values: list[float] = []
        counts: list[int] = []
        features: list[int] = []
        values: list[float] = []
        bias = 0.0
        for index, tree in enumerate(trees):
            root_value, leaves = _leaf_paths(tree, index, n_features)
            bias += root_value
            for leaf_value, contribution in leaves:
                leaf_values.append(leaf_value)
                counts.append(len(contribution))
                for feature, value in contribution:
                    features.append(feature)
                    values.append(value)
            offsets.append(offsets[-1] + len(leaves))

        self.booster_ = booster
        self.num_iteration_: int = num_iteration
        self.n_features_: int = n_features
        self.feature_names_: list[str] = list(model.get("feature_names", []))
        self.bias_: float = bias
        self.leaf_offsets_: IndexArray = np.asarray(offsets, dtype=np.intp)
        self.leaf_values_: FloatArray = np.asarray(leaf_values, dtype=np.float64)
        self.leaf_contrib_indptr_: IndexArray = np.concatenate(([0], np.cumsum(counts, dtype=np.intp)))
        self.leaf_contrib_features_: npt.NDArray[np.int32] = np.asarray(features, dtype=np.int32)
        self.leaf_contrib_values_: FloatArray = np.asarray(values, dtype=np.float64)
        self.trees_: FlatTrees = flatten_trees(trees, n_features)
        self._tree_offsets: IndexArray = self.leaf_offsets_[:-1].copy()
        # Compile the request path's kernels now (or load them from numba's cache), not on the first request.
        self.score_and_contributions(np.full((1, n_features), np.nan))
        return self

    def leaf_contributions(self) -> FloatArray:
        """The leaf table as a dense (n_leaves, n_features) array: for inspection and tests, not requests."""
        self._check_fitted()
        dense = np.zeros((len(self.leaf_values_), self.n_features_))
        rows = np.repeat(np.arange(len(self.leaf_values_)), np.diff(self.leaf_contrib_indptr_))
        dense[rows, self.leaf_contrib_features_] = self.leaf_contrib_values_
        return dense

    def route(self, X: npt.ArrayLike) -> Routes:
        """The leaves each row of `X` lands in (the booster's `pred_leaf`, from a compiled walk of its trees).

        `X` is a numeric (n_rows, n_features) array as the booster was trained on (categorical features
        as integer codes, NaN for missing). Raises ModelError when not fitted, ValueError for bad `X`.
        """
        return Routes(self._global_leaves_of(X), self)

    def route_and_score(self, X: npt.ArrayLike) -> tuple[Routes, FloatArray]:
        """`route`, then `raw_scores_of` those routes without checking again where they come from: what the
        request path needs of its rows."""
        leaves = self._global_leaves_of(X)
        return Routes(leaves, self), self._raw_scores_of_leaves(leaves)

    def raw_scores_of(self, routes: Routes) -> FloatArray:
        """The raw scores (log-odds) of the routed rows, (n_rows,): the sum of the leaves they land in."""
        return self._raw_scores_of_leaves(self._check_routes(routes).leaves)

    def contributions_of(
        self, routes: Routes, rows: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None
    ) -> FloatArray:
        """Path contributions of the routed rows (or of `rows`, by position, in that order), (len, n_features).

        Raises ValueError when `routes` come from another attributor or `rows` are not positions in them.
        """
        leaves = self._check_routes(routes).leaves
        if rows is not None:
            picked = np.asarray(rows)
            if picked.ndim != 1 or (picked.size and picked.dtype.kind not in "iu"):
                raise ValueError(f"`rows` must be a 1-D sequence of row positions, got {rows!r}")
            if picked.size and (picked.min() < 0 or picked.max() >= routes.n_rows):
                raise ValueError(f"`rows` must be positions in [0, {routes.n_rows}), got {picked.tolist()}")
            leaves = leaves[picked.astype(np.intp)]
        return self._contributions_of_leaves(leaves)

    def top_features_of(
        self, routes: Routes, rows: npt.NDArray[np.integer[Any]], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The request path's ranking: `top_contributions(self.contributions_of(routes, rows), k)`'s features
        and counts (positive contributions only, best first, ties to the lower feature), in one compiled pass
        that never holds the rows' dense contributions.

        `rows` are positions in `routes` (numpy checks them when it picks their leaves). Raises ValueError
        as `contributions_of` and `top_contributions` do for routes of another attributor or a bad `k`.
        """
        leaves = self._check_routes(routes).leaves[rows]
        _check_k(k, self.n_features_)
        return _top_features_of_leaves(
            np.ascontiguousarray(leaves),
            self.leaf_contrib_indptr_,
            self.leaf_contrib_features_,
            self.leaf_contrib_values_,
            self.n_features_,
            int(k),
        )

    def contributions(self, X: npt.ArrayLike) -> FloatArray:
        """Per-feature path contributions of each row, (n_rows, n_features), in raw-score (log-odds) space.

        Same input and errors as `route`.
        """
        return self._contributions_of_leaves(self._global_leaves_of(X))

    def raw_scores(self, X: npt.ArrayLike) -> FloatArray:
        """The raw scores (log-odds) of each row, (n_rows,), as the sum of the leaves it lands in."""
        return self._raw_scores_of_leaves(self._global_leaves_of(X))

    def score_and_contributions(self, X: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Raw scores (n_rows,) and contributions (n_rows, n_features) from a single walk of the trees."""
        leaves = self._global_leaves_of(X)
        return self._raw_scores_of_leaves(leaves), self._contributions_of_leaves(leaves)

    def top_features(self, X: npt.ArrayLike, k: int = 3, positive_only: bool = True) -> list[Reasons]:
        """Each row's `k` largest contributions as (feature index, contribution), largest first.

        See `rank_contributions` for ties and `positive_only`; use it directly on the output of
        `score_and_contributions` to rank without routing the rows a second time.
        """
        self._check_fitted()
        _check_k(k, self.n_features_)  # before routing the rows, not after
        return rank_contributions(self.contributions(X), k, positive_only)

    # --- the request path ----------------------------------------------------------------------------------

    def _check_fitted(self) -> lgb.Booster:
        booster: lgb.Booster | None = getattr(self, "booster_", None)
        if booster is None:
            raise ModelError("This PathAttributor is not fitted yet. Call 'fit' or 'from_booster' first.")
        return booster

    def _check_routes(self, routes: Routes) -> Routes:
        self._check_fitted()
        if not isinstance(routes, Routes) or routes.attributor is not self:
            raise ValueError("`routes` must come from this attributor's `route`")
        return routes

    def _global_leaves_of(self, X: npt.ArrayLike) -> IndexArray:
        """(n_rows, n_trees) numbers, in the global leaf numbering, of the leaves each row lands in."""
        rows = self._checked_rows(X)  # first: it says when the attributor is not fitted
        global_leaves: IndexArray = leaves_of(self.trees_, rows)
        global_leaves += self._tree_offsets  # the walker's own new array: renumbered in place
        return global_leaves

    def _checked_rows(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        self._check_fitted()
        rows = np.asarray(X)
        if rows.ndim != 2 or rows.shape[1] != self.n_features_:
            raise ValueError(
                f"`X` must be a 2-D array of shape (n_rows, {self.n_features_}), got shape {rows.shape}"
            )
        if rows.dtype.kind not in "biuf":
            raise ValueError(
                f"`X` must hold numbers (categorical features as integer codes, NaN for missing), got dtype {rows.dtype}"
            )
        return rows

    def _raw_scores_of_leaves(self, leaves: IndexArray) -> FloatArray:
        return _sum_leaf_values(np.ascontiguousarray(leaves), self.leaf_values_)

    def _contributions_of_leaves(self, leaves: IndexArray) -> FloatArray:
        return _sum_leaf_contributions(
            np.ascontiguousarray(leaves),
            self.leaf_contrib_indptr_,
            self.leaf_contrib_features_,
            self.leaf_contrib_values_,
            self.n_features_,
        )


@compiled
def _sum_leaf_values(leaves: IndexArray, leaf_values: FloatArray) -> FloatArray:
    """Each row's sum of its leaves' values, tree by tree: the order in which LightGBM adds them up."""
    n_rows, n_trees = leaves.shape
    scores = np.zeros(n_rows)
    for row in range(n_rows):
        total = 0.0
        for tree in range(n_trees):
            total += leaf_values[leaves[row, tree]]
        scores[row] = total
    return scores


@compiled
def _sum_leaf_contributions(
    leaves: IndexArray,
    indptr: IndexArray,
    features: npt.NDArray[np.int32],
    values: FloatArray,
    n_features: int,
) -> FloatArray:
    """Each row's sum of its leaves' rows of the sparse leaf table, (n_rows, n_features)."""
    n_rows, n_trees = leaves.shape
    summed = np.zeros((n_rows, n_features))
    for row in range(n_rows):
        for tree in range(n_trees):
            leaf = leaves[row, tree]
            for entry in range(indptr[leaf], indptr[leaf + 1]):
                summed[row, features[entry]] += values[entry]
    return summed


@compiled
def _top_features_of_leaves(
    leaves: IndexArray,
    indptr: IndexArray,
    features: npt.NDArray[np.int32],
    values: FloatArray,
    n_features: int,
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """`_top_k` (positive only) of `_sum_leaf_contributions`: per row its k best features and how many."""
    top, _, counts = _top_k(_sum_leaf_contributions(leaves, indptr, features, values, n_features), k, True)
    return top, counts


def _node_value(node: Mapping[str, Any]) -> float:
    # LightGBM dumps internal values to 6 significant digits and leaf values in full, so one split's
    # contribution may be off by about 1e-6 of the node value, but a path's contributions still add up
    # exactly to its leaf value minus the root value: the rounding cancels along the path.
    return float(node["leaf_value"] if "leaf_value" in node else node["internal_value"])


def _leaf_paths(
    tree: Mapping[str, Any], index: int, n_features: int
) -> tuple[float, list[tuple[float, list[tuple[int, float]]]]]:
    """One dumped tree → its root value and, per leaf (in leaf-index order), its value and its contributions.

    A leaf's contributions are (feature, summed child − parent values) over the splits on its path,
    sorted by feature; a single-leaf tree has one leaf with none.
    """
    try:
        n_leaves = int(tree["num_leaves"])
        root = tree["tree_structure"]
        root_value = _node_value(root)
        found: list[tuple[float, list[tuple[int, float]]] | None] = [None] * n_leaves
        # An explicit stack: leaf-wise trees can be deeper than Python's recursion limit.
        stack: list[tuple[Mapping[str, Any], float, tuple[tuple[int, float], ...]]] = [(root, root_value, ())]
        while stack:
            node, value, path = stack.pop()
            if "leaf_value" in node:
                if "leaf_coeff" in node:
                    raise ModelError(
                        f"tree {index}: linear trees (linear_tree=True) are not supported: "
                        "their leaves are functions of the features"
                    )
                summed: dict[int, float] = {}
                for feature, delta in path:
                    summed[feature] = summed.get(feature, 0.0) + delta
                found[int(node.get("leaf_index", 0))] = (
                    value,
                    [(f, d) for f, d in sorted(summed.items()) if d != 0.0],
                )
                continue
            feature = int(node["split_feature"])
            if not 0 <= feature < n_features:
                raise ModelError(f"tree {index}: split on feature {feature}, outside [0, {n_features})")
            for child in (node["left_child"], node["right_child"]):
                child_value = _node_value(child)
                stack.append((child, child_value, (*path, (feature, child_value - value))))
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ModelError(f"tree {index}: unexpected structure in dump_model ({error!r})") from error
    missing = [leaf for leaf, entry in enumerate(found) if entry is None]
    if missing:
        raise ModelError(f"tree {index}: leaves {missing} are not reachable from the root")
    return root_value, [entry for entry in found if entry is not None]
