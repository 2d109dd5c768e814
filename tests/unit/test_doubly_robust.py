"""Doubly robust off-policy evaluation (`estimate_doubly_robust`): the same numbers as a slow loop, the
truth inside its interval when the outcome model is wrong, and a narrower interval than IPS's when it is
good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SampleModel
from training.metrics import estimate_doubly_robust, estimate_off_policy
from training.synth import (
    CALL_TRUTH_COLUMNS,
    TABLE_NAMES,
    generate_world,
)
from training.train_job import evaluate_model
from training.training_run import TrainOptions


def _simulate(n_calls: int, seed: int, model_error: float, model_bias: float) -> tuple[dict[str, Any], float]:
    """Five eligible benefits per call; the logging policy shows each with a known chance (lower for the
    likelier ones); the new policy shows its top 2 by a noisy score. The outcome model q̂ is p_true scaled
    by `model_bias` plus noise of sd `model_error`. Returns estimate_doubly_robust's arguments and the
    new policy's true adoptions per call."""
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.02, 0.4, size=(n_calls, 5))
    logging_prob = 0.9 - 2.0 * p_true + rng.uniform(-0.05, 0.05, size=p_true.shape)
    new_score = p_true + rng.normal(0.0, 0.05, size=p_true.shape)
    in_new_top2 = np.argsort(np.argsort(-new_score, axis=1), axis=1) < 2
    q_hat = np.clip(model_bias * p_true + rng.normal(0.0, model_error, p_true.shape), 0.0, 1.0)
    logged = rng.random(p_true.shape) < logging_prob
    adopted = rng.random(p_true.shape) < p_true
    call_ids = np.repeat(np.arange(n_calls), 5).reshape(n_calls, 5)
    rows = {
        "call_ids": call_ids[logged],
        "logging_prob": logging_prob[logged],
        "reward": adopted[logged].astype(np.int64),
        "shown_by_new": in_new_top2[logged],
        "predicted": q_hat[logged],
        "slate_call_ids": call_ids[in_new_top2],
        "slate_predicted": q_hat[in_new_top2],
    }
    return rows, float((p_true * in_new_top2).sum(axis=1).mean())


def _slow_dr(rows: dict[str, Any]) -> tuple[float, float]:
    """DR and SNDR by an obvious loop over calls."""
    calls = sorted(set(rows["call_ids"].tolist()) | set(rows["slate_call_ids"].tolist()))
    direct = residual = weight = 0.0
    for call in calls:
        direct += sum(
            q for c, q in zip(rows["slate_call_ids"], rows["slate_predicted"], strict=True) if c == call
        )
    for prob, r, shown, q in zip(
        rows["logging_prob"],
        rows["reward"],
        rows["shown_by_new"],
        rows["predicted"],
        strict=True,
    ):
        if shown:
            residual += (r - q) / prob
            weight += 1.0 / prob
    n = len(calls)
    slate = len(rows["slate_call_ids"]) / n
    return (direct + residual) / n, direct / n + residual / weight * slate


def test_dr_and_sndr_equal_a_slow_loop() -> None:
    rows, _ = _simulate(n_calls=300, seed=1, model_error=0.05, model_bias=0.8)
    est = estimate_doubly_robust(**rows, n_bootstrap=50)
    dr, sndr = _slow_dr(rows)
    assert est.dr == pytest.approx(dr, rel=1e-12)
    assert est.sndr == pytest.approx(sndr, rel=1e-12)
    assert est.n_calls == 300 and est.new_slate_size == 2.0
    assert est.dr_ci[0] <= est.dr <= est.dr_ci[1]


def test_a_wrong_outcome_model_is_corrected_by_the_logs() -> None:
    # q̂ at half the truth: the direct method misses badly; DR and SNDR hold the truth in their intervals.
    rows, truth = _simulate(n_calls=20_000, seed=7, model_error=0.05, model_bias=0.5)
    est = estimate_doubly_robust(**rows)
    assert not est.direct_ci[0] <= truth <= est.direct_ci[1]
    assert est.direct < truth - 0.1
    assert est.dr_ci[0] <= truth <= est.dr_ci[1]
    assert est.sndr_ci[0] <= truth <= est.sndr_ci[1]


def test_a_good_outcome_model_narrows_the_interval_below_ips() -> None:
    rows, truth = _simulate(n_calls=20_000, seed=8, model_error=0.02, model_bias=1.0)
    dr = estimate_doubly_robust(**rows)
    ips = estimate_off_policy(
        rows["call_ids"], rows["logging_prob"], rows["reward"], rows["shown_by_new"], new_slate_size=2.0
    )
    assert dr.dr_ci[0] <= truth <= dr.dr_ci[1]
    # Each adoption is a coin toss no model removes: the gain is the weights times the predictable part.
    assert dr.dr_ci[1] - dr.dr_ci[0] < 0.9 * (ips.ips_ci[1] - ips.ips_ci[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"logging_prob": 0.0}, r"`logging_prob` must be in \(0, 1\], got 0.0 at row 0"),
        ({"predicted": 1.5}, "`predicted`"),
        ({"slate_predicted": -0.1}, "`slate_predicted`"),
    ],
)
def test_bad_input_names_the_parameter(change: dict[str, float], message: str) -> None:
    rows, _ = _simulate(n_calls=20, seed=2, model_error=0.05, model_bias=1.0)
    for name, value in change.items():
        rows[name] = rows[name].astype(np.float64)
        rows[name][0] = value
    with pytest.raises(ValueError, match=message):
        estimate_doubly_robust(**rows, n_bootstrap=10)


# --- against the generator's truth ------------------------------------------------------------------------------


def test_call_truth_changes_no_row_of_the_world(tmp_path: Path) -> None:
    plain = generate_world(300, seed=6, out_dir=tmp_path / "plain" / "data")
    told = generate_world(300, seed=6, out_dir=tmp_path / "told" / "data", call_truth=True)
    assert plain.call_truth_path is None and told.call_truth_path is not None
    for name in TABLE_NAMES:
        pd.testing.assert_frame_equal(
            pd.read_parquet(plain.out_dir / f"{name}.parquet"),
            pd.read_parquet(told.out_dir / f"{name}.parquet"),
        )
    truth = pd.read_parquet(told.call_truth_path)
    named = CALL_TRUTH_COLUMNS
    ranks = ["expected_adoption_rank_1", "expected_adoption_rank_2", "expected_adoption_rank_3"]
    nps = [
        *(f"p_discussed_rank_{rank}" for rank in (1, 2, 3)),
        *(f"p_relevant_accept_rank_{rank}" for rank in (1, 2, 3)),
        "nps_points_if_discussed",
        "nps_latent_mean",
        "nps_tense",
    ]
    assert (
        list(truth.columns)
        == ["call_id", "benefit_id", *ranks, *nps]
        == ["call_id", "benefit_id", *named.ordered(3)]
    )
    # A default world has no pitch on the wrong call: a discussion costs points only for a benefit worth little.
    assert (truth[named.nps_points].isin([0.0, -0.5])).all()
    assert truth.groupby("call_id")[named.nps_mean].nunique().eq(1).all()
    assert not truth.duplicated(["call_id", "benefit_id"]).any()
    # Every benefit the logging policy showed was eligible on its call; lower ranks are discussed less.
    shown = pd.read_parquet(told.out_dir / "conversations.parquet")[["call_id", "benefit_id"]]
    assert len(shown.merge(truth, on=["call_id", "benefit_id"])) == len(shown)
    values = truth[ranks].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert (values[:, 0] >= values[:, 1]).all() and (values[:, 1] >= values[:, 2]).all()


@pytest.mark.slow  # a 4,000-cardholder world evaluated by the sample model
def test_dr_lands_near_the_true_value_of_each_policy_on_a_small_world(
    sample_model: SampleModel, tmp_path: Path
) -> None:
    world = generate_world(4_000, seed=21, out_dir=tmp_path / "data", exploration_rate=0.5, call_truth=True)
    evaluation = evaluate_model(
        sample_model.model_dir, world.out_dir, TrainOptions(call_truth=world.call_truth_path)
    )
    assert {"model", "random", "most_popular", "logging"} <= set(evaluation.doubly_robust)
    model, truth = evaluation.doubly_robust["model"], evaluation.true_per_call["model"]
    # ~400 held-out calls: the interval is ±0.1 or so wide. The estimators assume a benefit's adoption does
    # not depend on its rank, which this world breaks (lower ranks are discussed less and convert less), so
    # DR's centre stays near, not on, the truth.
    assert model.dr_ci[0] <= truth <= model.dr_ci[1]
    assert model.sndr_ci[0] <= truth <= model.sndr_ci[1]
    assert abs(model.dr - truth) < 0.12
    assert abs(model.dr - truth) < abs(model.direct - truth) + 0.02
    assert evaluation.metrics["true_adoptions_per_call_model"] == truth
    # The call truth's NPS columns give every policy, and showing nothing, a true detractor share.
    shares = evaluation.true_detractor_share
    assert {"model", "random", "nothing"} <= set(shares) and all(0 < v < 1 for v in shares.values())
    # The logging policy on its own logs: DR is what it observed.
    assert evaluation.doubly_robust["logging"].dr == pytest.approx(
        evaluation.off_policy["model"].logged_per_call
    )
