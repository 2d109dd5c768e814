"""Trees: a LightGBM model dump → flat node arrays, and a compiled walker that sends rows to leaves as LightGBM does.

The request path cannot afford a booster call to learn which leaves a handful of rows land in: the call
costs ~25 µs before it walks a single tree (ctypes, a predictor set up per call). `flatten_trees` turns
the trees of `Booster.dump_model()` into one set of arrays; `leaves_of` walks them in compiled code
(numba) and returns exactly what `Booster.predict(X, pred_leaf=True)` returns, without that overhead.

"Exactly" means LightGBM's own decision rules (`include/LightGBM/tree.h`, `NumericalDecision` and
`CategoricalDecision`, and how `c_api.cpp` hands a dense row to them):

- any value with |x| <= kZeroThreshold reaches the tree as 0.0 (the C API drops it from the row);
- numerical split (`<=`): NaN counts as 0.0 unless the split's missing type is NaN; a missing value (0.0
  for missing type Zero, NaN for missing type NaN) goes to the default side; anything else goes left
  when x <= threshold;
- categorical split (`==`): NaN and codes below 0 go right (x is truncated toward zero first, so -0.5 is
  category 0), whatever the missing type; a code goes left when it is in the split's category set.

The dump writes thresholds to 17 significant digits, so they come back to the last bit, except that it
clamps them to ±1e300. LightGBM does split at +inf (every number left, only missing values may go right),
so a dumped 1e300 is read back as +inf.

Example:
    >>> trees = flatten_trees(booster.dump_model()["tree_info"], n_features=booster.num_feature())
    >>> leaves_of(trees, X)          # == booster.predict(X, pred_leaf=True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.errors import ModelError

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
Int32Array = npt.NDArray[np.int32]

# LightGBM's kZeroThreshold is `const double kZeroThreshold = 1e-35f`: the float 1e-35, widened.
K_ZERO_THRESHOLD: Final = float(np.float32(1e-35))
# A split's missing type, as tree.h numbers them (and dump_model names them).
MISSING_NONE: Final = 0
MISSING_ZERO: Final = 1
MISSING_NAN: Final = 2
_MISSING_TYPES: Final = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}
# What dump_model writes for a threshold of +inf (Common::AvoidInf clamps them to ±1e300).
_DUMPED_INFINITY: Final = 1e300


@dataclass(frozen=True, eq=False)
class FlatTrees:
    """The split nodes of a model's trees as arrays: what `leaves_of` walks.

    Tree t's split number s (LightGBM's `split_index`) is node `node_offsets[t] + s`; its root is
    `roots[t]`. A child (and a root) is a node number when >= 0 and `~leaf` (LightGBM's leaf index in
    that tree) when < 0, as in LightGBM's own arrays, so a single-leaf tree has root ~0 = -1.

    A categorical split's left categories are the bits of `category_bits[category_start[n]:
    category_end[n]]` (category c is bit c % 32 of word c // 32); numerical splits have an empty range.
    """

    n_features: int
    roots: Int32Array  # (n_trees,)
    node_offsets: Int32Array  # (n_trees + 1,)
    split_feature: Int32Array  # (n_nodes,)
    threshold: FloatArray  # (n_nodes,) numerical splits: x <= threshold goes left
    categorical: npt.NDArray[np.bool_]  # (n_nodes,) `==` split on category codes
    missing_type: npt.NDArray[np.int8]  # (n_nodes,) MISSING_NONE, MISSING_ZERO or MISSING_NAN
    default_left: npt.NDArray[np.bool_]  # (n_nodes,) where a missing value goes
    left_child: Int32Array  # (n_nodes,)
    right_child: Int32Array  # (n_nodes,)
    category_start: Int32Array  # (n_nodes,)
    category_end: Int32Array  # (n_nodes,)
    category_bits: npt.NDArray[np.uint32]

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])


def flatten_trees(trees: Sequence[Mapping[str, Any]], n_features: int) -> FlatTrees:
    """The trees of `dump_model()["tree_info"]` (any number of them, in order) → `FlatTrees`.

    Raises ModelError for a tree whose structure is not what LightGBM dumps: unknown decision or missing
    types, a split on a feature outside [0, n_features), negative category codes, split or leaf indices
    that do not number the tree's nodes and leaves.
    """
    roots: list[int] = []
    offsets = [0]
    nodes: list[dict[str, Any]] = []
    category_bits: list[int] = []
    for index, tree in enumerate(trees):
        try:
            n_splits = int(tree["num_leaves"]) - 1
            splits = _tree_nodes(tree["tree_structure"], n_splits, n_features)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ModelError(f"tree {index}: unexpected structure in dump_model ({error!r})") from error
        except ModelError as error:
            raise ModelError(f"tree {index}: {error}") from error
        offset = offsets[-1]
        roots.append(offset if n_splits > 0 else ~0)
        for node in splits:
            for side in ("left_child", "right_child"):
                if node[side] >= 0:  # a split of this tree: renumber it among all trees' splits
                    node[side] += offset
            node["category_start"] = len(category_bits)
            category_bits.extend(node.pop("category_words"))
            node["category_end"] = len(category_bits)
            nodes.append(node)
        offsets.append(offset + n_splits)

    def column(name: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
        return np.asarray([node[name] for node in nodes], dtype=dtype)

    return FlatTrees(
        n_features=n_features,
        roots=np.asarray(roots, dtype=np.int32),
        node_offsets=np.asarray(offsets, dtype=np.int32),
        split_feature=column("split_feature", np.int32),
        threshold=column("threshold", np.float64),
        categorical=column("categorical", np.bool_),
        missing_type=column("missing_type", np.int8),
        default_left=column("default_left", np.bool_),
        left_child=column("left_child", np.int32),
        right_child=column("right_child", np.int32),
        category_start=column("category_start", np.int32),
        category_end=column("category_end", np.int32),
        category_bits=np.asarray(category_bits, dtype=np.uint32),
    )


def _tree_nodes(root: Mapping[str, Any], n_splits: int, n_features: int) -> list[dict[str, Any]]:
    """One dumped tree → its split nodes as dicts, in `split_index` order, children numbered as in `FlatTrees`."""
    found: list[dict[str, Any] | None] = [None] * n_splits
    leaves_seen = 0
    # An explicit stack: leaf-wise trees can be deeper than Python's recursion limit.
    stack = [root]
    while stack:
        node = stack.pop()
        if "leaf_value" in node:
            leaves_seen += 1
            continue
        split = int(node["split_index"])
        feature = int(node["split_feature"])
        if not 0 <= feature < n_features:
            raise ModelError(f"split on feature {feature}, outside [0, {n_features})")
        decision = node["decision_type"]
        if decision not in ("<=", "=="):
            raise ModelError(f"split {split} has decision type {decision!r}, not '<=' or '=='")
        missing = node["missing_type"]
        if missing not in _MISSING_TYPES:
            raise ModelError(f"split {split} has missing type {missing!r}, not one of {list(_MISSING_TYPES)}")
        categorical = decision == "=="
        threshold = math.nan if categorical else float(node["threshold"])
        found[split] = {
            "split_feature": feature,
            "threshold": math.inf if threshold >= _DUMPED_INFINITY else threshold,
            "categorical": categorical,
            "missing_type": _MISSING_TYPES[missing],
            "default_left": bool(node["default_left"]),
            "left_child": _child_number(node["left_child"], n_splits),
            "right_child": _child_number(node["right_child"], n_splits),
            "category_words": _category_words(str(node["threshold"])) if categorical else [],
        }
        stack.extend((node["left_child"], node["right_child"]))
    missing_splits = [split for split, entry in enumerate(found) if entry is None]
    if missing_splits or leaves_seen != n_splits + 1:
        raise ModelError(
            f"{n_splits} splits and {n_splits + 1} leaves expected; splits {missing_splits} missing, "
            f"{leaves_seen} leaves found"
        )
    return [entry for entry in found if entry is not None]


def _child_number(child: Mapping[str, Any], n_splits: int) -> int:
    if "leaf_value" in child:
        leaf = int(child.get("leaf_index", 0))
        if not 0 <= leaf <= n_splits:
            raise ModelError(f"leaf index {leaf} outside [0, {n_splits}]")
        return ~leaf
    split = int(child["split_index"])
    if not 0 < split < n_splits:
        raise ModelError(f"split index {split} outside [1, {n_splits})")
    return split


def _category_words(threshold: str) -> list[int]:
    """'0||3||40' (the categories going left) → the bitset as 32-bit words: [0b1001, 1 << 8]."""
    codes = [int(code) for code in threshold.split("||")]
    if min(codes) < 0:
        raise ModelError(f"negative category code in the split's categories {threshold!r}")
    words = [0] * (max(codes) // 32 + 1)
    for code in codes:
        words[code // 32] |= 1 << (code % 32)
    return words


def leaves_of(trees: FlatTrees, X: npt.ArrayLike) -> IndexArray:
    """(n_rows, n_trees) LightGBM leaf indices of the rows of `X`: `Booster.predict(X, pred_leaf=True)`.

    `X` is a numeric (n_rows, n_features) array, categorical features as integer codes and NaN for
    missing; it is read as float64, as LightGBM reads it. Raises ValueError for another shape.
    """
    leaves: IndexArray = _walk(
        _rows_of(trees, X),
        trees.roots,
        trees.split_feature,
        trees.threshold,
        trees.categorical,
        trees.missing_type,
        trees.default_left,
        trees.left_child,
        trees.right_child,
        trees.category_start,
        trees.category_end,
        trees.category_bits,
    )
    return leaves


def _rows_of(trees: FlatTrees, X: npt.ArrayLike) -> FloatArray:
    rows = np.ascontiguousarray(X, dtype=np.float64)
    if not rows.flags.writeable:
        rows = rows.copy()  # numba compiles read-only arrays separately: that would be a request's cost
    if rows.ndim != 2 or rows.shape[1] != trees.n_features:
        # The walker reads X[row, split feature] unchecked: a narrower X would be read out of bounds.
        raise ValueError(
            f"`X` must be a 2-D array of shape (n_rows, {trees.n_features}), got shape {rows.shape}"
        )
    return rows


@compiled
def _walk(
    X: FloatArray,
    roots: Int32Array,
    split_feature: Int32Array,
    threshold: FloatArray,
    categorical: npt.NDArray[np.bool_],
    missing_type: npt.NDArray[np.int8],
    default_left: npt.NDArray[np.bool_],
    left_child: Int32Array,
    right_child: Int32Array,
    category_start: Int32Array,
    category_end: Int32Array,
    category_bits: npt.NDArray[np.uint32],
) -> IndexArray:
    n_rows = X.shape[0]
    n_trees = roots.shape[0]
    leaves = np.empty((n_rows, n_trees), dtype=np.intp)
    # Tree by tree, each row of the batch in turn: one tree's nodes stay in the core's cache while every
    # row walks it (a request's few rows fit there anyway; the whole model does not).
    for tree in range(n_trees):
        for row in range(n_rows):
            node = roots[tree]
            while node >= 0:
                x = X[row, split_feature[node]]
                if abs(x) <= K_ZERO_THRESHOLD:
                    x = 0.0  # c_api.cpp leaves such values out of the row, so the tree reads 0
                if categorical[node]:
                    # CategoricalDecision. `x > -1` is false for NaN and for int(x) < 0 (the cast
                    # truncates toward zero). Codes past the bitset are not in it; testing that before the
                    # cast also keeps inf and codes beyond int32 (an undefined cast in C++) out of it.
                    n_codes = (category_end[node] - category_start[node]) * 32
                    go_left = False
                    if x > -1.0 and x < n_codes:
                        code = int(x)
                        word = category_bits[category_start[node] + code // 32]
                        go_left = (word >> (code % 32)) & 1 == 1
                else:
                    # NumericalDecision.
                    missing = missing_type[node]
                    if math.isnan(x) and missing != MISSING_NAN:
                        x = 0.0
                    if (missing == MISSING_ZERO and x == 0.0) or (missing == MISSING_NAN and math.isnan(x)):
                        go_left = default_left[node]
                    else:
                        go_left = x <= threshold[node]
                node = left_child[node] if go_left else right_child[node]
            leaves[row, tree] = ~node
    return leaves
