"""Drift end to end: the sample model's folder keeps its reference; `nba drift` names the travel features on a
world whose travel collapsed (same seed and cardholders as the sample), and finds nothing on the sample itself."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.contract._catalog import load_catalog
from nba.contract._tables import open_data
from nba.drift import DRIFT_FILE, DriftSection, load_drift_reference
from nba.model._bundle import load_bundle
from nba.vocab import PSI_MODERATE, TRAVEL_CATEGORIES
from tests.deployment import Deployment
from training.cli import main
from training.drift_job import DriftResult, DriftScorer, relation_drift, run_drift
from training.engine_job import build_snapshot
from training.presentations import load_presentations
from training.synth import generate_world

SHIFT = date(2026, 8, 1)
# Newer data for the sample model to meet: larger than the sample (3,000), so that its newest month holds
# some 750 presentations and sampling noise stays well under the PSI bands.
NEWER_CARDHOLDERS = 10_000
NEWER_SEED = 8
WINDOWS = ("30d", "90d")


def _is_travel(feature: str) -> bool:
    return any(category in feature for category in TRAVEL_CATEGORIES)


def _travel_spend_features(names: list[str]) -> list[str]:
    """Card spend, transaction counts and shares in a travel category over the last 30 or 90 days."""
    return [
        n
        for n in names
        if _is_travel(n) and n.startswith(("spend_", "tx_", "share_")) and any(f"_{w}" in n for w in WINDOWS)
    ]


@pytest.fixture(scope="module")
def newer(sample_deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, DriftResult]:
    """The sample model against two newer worlds (same seed, same cardholders): one stationary, one whose
    regime shifted on 2026-08-01, each with its profile snapshot built with the sample model."""
    root = tmp_path_factory.mktemp("newer")
    model_dir = sample_deployment.models_dir / sample_deployment.version
    results = {}
    for name, shift in (("stationary", None), ("shifted", SHIFT)):
        summary = generate_world(NEWER_CARDHOLDERS, NEWER_SEED, root / name / "data", regime_shift=shift)
        snapshot = build_snapshot(summary.out_dir, model_dir, root / name / "profiles", promote=True)
        results[name] = run_drift(model_dir, summary.out_dir, profiles=snapshot.folder)
    return results


def _section(result: DriftResult, starts: str) -> DriftSection:
    return next(s for s in result.sections if s.title.startswith(starts))


def _psi(section: DriftSection) -> dict[str, float]:
    return {f.name: f.psi for f in section.features}


def test_the_model_folder_keeps_its_drift_reference_in_the_manifest(sample_deployment: Deployment) -> None:
    bundle = load_bundle(sample_deployment.models_dir / sample_deployment.version)
    assert DRIFT_FILE in bundle.manifest.files
    reference = load_drift_reference(bundle.path, bundle.manifest)
    assert reference is not None and reference.population is not None
    assert reference.population.as_of == sample_deployment.as_of
    assert [b.name for b in reference.features] == bundle.manifest.feature_names
    assert {b.benefit_id for b in reference.benefits} and 0 < reference.score_mean < 1


def test_the_snapshot_the_model_was_trained_with_shows_no_drift(sample_deployment: Deployment) -> None:
    model_dir = sample_deployment.models_dir / sample_deployment.version
    result = run_drift(model_dir, None, profiles=sample_deployment.profiles_dir)
    snapshot = _section(result, "Training data")
    assert len(snapshot.features) > 100 and snapshot.max_psi < 0.01


@pytest.mark.slow  # two generated worlds of 10,000 cardholders
def test_a_stationary_world_drifts_little(newer: dict[str, DriftResult]) -> None:
    section = _section(newer["stationary"], "Training window")
    assert section.current_rows > 500
    stable = sum(f.band == "stable" for f in section.features)
    assert stable >= 0.9 * len(section.features)
    psi = _psi(section)
    assert psi["income_band"] < PSI_MODERATE and psi["call_reason"] < PSI_MODERATE
    assert section.scores is not None and section.scores.band == "stable"
    assert _section(newer["stationary"], "Training data").max_psi < PSI_MODERATE


@pytest.mark.slow
def test_after_the_shift_the_report_names_what_moved(newer: dict[str, DriftResult]) -> None:
    before = _psi(_section(newer["stationary"], "Training window"))
    section = _section(newer["shifted"], "Training window")
    after = _psi(section)
    # The launched benefit, the callers (lower incomes, other reasons) and travel.
    assert (
        after["benefit_id"] >= 0.25
        and after["income_band"] >= PSI_MODERATE
        and after["call_reason"] >= PSI_MODERATE
    )
    travel = _travel_spend_features(list(after))
    assert len(travel) >= 16
    mean_after = sum(after[n] for n in travel) / len(travel)
    mean_before = sum(before[n] for n in travel) / len(travel)
    assert mean_after > 0.03 and mean_after > 3 * mean_before
    assert sum(_is_travel(n) for n in section.shifted(PSI_MODERATE)) >= 3
    # In the snapshot (every cardholder) the most shifted features are the travel ones.
    snapshot = _section(newer["shifted"], "Training data")
    assert all(_is_travel(f.name) for f in snapshot.features[:5]), snapshot.features[:5]
    assert snapshot.features[0].psi > 2 * _section(newer["stationary"], "Training data").max_psi


def test_nba_drift_writes_the_report(
    sample_deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "drift.md"
    where = ["--model", str(sample_deployment.models_dir), "--data", str(sample_deployment.data_dir)]
    code = main(
        [
            "drift",
            *where,
            "--profiles",
            str(sample_deployment.profiles_dir),
            "--out",
            str(out),
            "--top",
            "5",
            "-q",
        ]
    )
    assert code == 0
    text = out.read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    assert "0.1–0.25 moderate shift" in text and "| feature | PSI | band |" in text
    assert "Accepted on the call, per benefit" in text and "Adopted within 30 days" in text
    assert "Scores (p_adopt)" in text and "the 5 most shifted" in text


def test_a_model_without_a_drift_reference_is_one_clear_line(
    sample_deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drift", "--model", str(tmp_path), "--data", str(sample_deployment.data_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a model folder" in err[0]
    assert main(["drift", "--model", str(sample_deployment.models_dir)]) == 1
    assert (
        "give a data directory (--data), a profile snapshot (--profiles) or both" in capsys.readouterr().err
    )


def test_presentations_with_p_adopt_show_observed_adoption_beside_the_prediction(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    """Exported feedback carries p_adopt; merged into a data directory, the observed 30-day adoption of
    those presentations is set beside the mean prediction, per benefit."""
    data = tmp_path / "data"
    shutil.copytree(sample_deployment.data_dir, data)
    conversations = pd.read_parquet(data / "conversations.parquet")
    served = conversations["presented_at"] < pd.Timestamp(2026, 6, 1)
    conversations["p_adopt"] = np.where(served, 0.1 + 0.05 * conversations["rank"].to_numpy(), np.nan)
    conversations.to_parquet(data / "conversations.parquet", index=False)
    result = run_drift(sample_deployment.models_dir / sample_deployment.version, data)
    calibration = {c.benefit_id: c for c in _section(result, "Training window").calibration}

    with open_data(data) as source:
        labelled = load_presentations(source, sample_deployment.as_of).table.to_pandas()
    labelled = labelled[
        (labelled["outcome"] != "not_discussed") & (pd.to_datetime(labelled["as_of"]) < "2026-06-01")
    ]
    expected = labelled.assign(p_adopt=0.1 + 0.05 * labelled["rank"]).groupby("benefit_id")
    assert set(calibration) == set(expected.groups)
    for benefit_id, group in expected:
        found = calibration[str(benefit_id)]
        assert found.rows == len(group)
        assert found.observed_adoption == pytest.approx(group["adopted"].mean())
        assert found.mean_p_adopt == pytest.approx(group["p_adopt"].mean())
    assert "observed 30-day adoption beside the mean predicted" in result.render()


def test_relation_drift_measures_every_feature_of_a_fitted_model_then_and_now(
    sample_deployment: Deployment,
) -> None:
    bundle = load_bundle(sample_deployment.models_dir / sample_deployment.version)
    with open_data(sample_deployment.data_dir) as data:
        shifts = relation_drift(
            data,
            load_catalog(sample_deployment.data_dir / "catalog.yaml"),
            DriftScorer.of(bundle),
            then=(date(2026, 6, 1), date(2026, 8, 1)),
            now=(date(2026, 8, 1), date(2026, 9, 1)),
            as_of=sample_deployment.as_of,
            repeats=1,
        )
    assert sorted(s.name for s in shifts) == sorted(bundle.manifest.feature_names)
    changes = [s.auc_loss_now - s.auc_loss_then for s in shifts]
    assert changes == sorted(changes) and all(np.isfinite(changes))
    # The features the model leans on most cost AUC when scrambled in both windows.
    assert max(s.auc_loss_then for s in shifts) > 0.01 and max(s.auc_loss_now for s in shifts) > 0.01


def test_a_profile_snapshot_whose_columns_do_not_match_the_model_is_one_clear_line(
    sample_deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot built without the bank's extra columns the model takes: `nba drift --profiles` and
    `nba score --profiles` each stop with one line naming the missing columns and what to do."""
    from nba.contract import load_mcc_map
    from nba.features import ExtraColumns
    from nba.profiles import compute_profile_tables
    from nba.profiles._snapshots import write_snapshot

    as_of = sample_deployment.as_of
    with open_data(sample_deployment.data_dir) as data:
        tables = compute_profile_tables(data, as_of, load_mcc_map(), ExtraColumns())
    write_snapshot(tmp_path / "profiles", tables, as_of)
    folder = str(tmp_path / "profiles" / as_of.isoformat())
    model, data_dir = str(sample_deployment.models_dir), str(sample_deployment.data_dir)
    for argv in (
        ["drift", "--model", model, "--profiles", folder, "-q"],
        [
            "score",
            "--model",
            model,
            "--data",
            data_dir,
            "--profiles",
            folder,
            "--out",
            str(tmp_path / "s.csv"),
        ],
    ):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert f"lacks cardholder features model {sample_deployment.version} needs: " in err[0]
        assert "credit_limit_usd, income_band" in err[0] and "build a snapshot with this model" in err[0]
    assert not (tmp_path / "s.csv").exists()
