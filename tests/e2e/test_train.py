"""End to end: generate a world, train, evaluate, promote, refuse a tampered model — the real commands."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from nba.errors import DataError, ModelError
from nba.model._bundle import load_bundle
from nba.model._registry import read_current, set_current
from training.cli import main
from training.synth import generate_world
from training.train_job import evaluate_model, train_model
from training.training_run import TrainOptions

pytestmark = pytest.mark.slow  # a world of its own and a dozen trainings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world")
    summary = generate_world(4000, 5, root / "data", fmt="parquet")
    return summary.out_dir, summary.oracle_path


@pytest.fixture(scope="module")
def trained(world: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data_dir, oracle = world
    models = tmp_path_factory.mktemp("models")
    result = train_model(data_dir, models, TrainOptions(oracle=oracle, promote=True))
    assert result.promoted
    return models, result.model_dir


def test_model_folder_holds_text_models_json_report_and_a_manifest(trained: tuple[Path, Path]) -> None:
    models, model_dir = trained
    names = {p.name for p in model_dir.iterdir()}
    assert {
        "model.txt",
        "calibrator.json",
        "encoders.json",
        "estimator.json",
        "report.md",
        "manifest.json",
    } <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".joblib"))]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert manifest["data_summary"]["label_source"].startswith("conversations")
    assert read_current(models) == model_dir.name
    bundle = load_bundle(model_dir)
    assert bundle.manifest.feature_names[-3:] == [
        "declined_180d",
        "days_since_last_presented",
        "accepted_ever",
    ]


def test_evaluation_beats_random_and_finds_no_invalid_suggestions(trained: tuple[Path, Path]) -> None:
    _, model_dir = trained
    metrics = load_bundle(model_dir).manifest.metrics
    # A small world (4,000 cardholders) trains on ~3,000 rows: the bar here is beating chance clearly;
    # the quality targets are measured on 50,000 cardholders (docs/quality.md).
    assert metrics["oracle_ratio"] > metrics["oracle_ratio_random"] + 0.03
    assert {"oracle_ratio_most_popular", "oracle_ratio_spend_rule", "oracle_ratio_estimated_value"} <= set(
        metrics
    )
    assert 0.5 < metrics["auc"] < 1.0
    report = (model_dir / "report.md").read_text()
    assert "oracle ratio" in report and "random" in report and "IPS" in report
    assert "invalid suggestions (not on the card, used, duplicated): 0" in report.lower()
    # The true probabilities through the same arbitration bound what any model can reach.
    assert metrics["oracle_ratio"] <= metrics["oracle_ratio_arbitration_cap"] <= 1.0
    assert "no model can do better under these rules" in report


def test_model_refits_on_the_later_slice_and_the_report_describes_the_estimator(
    trained: tuple[Path, Path],
) -> None:
    _, model_dir = trained
    manifest = load_bundle(model_dir).manifest
    assert manifest.params["refit"] is True
    assert manifest.metrics["best_iteration"] >= manifest.metrics["early_stopping_iteration"]
    report = (model_dir / "report.md").read_text()
    assert "refit on training and early-stopping rows" in report
    assert "## Spend estimator" in report and "| dining |" in report
    # The estimator learns from the profile too: product, segment and the bank's extra columns.
    meta = json.loads((model_dir / "estimator.json").read_text())["categories"]["dining"]
    assert {"product_id", "segment", "income_band"} <= set(meta["inputs"])
    assert meta["smearing"] >= 1.0


def test_the_report_shows_the_held_out_slice_month_by_month(trained: tuple[Path, Path]) -> None:
    """Per calendar month of the held-out slice: its heard rows and adoptions (they add up to the slice's),
    the model's AUC beside the best baseline's on those rows, and its mean prediction beside the rate."""
    _, model_dir = trained
    manifest = load_bundle(model_dir).manifest
    report = (model_dir / "report.md").read_text()
    table = report[report.index("Month by month (the same held-out fit") :].split("\n\n")[1]
    months = [line.split(" | ") for line in table.splitlines()[2:]]
    names = [cells[0].removeprefix("| ") for cells in months]
    assert names == sorted(set(names)) and len(names) >= 2
    assert names[0] == manifest.data_summary["test_from"][:7]
    assert sum(int(cells[1].replace(",", "")) for cells in months) == manifest.metrics["test_rows"]
    for cells in months:
        rows, adopted = int(cells[1].replace(",", "")), int(cells[2].replace(",", ""))
        assert 0 < adopted < rows and abs(float(cells[6].removesuffix(" |")) - adopted / rows) < 1e-4
        assert 0.0 <= float(cells[3]) <= 1.0 and 0.0 <= float(cells[4].split(" ")[0]) <= 1.0


def test_a_champion_that_learnt_every_held_out_call_is_compared_by_its_manifest(
    world: tuple[Path, Path], trained: tuple[Path, Path]
) -> None:
    """The model in service was refit on every labelled row: no held-out call is new to it, so the
    gate compares the manifests' own held-out numbers and says so."""
    data_dir, _ = world
    models, first = trained
    result = train_model(data_dir, models, TrainOptions(promote=True, seed=1))
    assert "champion" not in result.evaluation.off_policy and result.evaluation.champion is None
    notes = result.evaluation.notes
    assert any(f"the model in service {first.name} learnt from these held-out calls" in n for n in notes)
    assert "from the manifests" in result.promotion_reason or "best baseline" in result.promotion_reason
    assert read_current(models) in (first.name, result.version)


def test_second_run_is_compared_with_the_champion_on_calls_it_did_not_learn_from(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    from datetime import date

    data_dir, _ = world
    models = tmp_path / "models"
    first = train_model(data_dir, models, TrainOptions(as_of=date(2026, 7, 1), promote=True, force=True))
    result = train_model(data_dir, models, TrainOptions(promote=True, seed=1))
    comparison = result.evaluation.champion
    assert comparison is not None and comparison.version == first.version and comparison.calls > 0
    assert "champion" in result.evaluation.off_policy
    until = date.fromisoformat(load_bundle(first.model_dir).manifest.data_summary["shipped_rows_until"])
    assert comparison.since is None or comparison.since == until
    assert "on the same held-out calls" in result.promotion_reason
    assert read_current(models) in (first.version, result.version)


def test_evaluate_command_reproduces_the_held_out_metrics(
    world: tuple[Path, Path], trained: tuple[Path, Path]
) -> None:
    data_dir, oracle = world
    _, model_dir = trained
    evaluation = evaluate_model(model_dir, data_dir, TrainOptions(oracle=oracle))
    stored = load_bundle(model_dir).manifest.metrics
    # The oracle scores the shipped model in both; the held-out rows are ones the shipped model
    # learnt from, so `nba evaluate` says its held-out numbers are optimistic (the report's are honest).
    assert evaluation.metrics["oracle_ratio"] == pytest.approx(stored["oracle_ratio"])
    assert evaluation.metrics["auc"] > stored["auc"]
    assert any("its held-out numbers here are optimistic" in note for note in evaluation.notes)


def test_tampered_model_is_refused_with_a_clear_line(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    _, model_dir = trained
    copy = tmp_path / model_dir.name
    shutil.copytree(model_dir, copy)
    text = (copy / "model.txt").read_bytes()
    (copy / "model.txt").write_bytes(text.replace(b"Tree=0", b"Tree=9", 1))
    with pytest.raises(ModelError, match=r"model\.txt: checksum mismatch"):
        load_bundle(copy)
    assert main(["evaluate", "--model", str(copy), "--data", str(copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0]


def test_catalog_with_other_rates_is_refused_for_evaluation(
    world: tuple[Path, Path], trained: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir, _ = world
    _, model_dir = trained
    changed = tmp_path / "catalog.yaml"
    changed.write_text((data_dir / "catalog.yaml").read_text().replace("earn_rate: 4\n", "earn_rate: 5\n", 1))
    with pytest.raises(ModelError, match="differ from the ones the model was trained with"):
        evaluate_model(model_dir, data_dir, TrainOptions(catalog_path=changed))


def test_as_of_after_the_data_is_refused(world: tuple[Path, Path], tmp_path: Path) -> None:
    from datetime import date

    data_dir, _ = world
    with pytest.raises(
        DataError, match=r"^--as-of 2030-01-01 is after \d{4}-\d{2}-\d{2}, the day after the last date in "
    ):
        train_model(data_dir, tmp_path / "m", TrainOptions(as_of=date(2030, 1, 1)))


def _without_conversations(data_dir: Path, target: Path) -> Path:
    import shutil

    import pyarrow.parquet as pq

    shutil.copytree(data_dir, target)
    for name in ("conversations", "calls", "nps"):
        table = pq.read_table(target / f"{name}.parquet")
        pq.write_table(table.slice(0, 0), target / f"{name}.parquet")
    return target


def test_a_new_programme_trains_on_natural_adoption(world: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, _ = world
    fresh = _without_conversations(data_dir, tmp_path / "fresh")
    result = train_model(fresh, tmp_path / "models", TrainOptions())
    source = load_bundle(result.model_dir).manifest.data_summary["label_source"]
    assert isinstance(source, str) and source.startswith("natural adoption")
    assert "natural adoption" in (result.model_dir / "report.md").read_text()


def test_no_positive_labels_is_one_clear_error(world: tuple[Path, Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    data_dir, _ = world
    fresh = _without_conversations(data_dir, tmp_path / "none")
    usage = pq.read_table(fresh / "benefit_usage.parquet")
    pq.write_table(usage.slice(0, 0), fresh / "benefit_usage.parquet")
    with pytest.raises(DataError, match="no positive labels"):
        train_model(fresh, tmp_path / "models", TrainOptions())


def test_recommend_and_score_commands(
    world: tuple[Path, Path], trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    data_dir, _ = world
    models, _ = trained
    assert main(["recommend", "C0000002", "--data", str(data_dir), "--model", str(models), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["cardholder_id"] == "C0000002" and body["call_reason"] == "general"
    assert body["suggestions"] and all("features" not in s for s in body["suggestions"])
    out = tmp_path / "scores.parquet"
    assert (
        main(["score", "--data", str(data_dir), "--model", str(models), "--top", "2", "--out", str(out)]) == 0
    )
    scores = pd.read_parquet(out)
    assert list(scores.columns) == ["cardholder_id", "rank", "benefit_id", "score", "diversity"]
    assert scores.groupby("cardholder_id")["rank"].max().max() <= 2
    assert not scores.duplicated(["cardholder_id", "benefit_id"]).any()
    assert scores["cardholder_id"].nunique() > 3000
    assert (
        main(["score", "--data", str(data_dir), "--model", str(models), "--out", str(tmp_path / "x.txt")])
        == 2
    )
    assert "must end in .csv or .parquet" in capsys.readouterr().err


# --- the rows before --as-of, and inputs a new user brings (issue 14) ------------------------------


def _rewrite(data_dir: Path, target: Path, change: dict[str, Any]) -> Path:
    """A copy of `data_dir` with some tables replaced: name → a function of its pandas frame."""
    import shutil

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.copytree(data_dir, target)
    for name, edit in change.items():
        path = target / f"{name}.parquet"
        table = pq.read_table(path)
        frame: pd.DataFrame = edit(table.to_pandas())
        pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), path)
    return target


def _before(day: str, column: str) -> Any:
    import pandas as pd

    return lambda frame: frame[pd.to_datetime(frame[column]) < pd.Timestamp(day)]


def test_as_of_trains_on_the_rows_before_it_exactly_as_on_data_cut_there(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    """A backtest's fit: `--as-of D` on the full data gives the model trained on the data cut at D."""
    from datetime import date

    data_dir, _ = world
    cut = "2026-07-01"
    trimmed = _rewrite(
        data_dir,
        tmp_path / "cut",
        {
            "cardholders": _before(cut, "open_date"),
            "transactions": _before(cut, "transaction_date"),
            "benefit_usage": _before(cut, "first_used_date"),
            "conversations": _before(cut, "presented_at"),
            "calls": _before(cut, "started_at"),
            # NPS of calls before the cut that was given after it is unknown at the cut.
            "nps": lambda f: f[(f["responded_at"].isna()) | (f["responded_at"] < cut)],
        },
    )
    options = TrainOptions(as_of=date(2026, 7, 1))
    full = train_model(data_dir, tmp_path / "full", options)
    trimmed_result = train_model(trimmed, tmp_path / "trimmed", options)
    summary = load_bundle(full.model_dir).manifest.data_summary
    assert summary["as_of"] == "2026-07-01" and str(summary["last_presentation"]) < "2026-06-01"
    assert full.evaluation.metrics == pytest.approx(trimmed_result.evaluation.metrics)
    assert (full.model_dir / "model.txt").read_bytes() == (
        trimmed_result.model_dir / "model.txt"
    ).read_bytes()

    # A month later: compared with that model on the held-out calls it had not learnt from.
    set_current(tmp_path / "full", full.version)
    later = train_model(data_dir, tmp_path / "full", TrainOptions(promote=True))
    champion = later.evaluation.champion
    assert champion is not None and champion.version == full.version
    # It learnt from rows before 2026-06-01, all before this run's held-out slice: every held-out call counts.
    assert str(summary["shipped_rows_until"]) <= str(
        load_bundle(later.model_dir).manifest.data_summary["test_from"]
    )
    assert champion.since is None and champion.calls > 50
    assert later.evaluation.metrics["vs_champion_calls"] == champion.calls
    decided = "on the same held-out calls" in later.promotion_reason
    assert decided or "best baseline" in later.promotion_reason, later.promotion_reason


def test_the_shipped_model_learns_from_every_labelled_row_and_the_report_says_which_fit_is_measured(
    trained: tuple[Path, Path],
) -> None:
    _, model_dir = trained
    manifest = load_bundle(model_dir).manifest
    summary, metrics = manifest.data_summary, manifest.metrics
    assert summary["shipped_rows"] == summary["rows_heard"]
    assert summary["shipped_rows_until"] > summary["test_from"]
    assert metrics["shipped_trees"] > metrics["early_stopping_iteration"]
    assert str(summary["metrics_from"]).startswith("held-out fit: trained on rows before")
    assert str(summary["shipped_fit"]).startswith("refit on every labelled row up to the as-of")
    report = (model_dir / "report.md").read_text()
    assert "**The numbers in this report** (but the oracle's) come from the held-out fit" in report
    assert "**The model that ships** (model.txt): refit on every labelled row" in report
    # The gate's numbers: each baseline on the same held-out rows and calls as the model.
    assert {"baseline_auc_most_popular", "baseline_ips_most_popular", "baseline_auc_random"} <= set(metrics)


def test_a_campaign_on_one_day_is_split_by_cardholder_and_trains(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every presentation on one day, a seventh adopted: no dates to split by, so by cardholder."""
    import pandas as pd

    data_dir, _ = world
    day = pd.Timestamp("2026-06-01 10:00:00")
    conversations = pd.read_parquet(data_dir / "conversations.parquet")
    adopted = conversations.sample(frac=1 / 7, random_state=0)[
        ["cardholder_id", "benefit_id"]
    ].drop_duplicates()
    presented = set(zip(conversations["cardholder_id"], conversations["benefit_id"], strict=True))

    def usage(frame: pd.DataFrame) -> pd.DataFrame:
        keys = zip(frame["cardholder_id"], frame["benefit_id"], strict=True)
        kept = frame[[key not in presented for key in keys]]
        new = adopted.assign(first_used_date=(day + pd.Timedelta(days=5)).date())
        return pd.concat([kept, new], ignore_index=True)

    campaign = _rewrite(
        data_dir,
        tmp_path / "campaign",
        {
            "conversations": lambda f: f.assign(presented_at=day),
            "calls": lambda f: f.assign(started_at=day),
            "nps": lambda f: f.assign(responded_at=day + pd.Timedelta(hours=2)),
            "benefit_usage": usage,
        },
    )
    result = train_model(campaign, tmp_path / "models", TrainOptions())
    manifest = load_bundle(result.model_dir).manifest
    assert manifest.data_summary["split_by"] == "cardholder"
    assert 0.5 < manifest.metrics["auc"] <= 1.0
    assert any("fall on 1 date(s), too few to split by time" in n for n in result.evaluation.notes)
    assert "split by cardholder at random" in (result.model_dir / "report.md").read_text()
    # No month to backtest within the run either, and the report says why.
    assert manifest.data_summary["backtest"] == (
        "no backtest month: no backtest possible: the presentations fall on too few dates to split by time"
    )
    assert result.backtest is not None and not result.backtest.months


def test_one_month_of_conversations_still_trains_and_a_too_recent_one_says_why_it_is_not_used(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    import pandas as pd

    from nba.contract._catalog import catalog_for, load_catalog
    from nba.contract._tables import open_data
    from training.training_run import _labelled_rows

    data_dir, _ = world

    def month(start: str, end: str) -> dict[str, Any]:
        def calls(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[(frame["started_at"] >= start) & (frame["started_at"] < end)]

        def conversations(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[(frame["presented_at"] >= start) & (frame["presented_at"] < end)]

        calls_kept = set(calls(pd.read_parquet(data_dir / "calls.parquet"))["call_id"])
        return {
            "calls": calls,
            "conversations": conversations,
            "nps": lambda f: f[f["call_id"].isin(calls_kept)],
        }

    june = _rewrite(data_dir, tmp_path / "june", month("2026-06-01", "2026-07-01"))
    result = train_model(june, tmp_path / "models", TrainOptions())
    summary = load_bundle(result.model_dir).manifest.data_summary
    assert summary["split_by"] == "date" and summary["first_presentation"] >= "2026-06-01"
    # One month: nothing earlier to train a backtest month on. Said in the summary, manifest and report.
    no_backtest = (
        "no backtest possible: the labelled presentations span 1 month(s) (2026-06 … 2026-06); a backtest "
        "month needs presentations to train on dated more than 30 days before it"
    )
    assert str(summary["backtest"]).startswith(f"no backtest month: {no_backtest}")
    assert f"No backtest month: {no_backtest}" in (result.model_dir / "report.md").read_text()

    # The last month before the as-of: no label is known yet, so natural adoption, and it says why.
    september = _rewrite(data_dir, tmp_path / "september", month("2026-09-01", "2026-10-01"))
    with open_data(september) as data:
        labelled = _labelled_rows(data, date(2026, 10, 1), load_catalog(catalog_for(september)))
    assert labelled.label_source.startswith("natural adoption")
    assert "no conversation has a known label yet: all " in labelled.label_source
    assert "are in the 30 days before the as-of" in labelled.label_source


def test_data_without_transactions_trains_scores_and_says_the_estimator_learnt_nothing(
    world: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bank's CRM attributes only: the model learns from them; the spend estimator says it could not."""
    data_dir, _ = world
    crm_only = _rewrite(data_dir, tmp_path / "crm", {"transactions": lambda f: f.iloc[0:0]})
    models = tmp_path / "models"
    assert main(["train", "--data", str(crm_only), "--out", str(models), "--promote", "-q"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: spend estimator: nothing to learn from: no cardholder has card spend" in out
    bundle = load_bundle(models / str(read_current(models)))
    assert str(bundle.manifest.data_summary["spend_estimator"]).startswith("nothing to learn from")
    assert "Learnt: nothing to learn from" in (bundle.path / "report.md").read_text()
    scores = tmp_path / "scores.csv"
    # With no spend no benefit is estimated to be worth anything: the default value floor ($12 a year)
    # leaves every cardholder without a suggestion; without the floor the model still ranks them.
    assert main(["score", "--data", str(crm_only), "--model", str(models), "--out", str(scores)]) == 0
    assert len(scores.read_text().splitlines()) == 1
    floorless = ["--value-floor", "0"]
    assert (
        main(["score", "--data", str(crm_only), "--model", str(models), "--out", str(scores), *floorless])
        == 0
    )
    assert len(scores.read_text().splitlines()) > 1000


def test_the_report_backtests_the_latest_months_each_refit_on_the_rows_labelled_before_it(
    world: tuple[Path, Path], trained: tuple[Path, Path]
) -> None:
    """`nba train`'s own backtest (TrainOptions.backtest_months, default 2): the latest months from the
    early-stopping slice on, each fitted on the heard rows dated more than 30 days before it."""
    import pandas as pd

    from nba.contract import catalog_for, load_catalog, load_mcc_map, open_data
    from training.cli_options import TRAIN_BACKTEST_MONTHS
    from training.training_run import prepare_run

    data_dir, _ = world
    _, model_dir = trained
    summary = load_bundle(model_dir).manifest.data_summary
    assert TRAIN_BACKTEST_MONTHS == 2
    assert str(summary["backtest"]).startswith("2026-07, 2026-08: ")
    verdict = str(summary["backtest"]).removeprefix("2026-07, 2026-08: ")
    assert verdict.split(":")[0] in {"STABLE", "SHRINKING", "UNSTABLE", "GONE"}
    report = (model_dir / "report.md").read_text()
    section = report[report.index("## Backtest: the latest months") :]
    assert f"**{verdict}**" in " ".join(section.split())
    with open_data(data_dir) as data:
        run = prepare_run(data, data_dir, load_catalog(catalog_for(data_dir)), load_mcc_map(), TrainOptions())
        dates = run.rows["as_of"]
    assert str(summary["valid_from"]) <= "2026-07-01"
    for month, label_cutoff, until in (
        ("2026-07", "2026-06-01", "2026-08-01"),
        ("2026-08", "2026-07-02", "2026-09-01"),
    ):
        line = next(line for line in section.splitlines() if line.startswith(f"| {month} | "))
        cells = [c.strip() for c in line.strip("|").split("|")]
        trained_on = int((dates < pd.Timestamp(label_cutoff)).sum())
        in_month = (dates >= pd.Timestamp(f"{month}-01")) & (dates < pd.Timestamp(until))
        heard = run.rows["outcome"].fillna("") != "not_discussed"
        assert cells[1] == f"{trained_on:,}" and cells[2] == f"{int((in_month & heard).sum()):,}"
        assert 0.5 < float(cells[3]) < 1.0 and cells[7] == "–"  # AUC; no ECE (uncalibrated)


def test_backtest_months_outside_their_range_are_one_clear_error(
    world: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, _ = world
    with pytest.raises(DataError, match=r"`--backtest-months` must be an integer in \[0, 12\], got 13"):
        train_model(data_dir, tmp_path / "m", TrainOptions(backtest_months=13))
    argv = ["train", "--data", str(data_dir), "--out", str(tmp_path / "m"), "--backtest-months", "-1"]
    assert main(argv) == 2
    assert "--backtest-months" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
