"""Backtest months: the month windows, a month's rows and result records, and `nba train`'s own backtest
of its latest months (the held-out fit refit per month) → what `nba train` and `nba backtest` share."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.errors import DataError
from nba.model import Calibrator, PropensityModel
from nba.vocab import UNHEARD_OUTCOMES
from training.evaluate import BASELINES, Evaluation, ScoringParts
from training.pairs import HolderSnapshots, PairMatrix
from training.presentations import LABEL_WINDOW_DAYS
from training.progress import SILENT, Reporter
from training.training_run import TrainingRun, evaluate_rows, matrix_rows, popularity_of, score_with

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


def _month_rows(
    run: TrainingRun, start: date, end: date
) -> tuple[BacktestMonth, pd.DataFrame, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """A month's counts (skipped, with a note, when none of its heard presentations was adopted), its
    rows, and the masks over the run's rows of the month and of the rows labelled before it."""
    day = run.rows["as_of"].dt.date
    in_month = ((day >= start) & (day < end)).to_numpy()
    known_then = (day < start - timedelta(days=LABEL_WINDOW_DAYS)).to_numpy()
    rows = run.rows[in_month].reset_index(drop=True)
    heard = ~rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
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
    heard = ~run.rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
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
