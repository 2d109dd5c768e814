"""Backtest: a data directory → for each of its last N months, the spend estimator and the model fitted on
the rows before that month and evaluated on its presentations, beside the baselines (and the oracle)."""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq

from nba.contract import open_data
from nba.drift import RelationShift, relation_shifts
from nba.errors import DataError, check_param
from nba.features import FeatureConfig, load_feature_config
from nba.model import ModelBundle, load_bundle
from nba.vocab import UNHEARD_OUTCOMES
from training.backtest_months import (
    BacktestMonth,
    BacktestResult,
    Breaking,
    _month_of,
    _month_rows,
    _month_table,
    month_window,
    possible_months,
)
from training.cli_options import DEFAULT_MONTHS, MAX_MONTHS
from training.evaluate import Evaluation, ScoringParts, read_oracle
from training.pairs import PairMatrix, build_pair_matrix, compute_snapshots
from training.presentations import LABEL_WINDOW_DAYS
from training.progress import SILENT, Reporter
from training.train_job import train_model
from training.training_run import (
    TrainingRun,
    TrainOptions,
    bundle_parts,
    evaluate_against_oracle,
    evaluate_rows,
    load_inputs,
    popularity_of,
    prepare_run,
    snapshots_of,
)


def backtest_months(dates: pd.Series, as_of: date, months: int) -> list[tuple[date, date]]:
    """The last `months` months that can be backtested (`possible_months`).

    Returns (first day, end) pairs, oldest first; the newest month may end early, at the label cut-off.
    Raises DataError when the data's history holds fewer such months than asked for, or none.
    """
    check_param("--months", months, 1 <= months <= MAX_MONTHS, f"an integer in [1, {MAX_MONTHS}]", DataError)
    possible = possible_months(dates, as_of)
    if months > len(possible):
        raise DataError(
            f"`--months` {months} is more than the data's history allows: {len(possible)} month(s) "
            f"({possible[0]:%Y-%m} … {possible[-1]:%Y-%m}) have presentations to test and earlier ones to "
            f"train on; use --months {len(possible)} or fewer"
        )
    return [month_window(s, as_of) for s in possible[-months:]]


def run_backtest(
    data_dir: Path,
    options: TrainOptions,
    months: int = DEFAULT_MONTHS,
    out_dir: Path | None = None,
    progress: Reporter = SILENT,
    check_features: bool = True,
) -> BacktestResult:
    """Fits everything on the rows before each of the last `months` months and evaluates on that month.

    `options` are the training options (feature config, catalog, seed, arbitration; `oracle` gives
    per-month oracle ratios when the oracle has an `as_of` column holding each month's first day);
    `options.as_of` bounds the data as everywhere. A month whose training fails for want of labels, or
    that has no adoption to rank, is skipped and named. With `check_features`, the bank's own columns
    (the cardholders table's extra columns) whose shuffling helps the newest month's model are refit
    without, and named when that model does better on the newest month (`BacktestResult.breaking`). Writes `backtest.csv`, `backtest.json` and
    `backtest.png` to `out_dir` when given. Raises DataError for invalid data or too short a history.
    """
    started = time.perf_counter()
    progress.step("validate: the data contract")
    catalog, mcc_map, _ = load_inputs(data_dir, options)
    oracle = options.oracle
    if oracle is not None:
        read_oracle(oracle)  # a file that is no oracle is one clear line before any month is fitted
    results: list[BacktestMonth] = []
    newest: tuple[BacktestMonth, _Fitted, date, date] | None = None
    breaking: Breaking | None = None
    with open_data(data_dir) as data, tempfile.TemporaryDirectory(prefix="nba-backtest-") as scratch:
        with progress.query(data.con, "labelled presentations SQL"):
            run = prepare_run(data, data_dir, catalog, mcc_map, options)
        if not run.labelled.label_source.startswith("conversations"):
            raise DataError(f"{data_dir}: no conversations: a backtest needs logged presentations per month")
        windows = backtest_months(run.rows["as_of"], run.as_of, months)
        for i, (start, end) in enumerate(windows, 1):
            progress.step(f"backtest {i}/{len(windows)}: {start:%Y-%m}, trained on the rows before {start}")
            month_started = time.perf_counter()
            month, fitted = _backtest_month(
                run, data_dir, Path(scratch) / start.isoformat(), start, end, oracle
            )
            results.append(replace(month, seconds=round(time.perf_counter() - month_started, 1)))
            progress.log(f"  {_month_line(results[-1])}")
            if fitted is not None:
                newest = (results[-1], fitted, start, end)
        if newest is not None and check_features:
            progress.step(f"features whose relation to adoption broke by {newest[2]:%Y-%m}")
            breaking = _find_breaking(run, data_dir, Path(scratch) / "without", newest, oracle)
    result = BacktestResult(
        data_dir,
        run.as_of,
        results,
        out_dir,
        breaking=breaking,
        seconds=round(time.perf_counter() - started, 1),
    )
    if out_dir is not None:
        result.files = write_backtest(result, out_dir)
    return result


@dataclass(frozen=True)
class _Fitted:
    """An evaluated month's model and test rows, kept for the newest month's feature check."""

    parts: ScoringParts
    feature_names: tuple[str, ...]
    extra_columns: tuple[str, ...]
    rows: pd.DataFrame
    matrix: PairMatrix


def _backtest_month(
    run: TrainingRun,
    data_dir: Path,
    scratch: Path,
    start: date,
    end: date,
    oracle: Path | None,
    options: TrainOptions | None = None,
) -> tuple[BacktestMonth, _Fitted | None]:
    base, rows, _, known_then = _month_rows(run, start, end)
    if base.note:
        return base, None
    fit_options = replace(options or run.options, as_of=start, promote=False, oracle=None, backtest_months=0)
    try:
        trained = train_model(data_dir, scratch, fit_options)
    except DataError as exc:
        return replace(base, note=f"training before {start} failed: {exc}"), None
    return _evaluate_bundle(run, load_bundle(trained.model_dir), base, rows, known_then, oracle)


def evaluate_month(
    run: TrainingRun, bundle: ModelBundle, start: date, end: date, oracle: Path | None = None
) -> BacktestMonth:
    """A stored model (trained on any rows: a model in service, a stale one) on a backtest month's rows, as
    `nba backtest` measures the month's own model: beside the best baseline fitted on the rows labelled
    before the month (`train_rows` are those, not what the model learnt from)."""
    base, rows, _, known_then = _month_rows(run, start, end)
    if base.note:
        return base
    return _evaluate_bundle(run, bundle, base, rows, known_then, oracle)[0]


def _evaluate_bundle(
    run: TrainingRun,
    bundle: ModelBundle,
    base: BacktestMonth,
    rows: pd.DataFrame,
    known_then: npt.NDArray[np.bool_],
    oracle: Path | None,
) -> tuple[BacktestMonth, _Fitted]:
    parts = bundle_parts(bundle, run.benefits)
    snapshots = compute_snapshots(run.data, snapshots_of(rows), run.mcc_map, bundle.extra)
    matrix = build_pair_matrix(
        rows, snapshots, parts.holder, parts.estimator, run.benefits, parts.benefit_codes
    )
    popularity = popularity_of(run.rows[known_then])
    evaluation = evaluate_rows(run, parts, rows, matrix, snapshots, popularity, SILENT)
    if oracle is not None:
        _evaluate_month_oracle(evaluation, run, parts, popularity, base.month, oracle)
    fitted = _Fitted(parts, tuple(bundle.manifest.feature_names), tuple(bundle.extra.taken), rows, matrix)
    return _month_of(base, evaluation), fitted


# A column counts as broken when the newest month's AUC rises by more than this with it shuffled (and it
# helped on the rows the model learnt from): smaller changes are within a month's noise.
MIN_SHUFFLE_GAIN: Final = 0.005
# The "then" side of the relation check: the model's latest training rows, this many days of them.
THEN_DAYS: Final = 90


def relation_of(run: TrainingRun, fitted: _Fitted, start: date) -> tuple[RelationShift, ...]:
    """Each model feature's AUC loss when shuffled, on the month's model's latest training rows (then)
    and on the month's rows (now): `nba.drift.relation_shifts`. Empty when a side has one class only."""
    day = run.rows["as_of"].dt.date
    until = start - timedelta(days=LABEL_WINDOW_DAYS)
    recent = ((day < until) & (day >= until - timedelta(days=THEN_DAYS))).to_numpy()
    then_rows = run.rows[recent].reset_index(drop=True)
    sides = []
    for rows, matrix in ((then_rows, None), (fitted.rows, fitted.matrix)):
        heard = ~rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
        if matrix is None:
            snapshots = compute_snapshots(run.data, snapshots_of(rows), run.mcc_map, fitted.parts.extra)
            parts = fitted.parts
            matrix = build_pair_matrix(
                rows, snapshots, parts.holder, parts.estimator, run.benefits, parts.benefit_codes
            )
        y = rows["adopted"].to_numpy(dtype=np.float64)[heard]
        if not heard.any() or y.min() == y.max():
            return ()
        sides.append((matrix.X[heard], y))
    (x_then, y_then), (x_now, y_now) = sides

    def score(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return fitted.parts.score(replace(fitted.matrix, X=x))

    return relation_shifts(score, x_then, y_then, x_now, y_now, fitted.feature_names, seed=run.options.seed)


def _find_breaking(
    run: TrainingRun,
    data_dir: Path,
    scratch: Path,
    newest: tuple[BacktestMonth, _Fitted, date, date],
    oracle: Path | None,
) -> Breaking:
    month, fitted, start, end = newest
    shifts = relation_of(run, fitted, start)
    broken = [s for s in shifts if s.broken and -s.auc_loss_now > MIN_SHUFFLE_GAIN]
    suspects = tuple(s.name for s in broken if s.name in fitted.extra_columns)
    others = tuple(s.name for s in broken if s.name not in fitted.extra_columns)
    tried = {
        s.name: (s.auc_loss_then, s.auc_loss_now)
        for s in shifts
        if s.name in fitted.extra_columns or s.broken
    }
    if not suspects:
        return Breaking(start, tried, (), others)
    config = (
        load_feature_config(run.options.feature_config) if run.options.feature_config else FeatureConfig()
    )
    without = config.model_copy(
        update={
            "exclude": (*config.exclude, *suspects),
            "include": tuple(c for c in config.include if c not in suspects),
        }
    )
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / "features.json"
    path.write_text(without.model_dump_json(), encoding="utf-8")
    again, _ = _backtest_month(
        run, data_dir, scratch / "models", start, end, None, replace(run.options, feature_config=path)
    )
    return Breaking(start, tried, suspects, others, month, again)


def _evaluate_month_oracle(
    evaluation: Evaluation,
    run: TrainingRun,
    parts: ScoringParts,
    popularity: dict[str, float],
    start: date,
    oracle: Path,
) -> None:
    if "as_of" not in pq.read_schema(oracle).names:
        evaluation.notes.append("the oracle has the truth at one date only: no oracle ratio per month")
        return
    try:
        truth = read_oracle(oracle, as_of=start)
    except DataError:
        evaluation.notes.append(f"the oracle has no truth as of {start}")
        return
    evaluate_against_oracle(evaluation, run, parts, popularity, SILENT, truth, start)


def _month_line(month: BacktestMonth) -> str:
    if month.status == "skipped":
        return f"{month.label}: skipped ({month.note})"
    return (
        f"{month.label}: AUC {month.auc:.3f} (best baseline {month.best_baseline_auc:.3f}), IPS "
        f"{month.ips:.3f} (best baseline {month.best_baseline_ips:.3f}), {month.seconds:.0f} s"
    )


COLUMNS: Final = (
    "month",
    "status",
    "train_rows",
    "test_rows",
    "test_calls",
    "positives",
    "auc",
    "best_baseline_auc",
    "best_baseline_auc_name",
    "ips",
    "ips_low",
    "ips_high",
    "best_baseline_ips",
    "best_baseline_ips_name",
    "logged_per_call",
    "ece",
    "oracle_ratio",
    "best_baseline_oracle_ratio",
    "until",
    "note",
    "seconds",
)


def backtest_frame(result: BacktestResult) -> pd.DataFrame:
    """One row per month, the columns of COLUMNS (NaN where a month was skipped or has no such number)."""
    records = []
    for month in result.months:
        record = asdict(month)
        record["month"] = month.label
        record["until"] = month.until.isoformat()
        records.append({name: record[name] for name in COLUMNS})
    return pd.DataFrame(records, columns=list(COLUMNS))


def write_backtest(result: BacktestResult, out_dir: Path) -> dict[str, Path]:
    """backtest.csv (the table), backtest.json (the table, the verdict, the as-of) and backtest.png."""
    from training.plots import plot_backtest

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = backtest_frame(result)
    files = {
        "report": out_dir / "backtest.md",
        "csv": out_dir / "backtest.csv",
        "json": out_dir / "backtest.json",
        "png": out_dir / "backtest.png",
    }
    frame.to_csv(files["csv"], index=False)
    payload: dict[str, Any] = {
        "data_dir": str(result.data_dir),
        "as_of": result.as_of.isoformat(),
        "verdict": result.verdict(),
        "breaking": None
        if result.breaking is None
        else {
            "month": result.breaking.month.isoformat(),
            "sentence": result.breaking.sentence(),
            "auc_loss_then_now": result.breaking.auc_loss,
            "suspects": list(result.breaking.suspects),
            "others": list(result.breaking.others),
            "confirmed": result.breaking.confirmed,
            "config_line": result.breaking.config_line() if result.breaking.confirmed else None,
        },
        "seconds": result.seconds,
        "months": [
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")
        ],
    }
    files["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    plot_backtest(frame, files["png"])
    files["report"].write_text(render_backtest(result), encoding="utf-8")
    return files


def render_backtest(result: BacktestResult) -> str:
    """The backtest as Markdown: the verdict, the months' table, skipped months and broken columns."""
    lines = [
        f"# Backtest of {result.data_dir} as of {result.as_of}",
        "",
        "Each month: the spend estimator and the model fitted on every presentation labelled before the "
        f"month (dated more than {LABEL_WINDOW_DAYS} days before it), evaluated on the month's presentations "
        "beside the best of the baselines fitted on the same rows (random, most popular, spend rule, "
        "estimated value).",
        "",
        f"**{result.verdict()}**",
        "",
        *_month_table(result),
    ]
    lines += ["", "![model against the best baseline per month](backtest.png)", ""]
    if result.breaking is not None:
        lines += ["## Columns whose relation to adoption broke", "", result.breaking.sentence(), ""]
        if result.breaking.auc_loss:
            lines += [
                "| feature | AUC lost when shuffled: training rows | newest month |",
                "|---|---:|---:|",
            ]
            for column, (then, now) in sorted(result.breaking.auc_loss.items(), key=lambda kv: kv[1][1]):
                lines.append(f"| {column} | {then:+.4f} | {now:+.4f} |")
            lines.append("")
    notes = [f"- {m.label}: {m.note}" for m in result.months if m.note]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)
