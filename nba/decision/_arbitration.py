"""Arbitration: candidates' adoption chances, values and levers → the top K, diverse, in a fixed order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.vocab import MAX_SUGGESTIONS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ArbitrationConfig:
    """How suggestions are ranked: priority = p_adopt × value_usd^gamma × lever, top K with diversity.

    gamma = 0 ranks by the chance the cardholder acts on a suggestion (the value is still shown);
    gamma = 1 ranks by expected dollars to the cardholder.
    """

    gamma: float = 0.0
    top_k: int = 3
    diversity: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 3.0:
            raise ValueError(f"`gamma` must be a float in [0, 3], got {self.gamma!r}")
        if not 1 <= self.top_k <= MAX_SUGGESTIONS:
            raise ValueError(f"`top_k` must be an int in [1, {MAX_SUGGESTIONS}], got {self.top_k!r}")


def compute_priority(
    p_adopt: FloatArray, value_usd: FloatArray, lever: FloatArray, gamma: float
) -> FloatArray:
    """p_adopt × value_usd^gamma × lever (value floored at one cent so a zero value does not erase p)."""
    if gamma == 0.0:
        result: FloatArray = p_adopt * lever
        return result
    scaled: FloatArray = p_adopt * np.power(np.maximum(value_usd, 0.01), gamma) * lever
    return scaled


def select_diverse(priority: FloatArray, categories: BoolArray, k: int, diversity: bool = True) -> IntArray:
    """Positions of the chosen candidates, best first.

    Sorted by priority, highest first (NaN last); ties keep the candidates' given order, so the same
    input always gives the same answer. With diversity, a candidate sharing a spend category with one
    already chosen waits until nothing else is left.

    Raises ValueError when `categories` is not one row per candidate or `k` is negative (the compiled
    choice reads rows unchecked).
    """
    priority = np.ascontiguousarray(priority, dtype=np.float64)
    categories = np.ascontiguousarray(categories, dtype=np.bool_)
    if priority.ndim != 1 or categories.ndim != 2 or len(categories) != len(priority):
        raise ValueError(
            f"`priority` must be 1-D and `categories` one row per candidate; got shapes {priority.shape} "
            f"and {categories.shape}"
        )
    if k < 0:
        raise ValueError(f"`k` must be >= 0, got {k}")
    return _select_diverse(priority, categories, int(k), bool(diversity))


@compiled
def _select_diverse(priority: FloatArray, categories: BoolArray, k: int, diversity: bool) -> IntArray:
    # Compiled: the request path chooses from a handful of candidates, where a Python loop over numpy
    # rows cost ~10 µs; evaluation chooses for every cardholder of a held-out month.
    order = np.argsort(-priority, kind="mergesort")  # stable, NaN last: numpy's argsort(kind="stable")
    n = min(k, len(order))
    if not diversity:
        return order[:n].astype(np.int64)
    chosen = np.empty(n, dtype=np.int64)
    waiting = np.empty(len(order), dtype=np.int64)
    covered = np.zeros(categories.shape[1], dtype=np.bool_)
    n_chosen = 0
    n_waiting = 0
    for position in order:
        if n_chosen == n:
            break
        shares = False
        for c in range(categories.shape[1]):
            if categories[position, c] and covered[c]:
                shares = True
                break
        if shares:
            waiting[n_waiting] = position
            n_waiting += 1
            continue
        chosen[n_chosen] = position
        n_chosen += 1
        for c in range(categories.shape[1]):
            covered[c] |= categories[position, c]
    for i in range(min(n - n_chosen, n_waiting)):
        chosen[n_chosen] = waiting[i]
        n_chosen += 1
    return chosen[:n_chosen]


def select_by_group(
    group_ids: npt.NDArray[np.int64],
    priority: FloatArray,
    categories: BoolArray,
    k: int,
    diversity: bool = True,
) -> tuple[IntArray, IntArray]:
    """Top k per group for a batch: (row indices chosen, their rank from 1), groups in first-seen order.

    Rows of one group must be contiguous (sort by group first).
    """
    if len(group_ids) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(np.r_[True, group_ids[1:] != group_ids[:-1]])
    ends = np.r_[starts[1:], len(group_ids)]
    rows: list[IntArray] = []
    ranks: list[IntArray] = []
    for start, end in zip(starts, ends, strict=True):
        picked = select_diverse(priority[start:end], categories[start:end], k, diversity)
        rows.append(picked + start)
        ranks.append(np.arange(1, len(picked) + 1, dtype=np.int64))
    return np.concatenate(rows), np.concatenate(ranks)
