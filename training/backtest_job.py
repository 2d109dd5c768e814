"""Backtest: a data directory → for each of its last N months, the spend estimator and the model fitted on
the rows before that month and evaluated on its presentations, beside the baselines (and the oracle)."""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq

from nba.contract import open_data
from nba.drift import RelationShift, relation_shifts
from nba.errors import DataError, check_param
from nba.features import FeatureConfig, load_feature_config
from nba.model import Calibrator, ModelBundle, PropensityModel, load_bundle
from nba.vocab import NOT_DISCUSSED
from training.cli_options import DEFAULT_MONTHS, MAX_MONTHS
from training.evaluate import BASELINES, Evaluation, ScoringParts, read_oracle
from training.pairs import HolderSnapshots, PairMatrix, build_pair_matrix, compute_snapshots
from training.presentations import LABEL_WINDOW_DAYS
from training.progress import SILENT, Reporter
from training.train_job import (
    TrainingRun,
    TrainOptions,
    bundle_parts,
    evaluate_against_oracle,
    evaluate_rows,
    load_inputs,
    matrix_rows,
    popularity_of,
    prepare_run,
    score_with,
    snapshots_of,
    train_model,
)

# The model's lead over the best baseline is "shrinking" when the newest months' mean lead is below this
# share of the oldest months' (and still above zero).
SHRINKING_SHARE: Final = 0.5


@dataclass(frozen=True)
class BacktestMonth:
    """One month of a backtest: trained on the rows before `month`, evaluated on `month` … `until`."""

    month: date
    until: date
    status: Literal["evaluated", "skipped"]
    note: str = ""
    train_rows: int = 0
    test_rows: int = 0
    test_calls: int = 0
    positives: int = 0
    auc: float = math.nan
    best_baseline_auc: float = math.nan
    best_baseline_auc_name: str = ""
    ips: float = math.nan
    ips_low: float = math.nan
    ips_high: float = math.nan
    best_baseline_ips: float = math.nan
    best_baseline_ips_name: str = ""
    logged_per_call: float = math.nan
    ece: float = math.nan
    oracle_ratio: float = math.nan
    best_baseline_oracle_ratio: float = math.nan
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return self.month.strftime("%Y-%m")

    @property
    def ips_lead(self) -> float:
        """Adoptions per call the model gains over the best baseline this month (IPS)."""
        return self.ips - self.best_baseline_ips

    @property
    def auc_lead(self) -> float:
        return self.auc - self.best_baseline_auc


@dataclass(frozen=True)
class Breaking:
    """The bank's own columns whose relation to adoption broke by the newest month, as the backtest found.

    `auc_loss` holds, for each of the bank's columns and each broken feature, the AUC lost when it is
    shuffled (`nba.drift.relation_shifts`) on the model's latest training rows and on the newest month's
    rows: (then, now). Broken: it helped then, and shuffling it gains more than `MIN_SHUFFLE_GAIN` now.
    `suspects` are the broken bank's columns (a features config can leave them out), `others` the broken
    built-in features (it cannot); `without` is the newest month backtested again without the suspects,
    and `confirmed` says whether that model did better there on AUC and IPS.
    """

    month: date
    auc_loss: dict[str, tuple[float, float]]
    suspects: tuple[str, ...]
    others: tuple[str, ...] = ()
    with_them: BacktestMonth | None = None
    without: BacktestMonth | None = None

    @property
    def confirmed(self) -> bool:
        if self.with_them is None or self.without is None or self.without.status != "evaluated":
            return False
        ips_ok = not (np.isfinite(self.without.ips) and np.isfinite(self.with_them.ips)) or (
            self.without.ips >= self.with_them.ips
        )
        return bool(self.without.auc > self.with_them.auc and ips_ok)

    def config_line(self) -> str:
        return f"exclude: [{', '.join(self.suspects)}]"

    def sentence(self) -> str:
        """What a data scientist reads: the columns, the evidence, and the config line (or that none broke)."""
        also = (
            f"; built-in features whose relation broke too (the features config cannot leave them out): "
            f"{', '.join(self.others)}"
            if self.others
            else ""
        )
        if not self.suspects:
            return f"no column of the bank's own broke by {self.month:%Y-%m}{also}"
        names = ", ".join(self.suspects)
        assert self.with_them is not None
        if self.without is None or self.without.status != "evaluated":
            return f"{names}: shuffling helped in {self.month:%Y-%m}, but a model without them could not be fitted{also}"
        measured = (
            f"AUC {self.with_them.auc:.3f} → {self.without.auc:.3f}, IPS {self.with_them.ips:.3f} → "
            f"{self.without.ips:.3f}"
        )
        if self.confirmed:
            return (
                f"BROKEN: {names}: a model without them does better on {self.month:%Y-%m} ({measured}); "
                f"to leave them out, put `{self.config_line()}` in the features config (--config){also}"
            )
        return (
            f"{names}: shuffling helped in {self.month:%Y-%m}, but a model without them is not better "
            f"({measured}){also}"
        )


@dataclass
class BacktestResult:
    """The months of a backtest, oldest first, and where their table and plot were written."""

    data_dir: Path
    as_of: date
    months: list[BacktestMonth]
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    breaking: Breaking | None = None
    seconds: float = 0.0
    # Why fewer months were backtested than asked for, or none (`nba train`'s own backtest).
    note: str = ""

    @property
    def evaluated(self) -> list[BacktestMonth]:
        return [m for m in self.months if m.status == "evaluated"]

    def verdict(self) -> str:
        """One line: is the model's lead over the best baseline stable, shrinking or gone?"""
        months = self.evaluated
        if not months:
            return "no month could be evaluated: see the notes of the skipped months"
        key = "ips" if all(np.isfinite(m.ips_lead) for m in months) else "auc"
        leads = [m.ips_lead if key == "ips" else m.auc_lead for m in months]
        measure = "IPS adoptions per call" if key == "ips" else "AUC"
        behind = [m.label for m, lead in zip(months, leads, strict=True) if lead <= 0]
        latest = months[-1]
        if leads[-1] <= 0:
            return (
                f"GONE: in {latest.label} the model is not above the best baseline on {measure} "
                f"(behind or level in {len(behind)} of {len(months)} months: {', '.join(behind)})"
            )
        half = max(len(leads) // 2, 1)
        old, new = float(np.mean(leads[:half])), float(np.mean(leads[-half:]))
        if len(leads) >= 2 and old > 0 and new < SHRINKING_SHARE * old:
            return (
                f"SHRINKING: the model's lead on {measure} fell from {old:+.4f} (oldest {half} months) to "
                f"{new:+.4f} (newest {half})"
            )
        if behind:
            return f"UNSTABLE: the model leads on {measure} now but was behind in {', '.join(behind)}"
        return f"STABLE: the model is above the best baseline on {measure} in all {len(months)} months"


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def possible_months(dates: pd.Series, as_of: date) -> list[date]:
    """The first days of every month that can be backtested, oldest first: each has labelled presentations
    (all before as_of − 30 days) and labelled presentations to train on before it (dated 30 days or more
    earlier). Raises DataError ("no backtest possible: …", naming the span) when none can.
    """
    days = sorted({d.date() for d in pd.to_datetime(dates)})
    if not days:
        raise DataError(f"no presentations with a known label before {as_of}: nothing to backtest")
    first = days[0]
    starts = sorted({_month_start(d) for d in days})
    possible = [s for s in starts if first < s - timedelta(days=LABEL_WINDOW_DAYS)]
    if not possible:
        span = f"{starts[0]:%Y-%m} … {starts[-1]:%Y-%m}"
        raise DataError(
            f"no backtest possible: the labelled presentations span {len(starts)} month(s) ({span}); a "
            f"backtest month needs presentations to train on dated more than {LABEL_WINDOW_DAYS} days before "
            "it (give a longer history)"
        )
    return possible


def month_window(start: date, as_of: date) -> tuple[date, date]:
    """A backtest month's (first day, end): the next month's first day, or the label cut-off if earlier."""
    return start, min(_next_month(start), as_of - timedelta(days=LABEL_WINDOW_DAYS))


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


def _month_rows(
    run: TrainingRun, start: date, end: date
) -> tuple[BacktestMonth, pd.DataFrame, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """A month's counts (skipped, with a note, when none of its heard presentations was adopted), its
    rows, and the masks over the run's rows of the month and of the rows labelled before it."""
    day = run.rows["as_of"].dt.date
    in_month = ((day >= start) & (day < end)).to_numpy()
    known_then = (day < start - timedelta(days=LABEL_WINDOW_DAYS)).to_numpy()
    rows = run.rows[in_month].reset_index(drop=True)
    heard = (rows["outcome"].fillna("") != NOT_DISCUSSED).to_numpy()
    base = BacktestMonth(
        start,
        end,
        "skipped",
        train_rows=int(known_then.sum()),
        test_rows=int(heard.sum()),
        test_calls=int(rows["call_id"].nunique()),
        positives=int(rows.loc[heard, "adopted"].sum()),
    )
    if base.positives == 0:
        base = replace(
            base, note=f"no positive labels: none of {base.test_rows:,} heard presentations was adopted"
        )
    return base, rows, in_month, known_then


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


def backtest_in_training(
    run: TrainingRun,
    model: PropensityModel,
    matrix: PairMatrix,
    parts: ScoringParts,
    snapshots: HolderSnapshots,
    months: int,
    data_dir: Path,
    progress: Reporter = SILENT,
) -> BacktestResult:
    """`nba train`'s backtest of its latest `months` months, at a fraction of `nba backtest`'s cost.

    Each month's model is the held-out fit (`model`) refit on the rows labelled before the month
    (presentations dated more than 30 days before it) with as many trees as its early stopping chose,
    scaled by the rows; its candidate rows (`matrix`, all of `run.rows`) are the held-out fit's, built with
    its spend estimator as of the early-stopping slice's first day, so only months from that day on
    qualify (the estimator saw nothing of them). Uncalibrated: no ECE. What `nba backtest` adds per month
    (its own spend estimator, calibration, oracle ratio and feature check) costs a whole `nba train` each.
    Never raises for want of months: `BacktestResult.note` says why there are fewer than asked, or none.
    """
    result = BacktestResult(data_dir, run.as_of, [])
    if months == 0:
        result.note = "not asked for (--backtest-months 0)"
        return result
    if run.split.by != "date":
        result.note = "no backtest possible: the presentations fall on too few dates to split by time"
        return result
    if not run.labelled.label_source.startswith("conversations"):
        result.note = f"no backtest possible: no logged presentations to test on (labels are {run.labelled.label_source})"
        return result
    try:
        possible = possible_months(run.rows["as_of"], run.as_of)
    except DataError as exc:
        result.note = str(exc)
        return result
    since = run.split.valid_from
    eligible = [s for s in possible if s >= since]
    chosen = eligible[-months:]
    if len(chosen) < months:
        result.note = (
            f"{len(chosen)} of the {months} month(s) asked for: in training, only months from {since} (the "
            f"held-out fit's spend estimator date) can be backtested; `nba backtest --months {months}` fits "
            f"everything for each of the {len(possible)} possible month(s)"
        )
    started = time.perf_counter()
    for i, start in enumerate(chosen, 1):
        progress.step(f"backtest {i}/{len(chosen)}: {start:%Y-%m}, refit on the rows labelled before it")
        month_started = time.perf_counter()
        month = _refit_month(run, model, matrix, parts, snapshots, *month_window(start, run.as_of))
        result.months.append(replace(month, seconds=round(time.perf_counter() - month_started, 1)))
    result.seconds = round(time.perf_counter() - started, 1)
    return result


def _refit_month(
    run: TrainingRun,
    model: PropensityModel,
    matrix: PairMatrix,
    parts: ScoringParts,
    snapshots: HolderSnapshots,
    start: date,
    end: date,
) -> BacktestMonth:
    base, rows, in_month, known_then = _month_rows(run, start, end)
    if base.note:
        return base
    heard = (run.rows["outcome"].fillna("") != NOT_DISCUSSED).to_numpy()
    y = run.rows["adopted"].to_numpy(dtype=np.float64)
    fit = known_then & heard
    if y[fit].sum() == 0:
        return replace(
            base, note=f"no positive labels among the {int(fit.sum()):,} heard rows labelled before it"
        )
    trained_on = max(int((run.split.train & heard).sum()), 1)
    trees = max(1, round(model.early_stopping_iteration_ * int(fit.sum()) / trained_on))
    refit = PropensityModel(num_boost_round=trees, params=model.params).fit_rounds(
        matrix.X[fit], y[fit], model.feature_names_, model.categorical_features_, Calibrator("identity")
    )
    evaluation = evaluate_rows(
        run,
        replace(parts, score=score_with(refit)),
        rows,
        matrix_rows(matrix, in_month),
        snapshots,
        popularity_of(run.rows[known_then]),
        SILENT,
    )
    return replace(_month_of(base, evaluation), ece=math.nan)


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
        heard = (rows["outcome"].fillna("") != NOT_DISCUSSED).to_numpy()
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


def _best(metrics: dict[str, float], prefix: str) -> tuple[float, str]:
    found = [
        (metrics[f"{prefix}{name}"], name)
        for name in BASELINES
        if np.isfinite(metrics.get(f"{prefix}{name}", math.nan))
    ]
    return max(found) if found else (math.nan, "")


def _month_of(base: BacktestMonth, evaluation: Evaluation) -> BacktestMonth:
    metrics = evaluation.metrics
    best_auc, best_auc_name = _best(metrics, "baseline_auc_")
    best_ips, best_ips_name = _best(metrics, "baseline_ips_")
    model = evaluation.off_policy.get("model")
    oracle_best = [(evaluation.oracle[name][1], name) for name in BASELINES if name in evaluation.oracle]
    nan = math.nan
    return replace(
        base,
        status="evaluated",
        note="; ".join(evaluation.notes),
        auc=metrics.get("auc", nan),
        best_baseline_auc=best_auc,
        best_baseline_auc_name=best_auc_name,
        ips=model.ips if model is not None else nan,
        ips_low=model.ips_ci[0] if model is not None else nan,
        ips_high=model.ips_ci[1] if model is not None else nan,
        best_baseline_ips=best_ips,
        best_baseline_ips_name=best_ips_name,
        logged_per_call=model.logged_per_call if model is not None else nan,
        ece=metrics.get("ece", nan),
        oracle_ratio=evaluation.oracle["model"][1] if "model" in evaluation.oracle else nan,
        best_baseline_oracle_ratio=max(oracle_best)[0] if oracle_best else nan,
    )


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


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else "–"
    return str(value)


def _month_table(result: BacktestResult) -> list[str]:
    lines = [
        "| month | trained on | tested | AUC | best baseline | IPS/call [95% CI] | best baseline | ECE | oracle ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in result.months:
        if m.status == "skipped":
            lines.append(f"| {m.label} | {m.train_rows:,} | {m.test_rows:,} | skipped: {m.note} | | | | | |")
            continue
        lines.append(
            f"| {m.label} | {m.train_rows:,} | {m.test_rows:,} | {_cell(m.auc)} | {_cell(m.best_baseline_auc)} "
            f"({m.best_baseline_auc_name}) | {_cell(m.ips)} [{_cell(m.ips_low)}, {_cell(m.ips_high)}] | "
            f"{_cell(m.best_baseline_ips)} ({m.best_baseline_ips_name}) | {_cell(m.ece)} | {_cell(m.oracle_ratio)} |"
        )
    return lines


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


def training_backtest_step(result: BacktestResult) -> str:
    """The detail of `nba train`'s backtest step line: the months and the verdict's first word."""
    if not result.months:
        return "no month: see the report"
    return f"{', '.join(m.label for m in result.months)}: {result.verdict().split(':')[0]}"


def training_backtest_summary(result: BacktestResult) -> str:
    """One line for `nba train`'s summary and manifest: the verdict, or why there is none."""
    if not result.months:
        return f"no backtest month: {result.note}"
    months = ", ".join(m.label for m in result.months)
    note = f" ({result.note})" if result.note else ""
    return f"{months}: {result.verdict()}{note}"


def render_training_backtest(result: BacktestResult) -> str:
    """`nba train`'s report section on its own backtest of the latest months (`backtest_in_training`)."""
    lines = [
        "## Backtest: the latest months",
        "",
    ]
    if not result.months:
        return "\n".join([*lines, f"No backtest month: {result.note}.", ""])
    lines += [
        "Each month: the held-out fit refit on every presentation labelled before the month (dated more than "
        f"{LABEL_WINDOW_DAYS} days before it; as many trees as early stopping chose, scaled by the rows; "
        "uncalibrated, so no ECE) and evaluated on the month's presentations beside the best baseline fitted "
        "on the same rows. The candidate rows and spend estimator are the held-out fit's. `nba backtest` fits "
        "everything, spend estimator and calibration included, for each month.",
        "",
        f"**{result.verdict()}**",
        "",
        *_month_table(result),
        "",
    ]
    notes = [f"- {m.label}: {m.note}" for m in result.months if m.note]
    if result.note:
        notes.insert(0, f"- {result.note}")
    if notes:
        lines += ["Notes:", "", *notes, ""]
    return "\n".join(lines)
