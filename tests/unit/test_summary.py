"""Summary: an evaluation → the one screen at the end of `nba train`, readable on an 80-column terminal."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from nba.model import gate_promotion
from tests.manifests import T0, gate_manifest
from training.evaluate import Evaluation
from training.metrics import OffPolicyEstimate
from training.summary import print_evaluation, print_train_summary
from training.train_job import TrainResult

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


def test_train_summary_says_rows_once_and_why_the_model_went_in_service(tmp_path: Path) -> None:
    manifest = gate_manifest(T0)
    result = TrainResult(
        model_dir=tmp_path / manifest.version,
        version=manifest.version,
        evaluation=Evaluation(),
        promoted=True,
        promotion_reason=gate_promotion(manifest, None).reason,
        timings_s={"total": 12.0},
        rows={"rows": 22_439, "train": 14_000, "valid": 3_000, "test": 5_439},
    )
    out = io.StringIO()
    print_train_summary(result, Console(file=out, width=200, color_system=None))
    lines = out.getvalue().splitlines()
    assert "rows: 22,439 labelled (train 14,000, valid 3,000, test 5,439)   time: total 12.0s" in lines
    assert (
        f"promotion: promote {manifest.version}: it goes in service because no model is in service to "
        "compare it with" in lines
    )
