"""Uplift end to end: a counterfactual world → `nba train --objective uplift` → a model folder whose manifest
says so, served ranked by uplift; no exploration said in the report; no controls one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.contract import open_data
from nba.errors import DataError
from nba.features import BenefitTable
from nba.model import UPLIFT_FILE, load_bundle
from training.cli import main
from training.evaluate import eligible_pairs
from training.pairs import compute_snapshots
from training.synth import generate_world
from training.train_job import evaluate_model, train_model
from training.training_run import TrainOptions, bundle_parts, load_inputs, prepare_run, snapshots_of
from training.uplift_truth import caused_adoptions
from training.uplift_units import build_uplift_units

pytestmark = pytest.mark.slow  # two small worlds, two trainings

CARDHOLDERS = 1200


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("uplift")
    summary = generate_world(
        CARDHOLDERS, 4, root / "data", uplift_mix="1:1:1", oracle_path=root / "oracle.parquet"
    )
    return summary.out_dir, summary.oracle_path


@pytest.fixture(scope="module")
def uplift_model(world: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, _ = world
    options = TrainOptions(objective="uplift", backtest_months=0, threads=1, ship_all_rows=False)
    return train_model(data, tmp_path_factory.mktemp("models"), options).model_dir


def test_the_uplift_model_is_saved_beside_the_adoption_model_and_the_manifest_says_so(
    uplift_model: Path,
) -> None:
    manifest = json.loads((uplift_model / "manifest.json").read_text())
    assert manifest["params"]["objective"] == "uplift"
    assert {UPLIFT_FILE, "model.txt"} <= set(manifest["files"])
    assert (uplift_model / UPLIFT_FILE).read_text().startswith("tree")
    units = manifest["data_summary"]["uplift_units"]
    assert units["treated"] > 0 and units["controls_not_shown"] > 0 and units["controls_not_discussed"] > 0
    assert manifest["data_summary"]["uplift_explored"] is True
    for metric in ("qini_coefficient", "auuc", "qini_coefficient_adoption_ranking"):
        assert np.isfinite(manifest["metrics"][metric])
    report = (uplift_model / "report.md").read_text()
    assert "Qini coefficient" in report and "rests on assumptions" not in report


def test_the_service_ranks_an_uplift_model_by_uplift_and_still_shows_p_adopt(
    uplift_model: Path, world: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, oracle = world
    bundle = load_bundle(uplift_model)
    assert bundle.objective == "uplift"
    holder = pd.read_parquet(data / "cardholders.parquet")["cardholder_id"].iloc[0]
    assert (
        main(
            [
                "recommend",
                holder,
                "--data",
                str(data),
                "--model",
                str(uplift_model),
                "--json",
                "--value-floor",
                "0",
            ]
        )
        == 0
    )
    answer = json.loads(capsys.readouterr().out)
    suggestions = answer["suggestions"]
    assert suggestions
    # gamma 0 and lever 1: an adoption model's score is its p_adopt; this one's is the estimated uplift.
    scores = [s["score"] for s in suggestions]
    assert scores == sorted(scores, reverse=True)
    assert any(abs(s["score"] - s["p_adopt"]) > 1e-6 for s in suggestions)
    truth = caused_adoptions(data, oracle, {"uplift": uplift_model})
    assert truth.cardholders > CARDHOLDERS / 2 and 0 < truth.ratio("uplift") <= 1.0


def test_evaluate_gives_an_uplift_model_its_qini_with_an_interval_and_the_adoptions_it_causes(
    uplift_model: Path, world: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = world
    manifest = json.loads((uplift_model / "manifest.json").read_text())["metrics"]
    evaluation = evaluate_model(uplift_model, data, TrainOptions(objective="uplift", threads=1))
    metrics = evaluation.metrics
    # The held-out slice is the same as training's: the same Qini, now with its bootstrap interval.
    assert metrics["qini_coefficient"] == pytest.approx(manifest["qini_coefficient"])
    assert (
        metrics["qini_coefficient_ci_low"]
        <= metrics["qini_coefficient"]
        <= metrics["qini_coefficient_ci_high"]
    )
    assert metrics["auuc_ci_low"] <= metrics["auuc"] <= metrics["auuc_ci_high"]
    assert metrics["qini_difference_ci_low"] < metrics["qini_difference_ci_high"]
    # Caused adoptions per held-out call, DR, for the model's policy, ranking by p_adopt and the baselines;
    # the gate's numbers, as training wrote them in the manifest.
    assert {"model", "adoption_ranking", "random", "most_popular"} <= set(evaluation.caused)
    caused = evaluation.caused["model"]
    assert caused.ci[0] <= caused.value <= caused.ci[1] and caused.calls > 50
    assert metrics["dr_caused_adoptions_top_k"] == pytest.approx(manifest["dr_caused_adoptions_top_k"])
    assert "baseline_dr_caused_random" in manifest
    assert main(["evaluate", "--model", str(uplift_model), "--data", str(data)]) == 0
    assert "would cause" in capsys.readouterr().out


def test_no_exploration_is_said_in_the_report_with_the_assumptions(tmp_path: Path) -> None:
    summary = generate_world(CARDHOLDERS, 6, tmp_path / "data", uplift_mix="1:1:1", exploration_rate=0.0)
    options = TrainOptions(objective="uplift", backtest_months=0, threads=1, ship_all_rows=False)
    result = train_model(summary.out_dir, tmp_path / "models", options)
    report = (result.model_dir / "report.md").read_text()
    assert "no ε-exploration in the data" in report and "rests on assumptions" in report
    assert "no unmeasured confounding" in report
    assert load_bundle(result.model_dir).manifest.data_summary["uplift_explored"] is False


def test_no_controls_at_all_is_one_clear_error(world: tuple[Path, Path], uplift_model: Path) -> None:
    data, _ = world
    options = TrainOptions(objective="uplift")
    catalog, mcc_map, _ = load_inputs(data, options)
    benefits = BenefitTable.from_catalog(catalog)
    parts = bundle_parts(load_bundle(uplift_model), benefits)
    with open_data(data) as source:
        run = prepare_run(source, data, catalog, mcc_map, options)
        rows = run.rows[run.rows["call_id"].isin(run.rows["call_id"].unique()[:200])]
        snapshots = compute_snapshots(source, snapshots_of(rows), mcc_map, parts.extra)
        calls = rows[["call_id", "cardholder_id", "as_of", "call_reason"]].drop_duplicates("call_id")
        # Every eligible benefit of every call shown and discussed: nothing says what happens without it.
        everything = eligible_pairs(calls, snapshots, catalog, benefits).assign(
            outcome="accepted", logging_prob=1.0, adopted=0
        )
        usage = source.con.sql("SELECT cardholder_id, benefit_id, first_used_date FROM benefit_usage").df()
        with pytest.raises(
            DataError, match=r"--objective uplift: no controls at all: every eligible benefit"
        ):
            build_uplift_units(everything, usage, snapshots, parts, catalog, benefits)


def test_an_unknown_objective_is_one_clear_line(
    world: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = world
    assert main(["train", "--data", str(data), "--out", str(tmp_path), "--objective", "profit"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--objective" in err[0] and "adoption, uplift" in err[0] and "'profit'" in err[0]
