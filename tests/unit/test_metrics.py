"""Metrics and plots: every metric equals a slow, obvious loop written here; IPS is unbiased by simulation."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import ndcg_score

from training import plots
from training.metrics import (
    OffPolicyEstimate,
    calibration_table,
    classification_metrics,
    estimate_off_policy,
    expected_adoptions_at_k,
    lift_by_decile,
    map_at_k,
    ndcg_at_k,
    oracle_ratio,
)

# ---------------------------------------------------------------------------------------------------
# Naive reference implementations: plain loops, no cleverness.


def naive_auc(y: list[int], p: list[float]) -> float:
    positives = [pi for yi, pi in zip(y, p, strict=True) if yi == 1]
    negatives = [pi for yi, pi in zip(y, p, strict=True) if yi == 0]
    wins = 0.0
    for pos in positives:
        for neg in negatives:
            wins += 1.0 if pos > neg else 0.5 if pos == neg else 0.0
    return wins / (len(positives) * len(negatives))


def naive_log_loss(y: list[int], p: list[float]) -> float:
    return -sum(math.log(pi) if yi else math.log(1 - pi) for yi, pi in zip(y, p, strict=True)) / len(y)


def naive_brier(y: list[int], p: list[float]) -> float:
    return sum((pi - yi) ** 2 for yi, pi in zip(y, p, strict=True)) / len(y)


def naive_ece(y: list[int], p: list[float], n_bins: int) -> tuple[list[int], float]:
    """Quantile bins as scikit-learn draws them; a row goes to the bin after every inner edge below it."""
    edges = list(np.percentile(p, np.linspace(0, 100, n_bins + 1)))
    members: dict[int, list[int]] = defaultdict(list)
    for i, pi in enumerate(p):
        members[sum(1 for edge in edges[1:-1] if edge < pi)].append(i)
    counts, ece = [], 0.0
    for b in sorted(members):
        rows = members[b]
        counts.append(len(rows))
        gap = abs(sum(y[i] for i in rows) / len(rows) - sum(p[i] for i in rows) / len(rows))
        ece += len(rows) / len(y) * gap
    return counts, ece


def naive_lift(y: list[int], p: list[float]) -> dict[int, tuple[int, float, float]]:
    """Decile (1 = top) → (count, rate, lift); ties keep row order."""
    ranked = sorted(range(len(y)), key=lambda i: -p[i])
    base = sum(y) / len(y)
    out: dict[int, tuple[int, float, float]] = {}
    for d in range(10):
        rows = [i for r, i in enumerate(ranked) if r * 10 // len(y) == d]
        if rows:
            rate = sum(y[i] for i in rows) / len(rows)
            out[d + 1] = (len(rows), rate, rate / base)
    return out


def by_group(group_ids: npt.NDArray[Any]) -> dict[Any, list[int]]:
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, g in enumerate(group_ids.tolist()):
        groups[g].append(i)
    return groups


def ranked(rows: list[int], scores: npt.NDArray[Any]) -> list[int]:
    """Python's sort is stable: equal scores keep row order, the documented tie rule."""
    return sorted(rows, key=lambda i: -float(scores[i]))


def naive_ndcg(group_ids: npt.NDArray[Any], scores: npt.NDArray[Any], rel: npt.NDArray[Any], k: int) -> float:
    values = []
    for rows in by_group(group_ids).values():
        dcg = sum(float(rel[i]) / math.log2(r + 2) for r, i in enumerate(ranked(rows, scores)[:k]))
        ideal = sum(
            g / math.log2(r + 2)
            for r, g in enumerate(sorted((float(rel[i]) for i in rows), reverse=True)[:k])
        )
        if ideal > 0:
            values.append(dcg / ideal)
    return sum(values) / len(values)


def naive_map(group_ids: npt.NDArray[Any], scores: npt.NDArray[Any], rel: npt.NDArray[Any], k: int) -> float:
    values = []
    for rows in by_group(group_ids).values():
        n_relevant = sum(int(rel[i]) for i in rows)
        if n_relevant == 0:
            continue
        hits, total = 0, 0.0
        for r, i in enumerate(ranked(rows, scores)[:k]):
            if rel[i] == 1:
                hits += 1
                total += hits / (r + 1)
        values.append(total / min(k, n_relevant))
    return sum(values) / len(values)


def naive_expected(
    group_ids: npt.NDArray[Any], scores: npt.NDArray[Any], p: npt.NDArray[Any], k: int
) -> float:
    groups = by_group(group_ids)
    return sum(sum(float(p[i]) for i in ranked(rows, scores)[:k]) for rows in groups.values()) / len(groups)


# ---------------------------------------------------------------------------------------------------
# Data


def random_groups(seed: int, n_groups: int = 300) -> dict[str, npt.NDArray[Any]]:
    """Groups of 1 to 8 items with string ids, rows shuffled, scores with many ties."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, size=n_groups)
    ids = np.repeat(np.array([f"call-{g}" for g in range(n_groups)], dtype=object), sizes)
    n = ids.size
    p_true = rng.uniform(0.0, 0.5, size=n)
    order = rng.permutation(n)
    return {
        "group_ids": ids[order],
        "scores": np.round(p_true + rng.normal(0.0, 0.1, size=n), 1)[order],  # one decimal: ties
        "p_true": p_true[order],
        "labels": (rng.random(n) < p_true).astype(np.int64)[order],
    }


@pytest.fixture(scope="module")
def groups() -> dict[str, npt.NDArray[Any]]:
    return random_groups(seed=3)


# ---------------------------------------------------------------------------------------------------
# Probability quality


def test_classification_metrics_equal_naive_loops() -> None:
    rng = np.random.default_rng(0)
    p = np.round(rng.uniform(0.01, 0.99, size=400), 2)  # rounded: tied scores across classes
    y = (rng.random(400) < p).astype(int)
    m = classification_metrics(y, p)
    assert m.auc == pytest.approx(naive_auc(y.tolist(), p.tolist()))
    assert m.log_loss == pytest.approx(naive_log_loss(y.tolist(), p.tolist()))
    assert m.brier == pytest.approx(naive_brier(y.tolist(), p.tolist()))
    assert m.n == 400
    assert m.base_rate == pytest.approx(sum(y.tolist()) / 400)
    assert m.mean_prediction == pytest.approx(sum(p.tolist()) / 400)
    assert m.auc_note == ""


@pytest.mark.parametrize(("label", "word"), [(0, "nobody adopted"), (1, "everyone adopted")])
def test_classification_metrics_with_one_class_say_auc_is_undefined(label: int, word: str) -> None:
    y = np.full(5, label)
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    m = classification_metrics(y, p)
    assert math.isnan(m.auc)
    assert "AUC undefined" in m.auc_note and word in m.auc_note
    assert m.log_loss == pytest.approx(naive_log_loss(y.tolist(), p.tolist()))
    assert m.brier == pytest.approx(naive_brier(y.tolist(), p.tolist()))


def test_calibration_table_matches_scikit_learn_bins_and_naive_ece() -> None:
    rng = np.random.default_rng(1)
    p = np.round(rng.beta(1.0, 6.0, size=3000), 2)  # rounded: ties on the edges make bins unequal
    y = (rng.random(3000) < np.clip(p * 1.3, 0, 1)).astype(int)  # under-predicts: a real gap
    table = calibration_table(y, p, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(table.observed_rate, prob_true)
    np.testing.assert_allclose(table.mean_predicted, prob_pred)
    counts, ece = naive_ece(y.tolist(), p.tolist(), 10)
    assert list(table.count) == counts and sum(table.count) == table.n == 3000
    assert table.ece == pytest.approx(ece)
    assert table.ece > 0.01
    assert len(set(table.count)) > 1, "unequal bins, so a count-weighted ECE differs from a plain mean"


def test_calibration_table_merges_bins_when_predictions_repeat() -> None:
    p = np.array([0.1] * 50 + [0.3] * 50)
    y = np.array([0] * 45 + [1] * 5 + [0] * 35 + [1] * 15)
    table = calibration_table(y, p, n_bins=10)
    assert table.count == (50, 50)
    assert table.observed_rate == pytest.approx((0.1, 0.3))
    assert table.ece == pytest.approx(0.0)


def test_lift_by_decile_equals_naive_loop_with_ties() -> None:
    rng = np.random.default_rng(2)
    p = np.round(rng.random(1003), 1)
    y = (rng.random(1003) < p).astype(int)
    table = lift_by_decile(y, p)
    expected = naive_lift(y.tolist(), p.tolist())
    assert table.decile == tuple(range(1, 11))
    assert table.count == tuple(c for c, _, _ in expected.values())
    assert table.rate == pytest.approx([r for _, r, _ in expected.values()])
    assert table.lift == pytest.approx([lift for _, _, lift in expected.values()])
    assert table.cumulative_capture[-1] == pytest.approx(1.0)
    assert table.lift[0] > 1.5 > table.lift[-1]


# ---------------------------------------------------------------------------------------------------
# Ranking over groups


@pytest.mark.parametrize("k", [1, 3, 5])
def test_ranking_metrics_equal_naive_loops_over_groups(groups: dict[str, npt.NDArray[Any]], k: int) -> None:
    g, s, p, y = groups["group_ids"], groups["scores"], groups["p_true"], groups["labels"]
    assert ndcg_at_k(g, s, y, k=k) == pytest.approx(naive_ndcg(g, s, y, k))
    assert ndcg_at_k(g, s, p, k=k) == pytest.approx(naive_ndcg(g, s, p, k))
    assert map_at_k(g, s, y, k=k) == pytest.approx(naive_map(g, s, y, k))
    assert expected_adoptions_at_k(g, s, p, k=k) == pytest.approx(naive_expected(g, s, p, k))


def test_integer_and_string_group_ids_give_the_same_results(groups: dict[str, npt.NDArray[Any]]) -> None:
    g, s, p = groups["group_ids"], groups["scores"], groups["p_true"]
    as_ints = np.array([int(text.removeprefix("call-")) for text in g])
    assert ndcg_at_k(as_ints, s, p) == pytest.approx(ndcg_at_k(g, s, p))
    assert map_at_k(as_ints, s, groups["labels"]) == pytest.approx(map_at_k(g, s, groups["labels"]))
    assert oracle_ratio(as_ints, s, p).ratio == pytest.approx(oracle_ratio(g, s, p).ratio)


def test_ndcg_agrees_with_scikit_learn_on_equal_sized_groups() -> None:
    rng = np.random.default_rng(4)
    relevance = rng.integers(0, 4, size=(200, 6)).astype(float)
    relevance[:, 0] = np.maximum(relevance[:, 0], 1.0)  # every group has something relevant
    scores = rng.random((200, 6))
    group_ids = np.repeat(np.arange(200), 6)
    ours = ndcg_at_k(group_ids, scores.ravel(), relevance.ravel(), k=3)
    assert ours == pytest.approx(ndcg_score(relevance, scores, k=3))


def test_ties_in_scores_go_to_the_earlier_row() -> None:
    group_ids = np.array([7, 7, 7])
    scores = np.array([0.5, 0.5, 0.1])
    assert ndcg_at_k(group_ids, scores, np.array([0, 1, 0]), k=1) == 0.0
    assert ndcg_at_k(group_ids, scores, np.array([1, 0, 0]), k=1) == 1.0
    assert map_at_k(group_ids, scores, np.array([0, 1, 0]), k=2) == pytest.approx(0.5)
    assert expected_adoptions_at_k(group_ids, scores, np.array([0.1, 0.9, 0.2]), k=1) == pytest.approx(0.1)
    assert expected_adoptions_at_k(group_ids, scores, np.array([0.9, 0.1, 0.2]), k=1) == pytest.approx(0.9)


def test_groups_without_relevant_items_are_left_out_of_ndcg_and_map() -> None:
    group_ids = np.array(["a", "a", "b", "b"])
    scores = np.array([0.9, 0.1, 0.9, 0.1])
    relevance = np.array([1, 0, 0, 0])
    assert ndcg_at_k(group_ids, scores, relevance) == 1.0
    assert map_at_k(group_ids, scores, relevance) == 1.0
    assert math.isnan(map_at_k(group_ids, scores, np.zeros(4)))
    assert math.isnan(ndcg_at_k(group_ids, scores, np.zeros(4)))


def test_expected_adoptions_average_over_every_group_even_small_ones() -> None:
    group_ids = np.array([1, 2, 2, 2, 2])
    scores = np.array([0.3, 0.4, 0.3, 0.2, 0.1])
    p_true = np.array([0.5, 0.1, 0.2, 0.3, 0.4])
    assert expected_adoptions_at_k(group_ids, scores, p_true, k=3) == pytest.approx((0.5 + 0.6) / 2)


def test_oracle_ratio_is_one_for_the_oracle_and_below_for_worse_rankings(
    groups: dict[str, npt.NDArray[Any]],
) -> None:
    g, s, p = groups["group_ids"], groups["scores"], groups["p_true"]
    perfect = oracle_ratio(g, p, p, k=2)
    assert perfect.ratio == 1.0 and perfect.model == perfect.oracle
    assert oracle_ratio(g, np.log(p / (1 - p)), p, k=2).ratio == pytest.approx(1.0)  # any monotone transform
    noisy, reversed_ = oracle_ratio(g, s, p, k=2), oracle_ratio(g, -p, p, k=2)
    assert reversed_.ratio < noisy.ratio < 1.0
    assert noisy.model == pytest.approx(naive_expected(g, s, p, 2))
    assert noisy.oracle == pytest.approx(naive_expected(g, p, p, 2))
    assert noisy.ratio == pytest.approx(noisy.model / noisy.oracle)
    assert (noisy.k, noisy.n_groups) == (2, len(set(g.tolist())))


# ---------------------------------------------------------------------------------------------------
# Off-policy evaluation


def simulate_logs(n_calls: int, seed: int) -> tuple[dict[str, Any], float]:
    """Five eligible benefits per call; the logging policy shows each independently with a known chance,
    lower for benefits more likely to be adopted; the new policy shows the top 2 by a noisy score.

    Returns the arguments of `estimate_off_policy` (about 3% of calls have no logged row, so `n_calls` is
    among them) and the true expected adoptions per call of the new policy on these calls.
    """
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.02, 0.4, size=(n_calls, 5))
    logging_prob = 0.9 - 2.0 * p_true + rng.uniform(-0.05, 0.05, size=p_true.shape)
    new_score = p_true + rng.normal(0.0, 0.05, size=p_true.shape)
    in_new_top2 = np.argsort(np.argsort(-new_score, axis=1), axis=1) < 2
    truth = float((p_true * in_new_top2).sum(axis=1).mean())
    logged = rng.random(p_true.shape) < logging_prob
    adopted = rng.random(p_true.shape) < p_true
    call_ids = np.repeat(np.arange(n_calls), 5).reshape(n_calls, 5)
    rows = {
        "n_calls": n_calls,
        "call_ids": call_ids[logged],
        "logging_prob": logging_prob[logged],
        "reward": adopted[logged].astype(np.int64),
        "shown_by_new": in_new_top2[logged],
    }
    return rows, truth


def test_ips_and_snips_cover_the_true_value_where_the_unweighted_rate_does_not() -> None:
    rows, truth = simulate_logs(n_calls=20_000, seed=11)
    est = estimate_off_policy(**rows, new_slate_size=2.0)
    assert est.ips_ci[0] <= truth <= est.ips_ci[1]
    assert est.snips_per_call_ci[0] <= truth <= est.snips_per_call_ci[1]
    assert est.ips_ci[0] <= est.ips <= est.ips_ci[1]
    # The test can fail: ignoring the logging probabilities lands well outside the interval.
    shown = rows["shown_by_new"]
    unweighted = float(rows["reward"][shown].mean()) * 2.0
    assert not est.snips_per_call_ci[0] <= unweighted <= est.snips_per_call_ci[1]
    assert unweighted < truth - 0.02
    assert est.warning is None


def test_ips_is_unbiased_over_repeated_simulations() -> None:
    errors, errors_without_empty_calls = [], []
    for seed in range(40):
        rows, truth = simulate_logs(n_calls=5_000, seed=100 + seed)
        errors.append(estimate_off_policy(**rows, new_slate_size=2.0, n_bootstrap=1).ips - truth)
        rows.pop("n_calls")
        errors_without_empty_calls.append(
            estimate_off_policy(**rows, new_slate_size=2.0, n_bootstrap=1).ips - truth
        )

    def looks_unbiased(errors: list[float]) -> bool:
        standard_error = float(np.std(errors, ddof=1) / math.sqrt(len(errors)))
        assert standard_error < 0.005
        return abs(float(np.mean(errors))) < 3.0 * standard_error

    assert looks_unbiased(errors)
    # The check has the power to fail: leaving out the calls where the logging policy showed nothing
    # divides by too few calls, and is caught.
    assert not looks_unbiased(errors_without_empty_calls)


def test_off_policy_point_values_equal_a_naive_loop() -> None:
    rows, _ = simulate_logs(n_calls=300, seed=5)
    est = estimate_off_policy(**(rows | {"n_calls": 350}), new_slate_size=2.0)
    sum_wr = sum_w = sum_w2 = 0.0
    for prob, r, shown in zip(rows["logging_prob"], rows["reward"], rows["shown_by_new"], strict=True):
        w = 1.0 / prob if shown else 0.0
        sum_wr, sum_w, sum_w2 = sum_wr + w * r, sum_w + w, sum_w2 + w * w
    assert est.ips == pytest.approx(sum_wr / 350)
    assert est.snips_rate == pytest.approx(sum_wr / sum_w)
    assert est.snips_per_call == pytest.approx(2.0 * sum_wr / sum_w)
    assert est.ess == pytest.approx(sum_w**2 / sum_w2)
    assert est.logged_per_call == pytest.approx(rows["reward"].sum() / 350)
    assert est.logged_rate == pytest.approx(rows["reward"].mean())
    assert (est.n_calls, est.n_rows) == (350, rows["reward"].size)
    assert 0.0 <= est.snips_rate_ci[0] <= est.snips_rate <= est.snips_rate_ci[1] <= 1.0


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    rows, _ = simulate_logs(n_calls=500, seed=6)
    first = estimate_off_policy(**rows, new_slate_size=2.0, seed=1)
    assert estimate_off_policy(**rows, new_slate_size=2.0, seed=1) == first
    assert estimate_off_policy(**rows, new_slate_size=2.0, seed=2).ips_ci != first.ips_ci


def test_calls_without_logged_rows_count_in_per_call_means() -> None:
    rows, _ = simulate_logs(n_calls=400, seed=7)
    del rows["n_calls"]
    seen = estimate_off_policy(**rows, new_slate_size=2.0)
    assert seen.n_calls == len(set(rows["call_ids"].tolist())) < 400
    doubled = estimate_off_policy(**rows, new_slate_size=2.0, n_calls=2 * seen.n_calls)
    assert doubled.ips == pytest.approx(seen.ips / 2)
    assert doubled.snips_rate == pytest.approx(seen.snips_rate)


def _estimate(
    logging_prob: list[float], shown: list[bool], reward: list[int] | None = None
) -> OffPolicyEstimate:
    n = len(logging_prob)
    return estimate_off_policy(
        np.arange(n),
        np.array(logging_prob),
        np.array(reward if reward is not None else [1] * n),
        np.array(shown),
        new_slate_size=1.0,
        n_bootstrap=50,
    )


def test_warning_for_small_effective_sample_size() -> None:
    est = _estimate([0.5] * 30, [True] * 30)
    assert est.ess == pytest.approx(30.0)
    assert est.warning is not None and "effective sample size is 30.0" in est.warning
    assert est.snips_rate == 1.0


def test_warning_for_tiny_logging_probabilities_only_where_the_new_policy_shows() -> None:
    weighted = _estimate([0.5] * 299 + [0.005], [True] * 300)
    assert weighted.warning is not None and "probability 0.005" in weighted.warning
    assert weighted.min_weighted_logging_prob == 0.005
    unweighted = _estimate([0.5] * 299 + [0.005], [True] * 299 + [False])
    assert unweighted.warning is None


BAD_OFF_POLICY_INPUTS: list[tuple[dict[str, Any], str]] = [
    (
        {"logging_prob": np.where(np.arange(20) == 17, 0.0, 0.5)},
        r"`logging_prob` must be in \(0, 1\], got 0.0 at row 17",
    ),
    (
        {"logging_prob": np.where(np.arange(20) == 2, 1.5, 0.5)},
        r"`logging_prob` must be in \(0, 1\], got 1.5 at row 2",
    ),
    (
        {"logging_prob": np.where(np.arange(20) == 4, np.nan, 0.5)},
        r"`logging_prob` must be in \(0, 1\], got nan at row 4",
    ),
    ({"reward": np.where(np.arange(20) == 3, 2, 0)}, r"`reward` must hold only 0 and 1, got 2.0 at row 3"),
    ({"shown_by_new": np.full(20, 0.5)}, r"`shown_by_new` must hold only 0 and 1, got 0.5 at row 0"),
    ({"shown_by_new": np.array(["yes"] * 20)}, r"`shown_by_new` must hold numbers, got dtype <U3"),
    ({"reward": np.zeros(19)}, r"`reward` must have the same length as `call_ids` \(20\), got 19"),
    ({"call_ids": np.array([])}, r"`call_ids` must not be empty"),
    ({"logging_prob": np.full((20, 1), 0.5)}, r"`logging_prob` must be one-dimensional, got shape \(20, 1\)"),
    ({"new_slate_size": 0.0}, r"`new_slate_size` must be a positive number, got 0.0"),
    ({"n_calls": 5}, r"`n_calls` must be at least the number of distinct `call_ids` \(10\), got 5"),
    ({"n_calls": 0}, r"`n_calls` must be a positive integer, got 0"),
    ({"n_bootstrap": 0}, r"`n_bootstrap` must be a positive integer, got 0"),
    ({"confidence": 1.0}, r"`confidence` must be in \(0, 1\), got 1.0"),
]


@pytest.mark.parametrize(("change", "message"), BAD_OFF_POLICY_INPUTS)
def test_off_policy_inputs_are_checked_with_messages_naming_the_parameter(
    change: dict[str, Any], message: str
) -> None:
    good: dict[str, Any] = {
        "call_ids": np.repeat(np.arange(10), 2),
        "logging_prob": np.full(20, 0.5),
        "reward": np.zeros(20, dtype=int),
        "shown_by_new": np.ones(20, dtype=bool),
        "new_slate_size": 2.0,
    }
    with pytest.raises(ValueError, match=f"^{message}$"):
        estimate_off_policy(**(good | change))


G3 = np.array([1, 1, 2])
S3 = np.array([0.2, 0.1, 0.5])
BAD_METRIC_INPUTS: list[tuple[Callable[[], object], str]] = [
    (
        lambda: classification_metrics([0, 1, 2], [0.1, 0.2, 0.3]),
        r"`y_true` must hold only 0 and 1, got 2.0 at row 2",
    ),
    (
        lambda: classification_metrics([0, 1, 1], [0.1, 1.2, 0.3]),
        r"`p_pred` must be in \[0, 1\], got 1.2 at row 1",
    ),
    (
        lambda: classification_metrics([0, 1], [0.1, 0.2, 0.3]),
        r"`p_pred` must have the same length as `y_true` \(2\), got 3",
    ),
    (lambda: classification_metrics([], []), r"`y_true` must not be empty"),
    (lambda: calibration_table([0, 1], [0.1, 0.2], n_bins=0), r"`n_bins` must be a positive integer, got 0"),
    (lambda: lift_by_decile([0, 1], [0.1, np.inf]), r"`p_pred` must be finite, got inf at row 1"),
    (lambda: ndcg_at_k(G3, S3, [1, 0, 1], k=0), r"`k` must be a positive integer, got 0"),
    (lambda: ndcg_at_k(G3, S3, [1, 0, 1], k=True), r"`k` must be a positive integer, got True"),
    (lambda: ndcg_at_k(G3, S3, [1, -1, 1]), r"`relevance` must be ≥ 0, got -1.0 at row 1"),
    (lambda: ndcg_at_k(G3, [0.2, np.nan, 0.5], [1, 0, 1]), r"`scores` must be finite, got nan at row 1"),
    (lambda: map_at_k(G3, S3, [1, 0.5, 1]), r"`relevance` must hold only 0 and 1, got 0.5 at row 1"),
    (
        lambda: map_at_k(G3[:2], S3, [1, 0, 1]),
        r"`scores` must have the same length as `group_ids` \(2\), got 3",
    ),
    (lambda: expected_adoptions_at_k([], [], []), r"`group_ids` must not be empty"),
    (
        lambda: expected_adoptions_at_k(G3, S3, [0.1, 0.2, 1.5]),
        r"`p_true` must be in \[0, 1\], got 1.5 at row 2",
    ),
    (
        lambda: oracle_ratio(np.array([1, "a", None], dtype=object), S3, [0.1, 0.2, 0.3]),
        r"`group_ids` must be all",
    ),
]


@pytest.mark.parametrize(("call", "message"), BAD_METRIC_INPUTS)
def test_metric_inputs_are_checked_with_messages_naming_the_parameter(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------------
# Plots


def _png_shape(path: Path) -> tuple[int, ...]:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return tuple(matplotlib.image.imread(path).shape)


def test_every_plot_writes_an_800_by_500_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    p = rng.uniform(0.0, 0.3, size=2000)
    y = (rng.random(2000) < p).astype(int)
    group_ids = np.repeat(np.arange(400), 5)
    names = [
        f"spend_90d_usd_{i}" + ("_with_a_name_far_longer_than_any_axis_wants" if i % 7 == 0 else "")
        for i in range(40)
    ]
    written = [
        plots.plot_calibration(calibration_table(y, p), tmp_path / "calibration.png"),
        plots.plot_lift(lift_by_decile(y, p), tmp_path / "lift.png"),
        plots.plot_feature_importance(names, rng.gamma(1.0, 100.0, size=40), tmp_path / "importance.png"),
        plots.plot_model_vs_baselines(
            {"popularity": 0.61, "model": 0.72, "random": 0.5}, tmp_path / "baselines.png", "ROC AUC"
        ),
        plots.plot_oracle_ratio(
            {"model": oracle_ratio(group_ids, p, p), "random": oracle_ratio(group_ids, rng.random(2000), p)},
            tmp_path / "sub" / "oracle.png",
        ),
    ]
    for path in written:
        assert path.stat().st_size > 5_000, path
        assert _png_shape(path) == (500, 800, 4), path


def test_plots_are_byte_for_byte_reproducible(tmp_path: Path) -> None:
    results = {"model": 0.31, "popularity": 0.22}
    first = plots.plot_model_vs_baselines(results, tmp_path / "a.png", "Expected adoptions per call")
    second = plots.plot_model_vs_baselines(results, tmp_path / "b.png", "Expected adoptions per call")
    assert first.read_bytes() == second.read_bytes()


def test_plot_inputs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"`model_key` 'model' is not a key of `results`: \['random'\]"):
        plots.plot_model_vs_baselines({"random": 0.5}, tmp_path / "x.png", "AUC")
    with pytest.raises(ValueError, match=r"`gains` must have one value per name \(2\), got shape \(3,\)"):
        plots.plot_feature_importance(["a", "b"], [1.0, 2.0, 3.0], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"`gains` must be finite and ≥ 0, got -1.0 for 'b'"):
        plots.plot_feature_importance(["a", "b"], [1.0, -1.0], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_matplotlib_cache_moves_to_a_temp_dir_when_home_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plots._ensure_writable_mpl_config_dir()
    assert "MPLCONFIGDIR" not in os.environ

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    plots._ensure_writable_mpl_config_dir()
    config_dir = Path(os.environ["MPLCONFIGDIR"])
    assert config_dir.is_dir() and config_dir.name.startswith("nba-matplotlib-")
    config_dir.rmdir()
