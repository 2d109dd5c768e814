"""End to end: `nba backtest` on a generated world — months fitted on the rows before them, a month with
nothing adopted skipped and named, the table, its JSON and the plot; bad histories are one clear line."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.cli import main
from training.synth import generate_world

pytestmark = pytest.mark.slow  # a world of its own, a model fit per month


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small world whose regime shifts on 2026-06-01: its oracle holds the truth as of each month since."""
    summary = generate_world(
        1200, 21, tmp_path_factory.mktemp("backtest") / "data", fmt="parquet", regime_shift=date(2026, 6, 1)
    )
    return summary.out_dir, summary.oracle_path


@pytest.fixture(scope="module")
def world(shifted: tuple[Path, Path]) -> Path:
    return shifted[0]


def _rewrite(data_dir: Path, target: Path, name: str, edit: object) -> Path:
    shutil.copytree(data_dir, target)
    path = target / f"{name}.parquet"
    table = pq.read_table(path)
    frame = edit(table.to_pandas())  # type: ignore[operator]
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), path)
    return target


def _without_adoptions_after(data_dir: Path, month: str) -> pd.DataFrame:
    """benefit_usage less every first use that made a presentation of `month` an adoption."""
    talks = pd.read_parquet(data_dir / "conversations.parquet")
    day = pd.to_datetime(talks["presented_at"]).dt.tz_localize(None).dt.normalize()
    talks = talks.assign(day=day)[day.dt.strftime("%Y-%m") == month]
    usage = pd.read_parquet(data_dir / "benefit_usage.parquet")
    joined = usage.merge(
        talks[["cardholder_id", "benefit_id", "day"]], on=["cardholder_id", "benefit_id"], how="left"
    )
    used = pd.to_datetime(joined["first_used_date"])
    adopted = (used >= joined["day"]) & (used <= joined["day"] + pd.Timedelta(days=30))
    drop = joined.loc[adopted, ["cardholder_id", "benefit_id"]].drop_duplicates()
    keys = pd.MultiIndex.from_frame(usage[["cardholder_id", "benefit_id"]])
    return usage[~keys.isin(pd.MultiIndex.from_frame(drop))]


def test_backtest_fits_each_month_on_the_rows_before_it_and_names_a_month_with_nothing_adopted(
    shifted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world, oracle = shifted
    data = _rewrite(
        world, tmp_path / "data", "benefit_usage", lambda _: _without_adoptions_after(world, "2026-07")
    )
    out = tmp_path / "backtest"
    argv = ["backtest", "--data", str(data), "--months", "2", "--out", str(out), "--oracle", str(oracle)]
    argv += ["--no-feature-check", "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "backtest.json").read_text())
    months = {m["month"]: m for m in report["months"]}
    assert list(months) == ["2026-07", "2026-08"]
    assert [m["status"] for m in months.values()] == ["skipped", "evaluated"]
    assert months["2026-07"]["note"].startswith("no positive labels: none of ")
    assert "2026-07 skipped: no positive labels" in printed
    # Each month trains on what was labelled before it: more rows each month, none of the month's own.
    trained = [m["train_rows"] for m in months.values()]
    assert 0 < trained[0] < trained[1]
    for month in ("2026-08",):
        row = months[month]
        assert row["test_rows"] > 0 and row["positives"] > 0
        assert 0.0 <= row["auc"] <= 1.0 and 0.0 <= row["best_baseline_auc"] <= 1.0
        assert row["best_baseline_auc_name"] in {"random", "most_popular", "spend_rule", "estimated_value"}
        assert row["ips_low"] <= row["ips"] <= row["ips_high"]
        # The oracle ratio uses the truth as of the month's first day, which the shifted world's oracle holds.
        assert 0.0 < row["oracle_ratio"] <= 1.0 and 0.0 < row["best_baseline_oracle_ratio"] <= 1.0
    frame = pd.read_csv(out / "backtest.csv")
    assert frame["month"].tolist() == list(months)
    assert report["verdict"].split(":")[0] in {"STABLE", "SHRINKING", "UNSTABLE", "GONE"}
    assert " ".join(report["verdict"].split()) in " ".join(printed.split())
    assert report["breaking"] is None
    assert "| 2026-07 | " in (out / "backtest.md").read_text()
    png = (out / "backtest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 800


def _one_month(data_dir: Path, target: Path) -> Path:
    def september(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[pd.to_datetime(frame["presented_at"]).dt.strftime("%Y-%m") == "2026-08"]

    kept = _rewrite(data_dir, target, "conversations", september)
    calls = set(pd.read_parquet(kept / "conversations.parquet")["call_id"])
    for name in ("calls", "nps"):
        table = pq.read_table(kept / f"{name}.parquet")
        frame = table.to_pandas()
        frame = frame[frame["call_id"].isin(calls)]
        pq.write_table(
            pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), kept / f"{name}.parquet"
        )
    return kept


def test_too_short_a_history_is_one_clear_line(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    assert main(["backtest", "--data", str(world), "--months", "20", "--out", out, "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`--months` 20 is more than the data's history allows: " in err[0]
    assert "use --months 13 or fewer" in err[0]

    one = _one_month(world, tmp_path / "one")
    assert main(["backtest", "--data", str(one), "--months", "1", "--out", out, "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "no backtest possible: the labelled presentations span 1 month(s) (2026-08" in err[0]
    )
    assert not (tmp_path / "out").exists()
