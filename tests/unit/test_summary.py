"""Summary: an evaluation → the one screen at the end of `nba train`, readable on an 80-column terminal."""

from __future__ import annotations

import io

from rich.console import Console

from training.evaluate import Evaluation
from training.metrics import OffPolicyEstimate
from training.summary import print_evaluation

POLICIES = ("model", "random", "most_popular", "spend_rule", "estimated_value")


def _estimate(ips: float) -> OffPolicyEstimate:
    return OffPolicyEstimate(
        ips=ips,
        ips_ci=(ips - 0.1234, ips + 0.1234),
        snips_rate=0.2,
        snips_rate_ci=(0.1, 0.3),
        snips_per_call=0.6,
        snips_per_call_ci=(0.3, 0.9),
        new_slate_size=3.0,
        logged_per_call=0.3236,
        logged_rate=0.11,
        n_calls=309,
        n_rows=900,
        ess=120.0,
        min_weighted_logging_prob=0.1,
        confidence=0.95,
        n_bootstrap=200,
        warning=None,
    )


def _screen(evaluation: Evaluation) -> list[str]:
    out = io.StringIO()
    print_evaluation(evaluation, Console(file=out, width=80, color_system=None))
    return out.getvalue().splitlines()


def test_each_policy_fits_on_one_line_without_an_oracle() -> None:
    lines = _screen(Evaluation(off_policy={name: _estimate(0.5011) for name in POLICIES}))
    for name in POLICIES:
        (row,) = [line for line in lines if line.startswith(f"│ {name} ")]
        assert "0.5011 [0.3777, 0.6245]" in row
    assert not any("oracle" in line for line in lines)
    assert max(len(line) for line in lines) <= 80


def test_the_oracle_columns_appear_when_an_oracle_was_given() -> None:
    evaluation = Evaluation(
        off_policy={name: _estimate(0.5) for name in POLICIES},
        oracle={name: (2600.0 - i, 0.785 - i / 100) for i, name in enumerate(POLICIES)},
        oracle_best=3300.0,
        metrics={"oracle_lift_over_best_baseline": 0.106, "oracle_ratio_arbitration_cap": 0.927},
    )
    lines = _screen(evaluation)
    assert any("oracle ratio" in line for line in lines)
    (row,) = [line for line in lines if line.startswith("│ model ")]
    assert row.split("│")[3:5] == [f"{2600.0:>14.4f} ", f"{0.785:>13.3f} "]
    assert "model over the best baseline 10.6%" in " ".join(" ".join(lines).split())
