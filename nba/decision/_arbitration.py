"""Arbitration: candidates' adoption chances, values and levers → the top K worth saying, diverse, in a fixed order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.vocab import (
    DEFAULT_DETRACTOR_WEIGHT,
    DEFAULT_VALUE_FLOOR_USD,
    MAX_DETRACTOR_WEIGHT,
    MAX_SUGGESTIONS,
    MAX_VALUE_FLOOR_USD,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ArbitrationConfig:
    """How suggestions are ranked: priority = p_adopt × value_usd^gamma × lever, top K with diversity.

    gamma = 0 ranks by the chance the cardholder acts on a suggestion (the value is still shown);
    gamma = 1 ranks by expected dollars to the cardholder.

    `value_floor_usd`: a candidate whose yearly value to this cardholder is estimated below it is not
    suggested at all (judged before the top K and the diversity rule; fewer than K may remain, none too).
    An agent who raises a $4 benefit on a live call spends the cardholder's goodwill on nothing.

    `detractor_weight` (λ): the NPS term, off at 0. Above 0 each candidate's ranking score (p_adopt, or the
    uplift of an uplift model) loses λ × the detractor chance the detractor model says the pitch adds to the
    call, before the value and lever weigh it, and a pitch left with nothing is not made
    (`with_detractor_cost`); the model folder must have a detractor model.
    """

    gamma: float = 0.0
    top_k: int = 3
    diversity: bool = True
    value_floor_usd: float = DEFAULT_VALUE_FLOOR_USD
    detractor_weight: float = DEFAULT_DETRACTOR_WEIGHT

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 3.0:
            raise ValueError(f"`gamma` must be a float in [0, 3], got {self.gamma!r}")
        if not 0.0 <= self.value_floor_usd <= MAX_VALUE_FLOOR_USD:
            raise ValueError(
                f"`value_floor_usd` must be a float in [0, {MAX_VALUE_FLOOR_USD:g}], got {self.value_floor_usd!r}"
            )
        if not 0.0 <= self.detractor_weight <= MAX_DETRACTOR_WEIGHT:
            raise ValueError(
                f"`detractor_weight` must be a float in [0, {MAX_DETRACTOR_WEIGHT:g}], got {self.detractor_weight!r}"
            )
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


def with_detractor_cost(score: FloatArray, added_detractors: FloatArray, weight: float) -> FloatArray:
    """The ranking score less the NPS term: score − weight × the detractor chance a pitch adds to its call; with a
    weight above 0 a pitch whose score does not exceed that is not made (−inf: `select_diverse` never shows it).

    Subtracted from the score the model ranks by, before the value and lever multiply it (`compute_priority`):
    at gamma 0 and lever 1 the weight is how many adoptions (or, for an uplift model, caused adoptions) one more
    detractor is worth giving up, the same trade on every benefit and on every call. A weight of 0 returns
    `score` itself.

    >>> with_detractor_cost(np.array([0.30, 0.25, 0.05]), np.array([0.40, 0.10, 0.20]), 0.5).round(3).tolist()
    [0.1, 0.2, -inf]
    """
    if weight == 0.0:
        return score
    adjusted = score - weight * added_detractors
    kept: FloatArray = np.where(adjusted > 0.0, adjusted, -np.inf)
    return kept


def judged_value(value_usd: FloatArray, nominal_value_usd: FloatArray) -> FloatArray:
    """The yearly value each candidate is held to the floor by: its estimate for this cardholder, or the
    catalog's nominal value where there is no dollar estimate (NaN: a figure the estimate needs is missing).

    >>> judged_value(np.array([4.0, np.nan]), np.array([0.0, 50.0])).tolist()
    [4.0, 50.0]
    """
    judged: FloatArray = np.where(np.isnan(value_usd), nominal_value_usd, value_usd)
    return judged


def worth_saying(value_usd: FloatArray, nominal_value_usd: FloatArray, floor_usd: float) -> BoolArray:
    """Which candidates are worth raising on a call: their `judged_value` reaches `floor_usd` (a floor of 0
    keeps every candidate, whatever its value)."""
    if floor_usd <= 0.0:
        return np.ones(len(value_usd), dtype=np.bool_)
    kept: BoolArray = judged_value(value_usd, nominal_value_usd) >= floor_usd
    return kept


def select_diverse(
    priority: FloatArray, categories: BoolArray, k: int, diversity: bool = True, leaves_out: bool = True
) -> IntArray:
    """Positions of the chosen candidates, best first.

    Sorted by priority, highest first (NaN last); ties keep the candidates' given order, so the same
    input always gives the same answer. A priority of −inf is never chosen (the NPS term's "not worth it").
    With diversity, a candidate sharing a spend category with one already chosen waits until nothing else
    is left. `leaves_out=False` says no priority can be −inf (the NPS term is off): the scan for them is
    skipped.

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
    never = np.isneginf(priority) if leaves_out else None
    if never is not None and never.any():  # pitches the NPS term leaves out (`with_detractor_cost`)
        showable = np.flatnonzero(~never)
        picked = _select_diverse(priority[showable], categories[showable], int(k), bool(diversity))
        result: IntArray = showable[picked]
        return result
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
    keep: BoolArray | None = None,
) -> tuple[IntArray, IntArray]:
    """Top k per group for a batch: (row indices chosen, their rank from 1), groups in first-seen order.

    Rows of one group must be contiguous (sort by group first). `keep`, when given, marks the rows that may
    be chosen at all (the value floor): a group with fewer kept rows than k gets fewer, possibly none.
    """
    if keep is not None:
        kept = np.flatnonzero(keep)
        picked, picked_ranks = select_by_group(
            group_ids[kept], priority[kept], categories[kept], k, diversity
        )
        return kept[picked], picked_ranks
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
