"""Report: an evaluation + the model → report.md and PNG plots for the model folder."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nba.decision import ArbitrationConfig
from nba.features import ExtraColumns
from nba.model import PropensityModel, SpendEstimator
from nba.vocab import SPEND_CATEGORIES
from training.evaluate import BASELINES, ChampionComparison, Evaluation
from training.plots import plot_calibration, plot_feature_importance, plot_lift, plot_model_vs_baselines
from training.presentations import LabelledRows


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _trees(model: PropensityModel) -> str:
    found = getattr(model, "early_stopping_iteration_", model.best_iteration_)
    if found == model.best_iteration_:
        return f"{found} (early stopping)"
    return (
        f"{model.best_iteration_} ({found} found by early stopping on the later slice, "
        "then refit on training and early-stopping rows)"
    )


def _fit_lines(model: PropensityModel, data_summary: Mapping[str, Any]) -> list[str]:
    """Which fit the report's numbers come from, and which model ships, said plainly."""
    losses = ", ".join(f"{k} {v:.4f}" for k, v in model.calibration_losses_.items())
    lines = [
        f"**The numbers in this report** (but the oracle's) come from the "
        f"{data_summary.get('metrics_from', 'held-out fit')}. Its trees: {_trees(model)}; its calibration: "
        f"{model.calibrator_.kind} (log loss on the early-stopping slice: {losses or 'n/a'}).",
    ]
    if "shipped_fit" in data_summary:
        lines.append(f"**The model that ships** (model.txt): {data_summary['shipped_fit']}.")
    return lines


def champion_line(c: ChampionComparison) -> str:
    """The held-out fit beside the model in service, in one sentence."""
    where = f"the {c.calls:,} held-out calls from {c.since}" if c.since else f"all {c.calls:,} held-out calls"
    return (
        f"Beside the model in service ({c.version}) on {where}: AUC {_fmt(c.model_auc)} vs {_fmt(c.champion_auc)}, "
        f"IPS adoptions/call {_fmt(c.model_ips)} vs {_fmt(c.champion_ips)}."
    )


def _estimator_lines(estimator: SpendEstimator) -> list[str]:
    lines = [
        "",
        "## Spend estimator that ships (yearly spend per category, any card)",
        "",
        "One regression per category on log card spend of cardholders who spend there, from their other "
        "categories and their profile; the smearing factor turns the fitted log into a mean.",
        "",
    ]
    rows = [
        [
            category,
            str(estimator.train_rows_[category]),
            "yes" if category in estimator.boosters_ else "no (median)",
            _fmt(estimator.smearing_.get(category, 1.0), 2),
            _fmt(estimator.reference_usd_[category], 0),
        ]
        for category in SPEND_CATEGORIES
    ]
    lines.append(f"Learnt: {estimator.describe()}.")
    lines.append("")
    return lines + _table(["category", "spenders", "model", "smearing", "typical estimate (USD)"], rows)


def render_report(
    evaluation: Evaluation,
    model: PropensityModel,
    data_summary: Mapping[str, Any],
    extra: ExtraColumns,
    labelled: LabelledRows,
    arbitration: ArbitrationConfig,
    estimator: SpendEstimator | None = None,
) -> str:
    """The human-readable report of a training run (markdown).

    `model` is the held-out fit (its numbers are the report's); `estimator` is the one that ships.
    """
    m = evaluation.metrics
    lines = ["# Model report", ""]
    lines += [
        f"Labels: {labelled.label_source}.",
        f"Data as of {data_summary['as_of']}; presentations {data_summary['first_presentation']} to "
        f"{data_summary['last_presentation']}; "
        + (
            "split by cardholder at random (too few presentation dates to split by time)."
            if data_summary.get("split_by") == "cardholder"
            else f"training before {data_summary['valid_from']}, early stopping until {data_summary['test_from']}, "
            f"evaluation from {data_summary['test_from']} (held out)."
        ),
        f"Rows: {data_summary['rows_heard']} heard presentations ({data_summary['positives']} adopted); "
        f"train {data_summary['train_rows']}, valid {data_summary['valid_rows']}, test {data_summary['test_rows']}. "
        f"Left out: {', '.join(f'{k} {v}' for k, v in labelled.left_out.items()) or 'none'}.",
        *_fit_lines(model, data_summary),
        f"Arbitration: priority = p_adopt × value^{arbitration.gamma:g} × lever, top {arbitration.top_k}, "
        f"diversity {'on' if arbitration.diversity else 'off'}, value floor ${arbitration.value_floor_usd:g} a year"
        + (
            f"; NPS term: the ranking score less {arbitration.detractor_weight:g} × the detractors a pitch adds, "
            "a pitch not worth them left out."
            if arbitration.detractor_weight > 0
            else "; NPS term off (detractor weight 0)."
        ),
        "",
        "## Held-out presentations",
        "",
    ]
    lines += _table(
        ["AUC", "log loss", "Brier", "ECE", "NDCG@3", "MAP@3", "base rate"],
        [[_fmt(m.get(k)) for k in ("auc", "log_loss", "brier", "ece", "ndcg_at_3", "map_at_3", "base_rate")]],
    )
    baselines = {k.removeprefix("baseline_auc_"): v for k, v in m.items() if k.startswith("baseline_auc_")}
    if baselines:
        lines += [
            "",
            "Baselines' AUC on the same rows: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in baselines.items())
            + ".",
        ]
    if evaluation.months:
        lines += [
            "",
            "Month by month (the same held-out fit, trained before the slice: a lead that shrinks from month to "
            "month shows here; `nba backtest` refits for each month):",
            "",
        ]
        lines += _table(
            ["month", "rows", "adopted", "AUC", "best baseline AUC", "mean predicted", "observed rate"],
            [
                [
                    h.month,
                    f"{h.rows:,}",
                    f"{h.positives:,}",
                    _fmt(h.auc),
                    f"{_fmt(h.best_baseline_auc)} ({h.best_baseline})",
                    _fmt(h.mean_predicted),
                    _fmt(h.observed_rate),
                ]
                for h in evaluation.months
            ],
        )
    if evaluation.champion is not None:
        lines += ["", champion_line(evaluation.champion)]
    if evaluation.off_policy:
        lines += ["", "## Off-policy estimates on held-out logged calls (adoptions per call, 95% CI)", ""]
        rows = []
        for name, est in evaluation.off_policy.items():
            rows.append(
                [
                    name,
                    f"{est.ips:.4f} [{est.ips_ci[0]:.4f}, {est.ips_ci[1]:.4f}]",
                    f"{est.snips_per_call:.4f} [{est.snips_per_call_ci[0]:.4f}, {est.snips_per_call_ci[1]:.4f}]",
                    f"{est.logged_per_call:.4f}",
                    f"{est.ess:.0f}",
                ]
            )
        lines += _table(["policy", "IPS", "SNIPS", "logging policy (observed)", "ESS"], rows)
        warnings = {est.warning for est in evaluation.off_policy.values() if est.warning}
        lines += [f"\nNote: {w}" for w in sorted(warnings)]
    if evaluation.doubly_robust:
        lines += [
            "",
            "Doubly robust (the adoption model's probability as the outcome model, corrected by the logged "
            "outcomes; adoptions per call, 95% CI; `logging` is the logging policy on its own logs):",
            "",
        ]
        rows = []
        for name, dr in evaluation.doubly_robust.items():
            truth = evaluation.true_per_call.get(name)
            rows.append(
                [
                    name,
                    f"{dr.dr:.4f} [{dr.dr_ci[0]:.4f}, {dr.dr_ci[1]:.4f}]",
                    f"{dr.sndr:.4f} [{dr.sndr_ci[0]:.4f}, {dr.sndr_ci[1]:.4f}]",
                    f"{dr.direct:.4f}",
                    "" if truth is None else f"{truth:.4f}",
                ]
            )
        lines += _table(["policy", "DR", "SNDR", "direct method", "truth (generator)"], rows)
    if evaluation.true_detractor_share:
        lines += [
            "",
            f"True share of detractor answers on the same calls under each policy's top K (the generator's NPS "
            f"truth; `nothing`: no suggestion at all; detractor weight {arbitration.detractor_weight:g}):",
            "",
        ]
        lines += _table(
            ["policy", "true detractor share", "true adoptions per call"],
            [
                [name, f"{share:.4f}", _fmt(evaluation.true_per_call.get(name))]
                for name, share in evaluation.true_detractor_share.items()
            ],
        )
    if evaluation.oracle:
        lines += [
            "",
            "## Against the oracle (general call at the as-of date, true adoption probabilities; the shipped model)",
            "",
            f"Oracle's best top {arbitration.top_k}: {_fmt(evaluation.oracle_best)} expected adoptions per cardholder. "
            f"The true probabilities sent through the same arbitration (diversity "
            f"{'on' if arbitration.diversity else 'off'}) reach an oracle ratio of "
            f"{_fmt(m.get('oracle_ratio_arbitration_cap'), 3)}: no model can do better under these rules.",
            "",
        ]
        rows = [[name, _fmt(exp), _fmt(ratio, 3)] for name, (exp, ratio) in evaluation.oracle.items()]
        lines += _table(["policy", f"expected adoptions, top {arbitration.top_k}", "oracle ratio"], rows)
        lift = m.get("oracle_lift_over_best_baseline")
        lines += [
            "",
            f"Model over the best baseline: {_fmt(lift * 100 if lift is not None else None, 1)}%. "
            f"Value-weighted (expected dollars a year per cardholder, top {arbitration.top_k}): {_fmt(m.get('oracle_value_usd_top_k'), 2)}. "
            f"Value-weighted against the oracle (true adoption × true value, top {arbitration.top_k}): "
            f"{_fmt(m.get('oracle_value_weighted_usd'), 2)} of the best {_fmt(m.get('oracle_best_value_weighted_usd'), 2)} "
            f"dollars a year per cardholder, ratio {_fmt(m.get('oracle_value_weighted_ratio'), 3)}; "
            f"{_fmt(m.get('oracle_shown_per_cardholder'), 2)} suggestions shown per cardholder "
            f"(value floor ${arbitration.value_floor_usd:g} a year). "
            f"Invalid suggestions (not on the card, used, duplicated): {evaluation.invalid_suggestions}.",
        ]
    if evaluation.oracle_uplift:
        lines += [
            "",
            f"What the suggestions cause (a counterfactual world's oracle): the adoptions a policy's top "
            f"{arbitration.top_k} truly adds beyond those that happen without a conversation, Σ (p_true − p_natural), "
            f"per cardholder; the best top {arbitration.top_k} by that uplift causes {_fmt(evaluation.oracle_best_uplift)}.",
            "",
        ]
        rows = [
            [name, _fmt(caused), _fmt(ratio, 3)] for name, (caused, ratio) in evaluation.oracle_uplift.items()
        ]
        lines += _table(["policy", f"caused adoptions, top {arbitration.top_k}", "oracle uplift ratio"], rows)
    if estimator is not None:
        lines += _estimator_lines(estimator)
    lines += ["", "## Extra cardholder columns", ""]
    lines += [f"- taken: {name} ({kind})" for name, kind in extra.taken.items()] or ["- none taken"]
    lines += [f"- left out: {name} — {why}" for name, why in extra.left_out.items()]
    if evaluation.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in evaluation.notes]
    lines += [
        "",
        "## Plots",
        "",
        "![calibration](calibration.png) ![lift](lift.png)",
        "![importance](feature_importance.png) ![baselines](model_vs_baselines.png)",
        "",
    ]
    return "\n".join(lines)


def write_report(
    evaluation: Evaluation,
    model: PropensityModel,
    data_summary: Mapping[str, Any],
    extra: ExtraColumns,
    labelled: LabelledRows,
    arbitration: ArbitrationConfig,
    estimator: SpendEstimator | None = None,
    shipped: PropensityModel | None = None,
) -> dict[str, bytes]:
    """report.md and the PNG plots (feature importance: of the `shipped` model), as files for the model folder."""
    report = render_report(evaluation, model, data_summary, extra, labelled, arbitration, estimator)
    files = {"report.md": report.encode()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        if evaluation.calibration is not None:
            paths.append(plot_calibration(evaluation.calibration, folder / "calibration.png"))
        if evaluation.lift is not None:
            paths.append(plot_lift(evaluation.lift, folder / "lift.png"))
        ships = shipped or model
        gains = ships.booster_.feature_importance("gain", iteration=ships.best_iteration_)
        paths.append(plot_feature_importance(ships.feature_names_, gains, folder / "feature_importance.png"))
        if evaluation.oracle:
            results = {
                name: exp for name, (exp, _) in evaluation.oracle.items() if name in ("model", *BASELINES)
            }
            label = f"expected adoptions per cardholder, top {arbitration.top_k} (oracle)"
            paths.append(plot_model_vs_baselines(results, folder / "model_vs_baselines.png", label))
        elif evaluation.off_policy:
            results = {
                name: est.ips for name, est in evaluation.off_policy.items() if name in ("model", *BASELINES)
            }
            label = f"adoptions per call, top {arbitration.top_k} (IPS on held-out calls)"
            paths.append(plot_model_vs_baselines(results, folder / "model_vs_baselines.png", label))
        for path in paths:
            files[path.name] = path.read_bytes()
    return files
