"""Summary: a training run's result → one screen a data scientist reads at the end of `nba train`."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from training.backtest_months import BacktestResult
from training.evaluate import Evaluation
from training.report import champion_line
from training.train_job import TrainResult


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def print_evaluation(evaluation: Evaluation, console: Console | None = None) -> None:
    """Held-out metrics, then each policy beside the baselines (off-policy and, if given, the oracle)."""
    console = console or Console()
    m = evaluation.metrics
    console.print(
        f"held-out: AUC {_fmt(m.get('auc'))}  log loss {_fmt(m.get('log_loss'))}  ECE {_fmt(m.get('ece'))}  "
        f"NDCG@3 {_fmt(m.get('ndcg_at_3'))}  MAP@3 {_fmt(m.get('map_at_3'))}  rows {_fmt(m.get('test_rows'), 0)}"
    )
    table = Table(title="policies, top 3", show_lines=False)
    table.add_column("policy", no_wrap=True)
    # One line per policy on an 80-column terminal: the oracle columns only when an oracle was given.
    table.add_column("IPS adoptions/call [95% CI]", justify="right", no_wrap=True)
    if evaluation.oracle:
        table.add_column("oracle: expected adoptions", justify="right")
        table.add_column("oracle ratio", justify="right")
    names = list(dict.fromkeys([*evaluation.off_policy, *evaluation.oracle]))
    for name in names:
        ope = evaluation.off_policy.get(name)
        cells = [name, f"{ope.ips:.4f} [{ope.ips_ci[0]:.4f}, {ope.ips_ci[1]:.4f}]" if ope else ""]
        if evaluation.oracle:
            oracle = evaluation.oracle.get(name)
            cells += [_fmt(oracle[0]) if oracle else "", _fmt(oracle[1], 3) if oracle else ""]
        table.add_row(*cells)
    if names:
        console.print(table)
    if evaluation.doubly_robust:
        console.print(
            "doubly robust adoptions/call [95% CI]: "
            + "; ".join(
                f"{name} {dr.dr:.4f} [{dr.dr_ci[0]:.4f}, {dr.dr_ci[1]:.4f}]"
                + (
                    f" (truth {evaluation.true_per_call[name]:.4f})"
                    if name in evaluation.true_per_call
                    else ""
                )
                for name, dr in evaluation.doubly_robust.items()
            )
        )
    if evaluation.true_detractor_share:
        console.print(
            "true detractor share of answers (generator's NPS truth, held-out logged calls): "
            + "; ".join(f"{name} {share:.4f}" for name, share in evaluation.true_detractor_share.items())
        )
    if evaluation.oracle:
        lift = m.get("oracle_lift_over_best_baseline")
        console.print(
            f"oracle best {_fmt(evaluation.oracle_best)} (through the same arbitration: ratio "
            f"{_fmt(m.get('oracle_ratio_arbitration_cap'), 3)}); model over the best baseline "
            f"{_fmt(lift * 100 if lift is not None else None, 1)}%; invalid suggestions {evaluation.invalid_suggestions}"
        )
        console.print(
            f"value-weighted (true adoption × true value): model {_fmt(m.get('oracle_value_weighted_usd'), 2)} "
            f"of the oracle's best {_fmt(m.get('oracle_best_value_weighted_usd'), 2)} dollars a year per "
            f"cardholder, ratio {_fmt(m.get('oracle_value_weighted_ratio'), 3)}"
        )
    if evaluation.oracle_uplift:
        ratios = ", ".join(
            f"{name} {_fmt(ratio, 3)}" for name, (_, ratio) in evaluation.oracle_uplift.items()
        )
        console.print(
            f"oracle uplift (adoptions the top 3 truly causes, p_true − p_natural): model "
            f"{_fmt(m.get('oracle_caused_adoptions_top_k'))} of the best {_fmt(evaluation.oracle_best_uplift)} "
            f"per cardholder; uplift ratio {ratios}"
        )
    baselines = {k.removeprefix("baseline_auc_"): v for k, v in m.items() if k.startswith("baseline_auc_")}
    if baselines:
        best = max(baselines, key=lambda name: baselines[name])
        console.print(f"best baseline's held-out AUC on the same rows: {best} {_fmt(baselines[best])}")
    if evaluation.champion is not None:
        console.print(champion_line(evaluation.champion))
    logged = next(iter(evaluation.off_policy.values()), None)
    if logged is not None:
        console.print(
            f"logging policy observed: {logged.logged_per_call:.4f} adoptions/call on {logged.n_calls} calls"
        )
    for note in evaluation.notes:
        console.print(f"note: {note}")


def print_train_summary(result: TrainResult, console: Console | None = None) -> None:
    """The one-screen summary at the end of `nba train`."""
    console = console or Console()
    console.print(f"model {result.version} → {result.model_dir}")
    parts = dict(result.rows)
    labelled = parts.pop("rows", None)
    split = ", ".join(f"{k} {v:,}" for k, v in parts.items())
    console.print(
        (f"rows: {labelled:,} labelled ({split})" if labelled is not None else f"rows: {split}")
        + "   time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings_s.items())
    )
    for what, sentence in result.fits.items():
        console.print(f"{what.replace('_', ' ')}: {sentence}")
    print_evaluation(result.evaluation, console)
    if result.backtest is not None:
        _print_training_backtest(result.backtest, console)
    # The reason starts with what happened ("promote V: ...", "keep C: ...", "not asked to promote").
    console.print(f"promotion: {result.promotion_reason}")
    for warning in result.warnings:
        console.print(warning, style="bold red")
    console.print(f"report: {result.model_dir / 'report.md'}")


def _print_training_backtest(result: BacktestResult, console: Console) -> None:
    """`nba train`'s own backtest: a line per month (model vs best baseline), the verdict, or why none."""
    if not result.months:
        console.print(f"backtest: no month: {result.note}")
        return
    for m in result.months:
        if m.status == "skipped":
            console.print(f"backtest {m.label} skipped: {m.note}", style="bold red")
            continue
        console.print(
            f"backtest {m.label}: AUC {_fmt(m.auc, 3)} (best baseline {_fmt(m.best_baseline_auc, 3)}), "
            f"IPS/call {_fmt(m.ips, 3)} (best baseline {_fmt(m.best_baseline_ips, 3)}), {m.test_rows:,} rows"
        )
    verdict = result.verdict()
    console.print(f"backtest: {verdict}", style=None if verdict.startswith("STABLE") else "bold red")
    if result.note:
        console.print(f"backtest: {result.note}")


def print_backtest(result: BacktestResult, console: Console | None = None) -> None:
    """The month-by-month table of `nba backtest` (fits 80 columns), its verdict in one line, the files."""
    console = console or Console()
    console.print(f"backtest of {result.data_dir} as of {result.as_of}: model vs best baseline per month")
    table = Table(box=None, pad_edge=False)
    for header in ("month", "train", "test", "AUC", "base", "IPS/call", "base", "ECE", "oracle"):
        table.add_column(header, justify="left" if header == "month" else "right", no_wrap=True)
    for m in result.months:
        if m.status == "skipped":
            table.add_row(m.label, f"{m.train_rows:,}", f"{m.test_rows:,}", "skipped")
            continue
        table.add_row(
            m.label,
            f"{m.train_rows:,}",
            f"{m.test_rows:,}",
            _fmt(m.auc, 3),
            _fmt(m.best_baseline_auc, 3),
            _fmt(m.ips, 3),
            _fmt(m.best_baseline_ips, 3),
            _fmt(m.ece, 3),
            _fmt(m.oracle_ratio, 3),
        )
    console.print(table)
    for m in result.months:
        if m.status == "skipped":
            console.print(f"{m.label} skipped: {m.note}", style="bold red")
    verdict = result.verdict()
    console.print(verdict, style=None if verdict.startswith("STABLE") else "bold red")
    if result.breaking is not None:
        line = result.breaking.sentence()
        console.print(line, style="bold red" if result.breaking.confirmed else None)
    for name, path in result.files.items():
        console.print(f"{name}: {path}")
