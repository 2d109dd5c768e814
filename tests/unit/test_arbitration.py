"""Arbitration: priority, deterministic ties, diversity across spend categories, batch top K, the value floor."""

from __future__ import annotations

import numpy as np
import pytest

from nba.decision._arbitration import (
    ArbitrationConfig,
    compute_priority,
    judged_value,
    select_by_group,
    select_diverse,
    worth_saying,
)
from nba.vocab import DEFAULT_VALUE_FLOOR_USD


def test_priority_with_gamma_zero_ignores_value_and_applies_lever() -> None:
    p = np.array([0.2, 0.1])
    value = np.array([10.0, 1000.0])
    lever = np.array([1.0, 1.5])
    np.testing.assert_allclose(compute_priority(p, value, lever, 0.0), [0.2, 0.15])
    np.testing.assert_allclose(compute_priority(p, value, lever, 1.0), [2.0, 150.0])


def test_ties_keep_the_given_order() -> None:
    cats = np.zeros((4, 16), dtype=bool)
    assert select_diverse(np.array([0.5, 0.5, 0.7, 0.5]), cats, 3).tolist() == [2, 0, 1]


def test_diversity_skips_a_second_suggestion_for_the_same_category_unless_nothing_else_is_left() -> None:
    cats = np.zeros((4, 16), dtype=bool)
    cats[0, 0] = cats[1, 0] = True  # two dining benefits
    cats[2, 3] = True
    cats[3, 0] = cats[3, 5] = True  # dining and transit
    priority = np.array([0.9, 0.8, 0.1, 0.05])
    assert select_diverse(priority, cats, 2).tolist() == [0, 2]
    assert select_diverse(priority, cats, 4).tolist() == [0, 2, 1, 3]
    assert select_diverse(priority, cats, 2, diversity=False).tolist() == [0, 1]


def _naive_top_k(groups: list[int], priority: list[float], k: int) -> list[tuple[int, int]]:
    out = []
    for group in dict.fromkeys(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        members.sort(key=lambda i: (-priority[i], i))
        out += [(i, rank + 1) for rank, i in enumerate(members[:k])]
    return out


def test_batch_matches_a_naive_loop() -> None:
    rng = np.random.default_rng(3)
    groups = np.sort(rng.integers(0, 40, size=300)).astype(np.int64)
    priority = rng.integers(0, 5, size=300).astype(float)  # many ties
    rows, ranks = select_by_group(groups, priority, np.zeros((300, 16), dtype=bool), 3)
    assert list(zip(rows.tolist(), ranks.tolist(), strict=True)) == _naive_top_k(
        groups.tolist(), priority.tolist(), 3
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, r"`top_k` must be an int in \[1, 10\], got 0$"),
        ({"top_k": 11}, r"got 11$"),
        ({"gamma": -1.0}, r"`gamma` must be a float in \[0, 3\], got -1.0$"),
        ({"value_floor_usd": -1.0}, r"`value_floor_usd` must be a float in \[0, 10000\], got -1.0$"),
        ({"value_floor_usd": float("nan")}, r"`value_floor_usd` must be a float in \[0, 10000\], got nan$"),
    ],
)
def test_bad_config(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArbitrationConfig(**kwargs)  # type: ignore[arg-type]


def _naive_select_diverse(
    priority: list[float], categories: list[set[int]], k: int, diversity: bool
) -> list[int]:
    # Highest first, NaN last, ties in the given order; a shared category waits for what is left.
    order = sorted(range(len(priority)), key=lambda i: (priority[i] != priority[i], -priority[i], i))
    if not diversity:
        return order[:k]
    chosen: list[int] = []
    waiting: list[int] = []
    covered: set[int] = set()
    for i in order:
        if len(chosen) == k:
            break
        if categories[i] & covered:
            waiting.append(i)
        else:
            chosen.append(i)
            covered |= categories[i]
    return chosen + waiting[: k - len(chosen)]


def test_the_compiled_choice_matches_a_naive_loop_with_ties_nan_and_shared_categories() -> None:
    rng = np.random.default_rng(11)
    for _ in range(3000):
        n = int(rng.integers(0, 25))
        k = int(rng.integers(1, 8))
        priority = rng.integers(0, 4, n).astype(float)  # many ties
        if n and rng.random() < 0.3:
            priority[rng.integers(0, n)] = np.nan
        cats = rng.random((n, 16)) < 0.1
        diversity = bool(rng.random() < 0.8)
        expected = _naive_select_diverse(
            priority.tolist(), [set(np.flatnonzero(row).tolist()) for row in cats], k, diversity
        )
        got = select_diverse(priority, cats, k, diversity)
        assert got.dtype == np.int64
        assert got.tolist() == expected, (priority, k, diversity)


def test_the_choice_refuses_categories_that_are_not_one_row_per_candidate() -> None:
    with pytest.raises(ValueError, match=r"one row per candidate; got shapes \(3,\) and \(2, 16\)"):
        select_diverse(np.array([0.3, 0.2, 0.5]), np.zeros((2, 16), dtype=bool), 3)
    with pytest.raises(ValueError, match="`k` must be >= 0, got -1"):
        select_diverse(np.array([0.3]), np.zeros((1, 16), dtype=bool), -1)
    assert select_diverse(np.array([0.3]), np.zeros((1, 16), dtype=bool), 0).tolist() == []


def test_the_default_floor_is_twelve_dollars_a_year() -> None:
    assert ArbitrationConfig().value_floor_usd == DEFAULT_VALUE_FLOOR_USD == 12.0


def test_a_benefit_without_a_dollar_estimate_is_judged_by_its_nominal_value() -> None:
    value = np.array([4.0, 12.0, np.nan, np.nan, 30.0])
    nominal = np.array([50.0, 0.0, 50.0, 5.0, 0.0])
    assert judged_value(value, nominal).tolist() == [4.0, 12.0, 50.0, 5.0, 30.0]
    assert worth_saying(value, nominal, 12.0).tolist() == [False, True, True, False, True]
    # A floor of 0 keeps everything, a NaN with no nominal value too.
    assert worth_saying(value, nominal, 0.0).all()


def _naive_floor_top_k(
    groups: list[int], priority: list[float], keep: list[bool], k: int
) -> list[tuple[int, int]]:
    out = []
    for group in dict.fromkeys(groups):
        members = [i for i, g in enumerate(groups) if g == group and keep[i]]
        members.sort(key=lambda i: (-priority[i], i))
        out += [(i, rank + 1) for rank, i in enumerate(members[:k])]
    return out


def test_the_floor_applies_before_the_top_k_so_a_group_may_get_fewer_or_none() -> None:
    rng = np.random.default_rng(5)
    groups = np.sort(rng.integers(0, 40, size=300)).astype(np.int64)
    priority = rng.random(300)
    keep = rng.random(300) < 0.4
    rows, ranks = select_by_group(groups, priority, np.zeros((300, 16), dtype=bool), 3, keep=keep)
    expected = _naive_floor_top_k(groups.tolist(), priority.tolist(), keep.tolist(), 3)
    assert list(zip(rows.tolist(), ranks.tolist(), strict=True)) == expected
    per_group = np.bincount(groups[rows], minlength=40)
    assert (per_group < 3).any() and (per_group == 3).any()
    # The best of a group below the floor is never chosen, however high its priority.
    assert keep[rows].all()
