"""Training job: a data directory → features, training set, spend estimator, model, evaluation, model folder."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nba.contract import DataSource, MccMap, open_data
from nba.drift import drift_files, render_section
from nba.errors import DataError, ModelError, NotFoundError, check_param
from nba.features import (
    BenefitTable,
    ExtraColumns,
    categorical_features,
    feature_names,
    select_extra_columns,
    snapshot_all_sql,
)
from nba.model import (
    BENEFIT_ENCODER,
    CHAMPION_KEY,
    Calibrator,
    CategoryEncoder,
    DetractorModel,
    HolderEncoding,
    ModelBundle,
    ModelManifest,
    PropensityModel,
    SpendEstimator,
    UpliftModel,
    baseline_problem,
    bundle_files,
    fit_calibrator,
    gate_promotion,
    held_out_pseudo_outcomes,
    load_bundle,
    model_categorical,
    model_feature_names,
    pitchless,
    read_current,
    set_current,
    write_model_dir,
)
from nba.vocab import OBJECTIVES, UNHEARD_OUTCOMES, UNMARKED
from training.backtest_months import (
    BacktestResult,
    backtest_in_training,
    render_training_backtest,
    training_backtest_step,
    training_backtest_summary,
)
from training.cli_options import MAX_TRAIN_BACKTEST_MONTHS
from training.detractor_units import DetractorUnits, build_detractor_units
from training.drift_job import DriftScorer, newest_presentations_drift, training_drift_reference
from training.evaluate import (
    ChampionComparison,
    Evaluation,
    ScoringParts,
    baseline_scores,
    evaluate_caused,
    evaluate_off_policy,
)
from training.metrics import qini_curve, qini_interval, ranking_auc
from training.pairs import HolderSnapshots, PairMatrix, build_pair_matrix, compute_snapshots
from training.presentations import LABEL_WINDOW_DAYS
from training.progress import SILENT, Reporter
from training.report import write_report
from training.training_run import (
    TrainingRun,
    TrainOptions,
    _candidates_for,
    bundle_parts,
    detractor_of,
    evaluate_against_oracle,
    evaluate_rows,
    load_inputs,
    matrix_rows,
    open_training_data,
    popularity_of,
    prepare_run,
    score_with,
    snapshots_of,
    uplift_of,
)
from training.uplift_units import OBSERVATIONAL_ASSUMPTIONS, UpliftUnits, build_uplift_units

_Mask = np.ndarray[Any, np.dtype[np.bool_]]


@dataclass
class TrainResult:
    """What a training run produced and how long each step took."""

    model_dir: Path
    version: str
    evaluation: Evaluation
    promoted: bool
    promotion_reason: str
    timings_s: dict[str, float]
    rows: dict[str, int]
    # What the numbers come from and what ships, in a sentence each; warnings a data scientist must see.
    fits: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # The latest months backtested within the run (TrainOptions.backtest_months).
    backtest: BacktestResult | None = None


@dataclass
class _Timer:
    progress: Reporter
    timings: dict[str, float] = field(default_factory=dict)

    def step(self, name: str, started: float, detail: str = "") -> float:
        """Ends step `name`, begun at `started`: records its time and leaves its line."""
        now = time.perf_counter()
        self.timings[name] = round(now - started, 3)
        self.progress.log(f"  {name}: {now - started:.1f} s{f' ({detail})' if detail else ''}")
        return now


def train_model(
    data_dir: Path, models_root: Path, options: TrainOptions, progress: Reporter = SILENT
) -> TrainResult:
    """Trains, evaluates and stores a model version from a data directory; promotes it when asked and better.

    Two fits: the held-out fit (training rows, early stopping on a later slice, evaluated on the latest
    slice), whose numbers are the report's and the promotion gate's; then, with
    `options.ship_all_rows`, the spend estimator and the model that ship are refit on every labelled
    row before the as-of. Only rows dated before `options.as_of` are used, whatever the data holds
    after it, so a backtest can call this in a loop over as-of dates:

        >>> for as_of in month_starts:
        ...     result = train_model(data_dir, tmp / str(as_of), TrainOptions(as_of=as_of))
        ...     result.evaluation.metrics["auc"], result.evaluation.metrics["baseline_auc_most_popular"]

    `progress` is told each step, and gets bars for the long ones (SQL, fits, evaluation parts).
    Raises DataError for invalid data or no labels, ModelError when the model cannot be trained.
    """

    months = options.backtest_months
    check_param(
        "--backtest-months",
        months,
        0 <= months <= MAX_TRAIN_BACKTEST_MONTHS,
        f"an integer in [0, {MAX_TRAIN_BACKTEST_MONTHS}]",
        DataError,
    )
    check_param(
        "--objective",
        options.objective,
        options.objective in OBJECTIVES,
        f"one of {', '.join(OBJECTIVES)}",
        DataError,
    )
    timer = _Timer(progress)
    started = t = time.perf_counter()
    progress.step("validate: the data contract")
    catalog, mcc_map, config = load_inputs(data_dir, options)
    benefits = BenefitTable.from_catalog(catalog)
    t = timer.step("validate", t)
    with open_training_data(data_dir, options) as data:
        progress.step("features: each presentation's snapshot")
        extra = select_extra_columns(options.feature_sql or data.con, config)
        with progress.query(data.con, "labelled presentations SQL"):
            run = prepare_run(data, data_dir, catalog, mcc_map, options)
        as_of, labelled, rows, split = run.as_of, run.labelled, run.rows, run.split
        snapshots = compute_snapshots(data, snapshots_of(rows), mcc_map, extra, progress)
        t = timer.step("features", t, f"{snapshots.table.num_rows:,} snapshots")

        progress.step("spend estimator: a regression per category")
        names = feature_names(extra)
        holder = HolderEncoding.fit(snapshots.table, names, categorical_features(extra))
        estimator, _ = _fit_estimator(
            data, split.valid_from, mcc_map, extra, holder, names, progress, options.threads
        )
        t = timer.step("spend estimator", t, estimator.describe())

        progress.step("training set: candidate matrix")
        heard = ~rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
        benefit_encoder = CategoryEncoder.fit(
            BENEFIT_ENCODER, rows.loc[split.train & heard, "benefit_id"].tolist()
        )
        benefit_codes = np.array([benefit_encoder.code_of(b) for b in benefits.ids])
        matrix = build_pair_matrix(rows, snapshots, holder, estimator, benefits, benefit_codes)
        y = rows["adopted"].to_numpy(dtype=np.float64)
        train_mask, valid_mask = split.train & heard, split.valid & heard
        if y[train_mask].sum() == 0:
            adopted = int(y[heard].sum())
            elsewhere = (
                f" ({adopted:,} of {int(heard.sum()):,} heard presentations adopted, all after the training "
                f"period, which ends {split.valid_from})"
                if adopted
                else ""
            )
            raise DataError(
                "no positive labels in the training period: nobody adopted a benefit after a presentation"
                + elsewhere
            )
        t = timer.step(
            "training set", t, f"{int(train_mask.sum()):,} train, {int(valid_mask.sum()):,} valid rows"
        )

        progress.step("model fit: LightGBM (held-out fit)")
        all_names = model_feature_names(names)
        categorical = model_categorical(holder.categorical)
        model = PropensityModel(
            num_boost_round=options.num_boost_round,
            params={"seed": options.seed},
            refit=options.refit,
            num_threads=options.threads,
        )
        model.fit(
            matrix.X[train_mask],
            y[train_mask],
            all_names,
            categorical,
            matrix.X[valid_mask],
            y[valid_mask],
            progress,
        )
        t = timer.step("model fit", t, _rounds(model, refitted=model.refit and bool(valid_mask.any())))

        parts = ScoringParts(extra, holder, estimator, benefit_codes, score_with(model))
        uplift: _UpliftFit | None = None
        if options.objective == "uplift":
            progress.step("uplift: units and the DR-learner")
            uplift = _fit_uplift(run, snapshots, parts, all_names, categorical, progress)
            parts = replace(parts, rank=uplift_of(uplift.model))
            t = timer.step("uplift", t, uplift.describe())

        progress.step("detractor model: P(detractor | call, suggestion) from the NPS answers")
        detractor = _fit_detractor(run, matrix, all_names, categorical, progress)
        weight = options.arbitration.detractor_weight
        if weight > 0.0:
            if detractor.model is None:
                raise DataError(
                    f"--detractor-weight {weight:g} needs a detractor model: {detractor.units.too_few}"
                )
            parts = replace(parts, detractor=detractor_of(detractor.model), detractor_weight=weight)
        t = timer.step("detractor model", t, detractor.describe())

        progress.step("evaluation: held-out period")
        champion = _champion(models_root)
        evaluation = _evaluate_held_out(run, parts, matrix, snapshots, progress)
        if uplift is not None:
            their_parts = bundle_parts(champion, benefits) if champion is not None else None
            _evaluate_uplift(evaluation, uplift, parts, run, all_names, categorical, snapshots, their_parts)
        _evaluate_detractor(evaluation, detractor, matrix)
        if champion is not None and labelled.label_source.startswith("conversations"):
            progress.step(f"evaluation: the model in service ({champion.version})")
            _compare_with_champion(evaluation, run, champion, parts, matrix, snapshots, progress)
        t = timer.step("evaluation", t)
        backtest = backtest_in_training(
            run, model, matrix, parts, snapshots, options.backtest_months, data_dir, progress
        )
        if options.backtest_months:
            t = timer.step("backtest", t, training_backtest_step(backtest))

        shipped = _Shipped(model, estimator, benefit_encoder, parts, matrix)
        if options.ship_all_rows:
            progress.step("refit on every labelled row: spend estimator and model")
            shipped = _refit_on_every_row(
                run, model, matrix, snapshots, extra, holder, names, heard, progress
            )
            t = timer.step("refit", t, f"{int(heard.sum()):,} rows, {shipped.model.best_iteration_:,} trees")
        if uplift is not None:
            shipped = replace(shipped, parts=replace(shipped.parts, rank=uplift_of(uplift.model)))
        if parts.detractor is not None:
            shipped = replace(
                shipped, parts=replace(shipped.parts, detractor=parts.detractor, detractor_weight=weight)
            )
        if options.oracle is not None:
            progress.step("evaluation: against the oracle (the shipped model)")
            popularity = popularity_of(rows) if options.ship_all_rows else run.popularity
            evaluate_against_oracle(evaluation, run, shipped.parts, popularity, progress)
            t = timer.step("oracle", t)
        # Drift (training/drift_job.py): the reference kept in the model folder for `nba drift` and the
        # service — the shipped model's rows, and scores as the held-out fit gives them to calls it had not
        # learnt (the shipped model has learnt every row: its own scores of them are too spread) — and the calls of the last 30 days (labels not known
        # yet) measured against it for the report.
        shipped_rows = heard if options.ship_all_rows else (train_mask | valid_mask)
        drift_reference = training_drift_reference(
            shipped.model,
            holder,
            shipped.matrix,
            rows,
            shipped_rows,
            data,
            as_of,
            mcc_map,
            extra,
            progress,
            scored_by=(model, matrix),
            population=shipped.population,
        )
        drift_scorer = DriftScorer(
            extra, holder, shipped.estimator, shipped.model, lambda _: shipped.parts.benefit_codes
        )
        drift_newest = newest_presentations_drift(
            data, catalog, drift_scorer, drift_reference, as_of, progress=progress, mcc_map=mcc_map
        )
        t = timer.step("drift", t)

    progress.step("model folder: report, plots, manifest")
    evaluation.metrics["best_iteration"] = float(model.best_iteration_)
    evaluation.metrics["early_stopping_iteration"] = float(model.early_stopping_iteration_)
    evaluation.metrics["shipped_trees"] = float(shipped.model.best_iteration_)
    last_presentation = rows["as_of"].max().date()
    fits = _describe_fits(run, model, shipped, int(shipped_rows.sum()), int((split.test & heard).sum()))
    if uplift is not None:
        fits["uplift_fit"] = uplift.describe()
    fits["detractor_fit"] = detractor.describe()
    data_summary: dict[str, Any] = {
        "data_dir": str(data_dir),
        "as_of": as_of.isoformat(),
        "label_source": labelled.label_source,
        "rows": len(rows),
        "rows_heard": int(heard.sum()),
        # Shown, nobody recorded what happened: in no label (nba.vocab.UNMARKED says why).
        "rows_unmarked": int((rows["outcome"] == UNMARKED).sum()),
        "positives": int(y[heard].sum()),
        "left_out": labelled.left_out,
        "train_rows": int(train_mask.sum()),
        "valid_rows": int(valid_mask.sum()),
        "test_rows": int((split.test & heard).sum()),
        "split_by": split.by,
        "valid_from": split.valid_from.isoformat(),
        "test_from": split.test_from.isoformat(),
        "first_presentation": rows["as_of"].min().date().isoformat(),
        "last_presentation": last_presentation.isoformat(),
        **fits,
        "shipped_rows": int(shipped_rows.sum()),
        # The first presentation date the shipped model has not learned from: a later run compares
        # with this model only on held-out calls from that date on.
        "shipped_rows_until": (
            last_presentation + timedelta(days=1)
            if options.ship_all_rows or split.by == "cardholder"
            else split.test_from
        ).isoformat(),
        "spend_estimator": shipped.estimator.describe(),
        "backtest": training_backtest_summary(backtest),
        "objective": options.objective,
    }
    if uplift is not None:
        data_summary["uplift_units"] = uplift.units.counts
        data_summary["uplift_explored"] = uplift.units.explored
    data_summary["detractor_units"] = detractor.units.counts
    if evaluation.champion is not None:
        data_summary[CHAMPION_KEY] = evaluation.champion.version
    if split.note:
        evaluation.notes.append(split.note)
    files = bundle_files(
        shipped.model,
        shipped.estimator,
        holder,
        shipped.benefit_encoder,
        uplift.model if uplift is not None else None,
        detractor.model,
    )
    report_files = write_report(
        evaluation,
        model,
        data_summary,
        extra,
        labelled,
        options.arbitration,
        shipped.estimator,
        shipped.model,
    )
    files.update(drift_files(drift_reference))
    report_files["report.md"] += ("\n" + render_training_backtest(backtest)).encode()
    report_files["report.md"] += ("\n" + render_section(drift_newest)).encode()
    files.update(report_files)
    params: dict[str, Any] = {
        "num_boost_round": options.num_boost_round,
        "seed": options.seed,
        "gamma": options.arbitration.gamma,
        "top_k": options.arbitration.top_k,
        "value_floor_usd": options.arbitration.value_floor_usd,
        "detractor_weight": options.arbitration.detractor_weight,
        "calibration": shipped.model.calibrator_.kind,
        "refit": model.refit,
        "ship_all_rows": options.ship_all_rows,
        "objective": options.objective,
    }
    finite_metrics = {k: float(v) for k, v in evaluation.metrics.items() if np.isfinite(v)}
    model_dir = write_model_dir(
        models_root,
        files,
        created_at=datetime.now(UTC),
        feature_names=list(all_names),
        catalog_fingerprint=catalog.model_fingerprint(),
        data_summary=data_summary,
        metrics=finite_metrics,
        params=params,
        categorical_features=list(categorical),
        extra={"extra_columns": extra.model_dump(), "holder_features": list(names)},
    )
    manifest = load_bundle(
        model_dir
    ).manifest  # what was written must load: checksums, feature lists, artifacts
    timer.step("model folder", t)
    version = model_dir.name
    warnings = _warnings(shipped.estimator)
    promoted, reason = False, "not asked to promote (--promote)"
    if options.promote:
        decision = gate_promotion(
            manifest, champion.manifest if champion is not None else None, force=options.force
        )
        promoted, reason = decision.promote, decision.reason
        if decision.warning:
            warnings.append(decision.warning)
        if promoted:
            set_current(models_root, version, forced=decision.forced)
    else:
        problem = baseline_problem(manifest)
        if problem is not None:
            warnings.append(f"WARNING: {version} is no better than a baseline: {problem}")
    timer.timings["total"] = round(time.perf_counter() - started, 3)
    counts = {
        "rows": len(rows),
        "train": int(train_mask.sum()),
        "valid": int(valid_mask.sum()),
        "test": int(split.test.sum()),
    }
    return TrainResult(
        model_dir, version, evaluation, promoted, reason, timer.timings, counts, fits, warnings, backtest
    )


@dataclass(frozen=True)
class _UpliftFit:
    """The uplift model and the units it learnt from (`fit`: the training and early-stopping slices' units;
    `test`: the held-out slice's)."""

    model: UpliftModel
    units: UpliftUnits
    fit: np.ndarray[Any, np.dtype[np.bool_]]
    test: np.ndarray[Any, np.dtype[np.bool_]]

    def describe(self) -> str:
        counts = self.units.counts
        return (
            f"DR-learner on {int(self.fit.sum()):,} units of the training and early-stopping slices "
            f"({counts['treated']:,} treated, {counts['controls_not_discussed']:,} not-discussed and "
            f"{counts['controls_not_shown']:,} not-shown controls in all; {counts['unmarked_left_out']:,} "
            f"unmarked left out), {self.model.best_iteration_:,} trees; chance of being shown logged for "
            f"{1 - self.model.shown_prob_estimated_:.0%} of them, estimated for the rest; not refit on the "
            "held-out slice"
        )


def _fit_uplift(
    run: TrainingRun,
    snapshots: HolderSnapshots,
    parts: ScoringParts,
    names: Sequence[str],
    categorical: Sequence[str],
    progress: Reporter,
) -> _UpliftFit:
    """The uplift model from the run's labelled calls: units of the training slice train it, those of the
    early-stopping slice stop it; the held-out slice's are kept for its Qini curve.

    Raises DataError when the labels are not from conversations, or there are no controls at all.
    """
    if not run.labelled.label_source.startswith("conversations"):
        raise DataError(
            f"--objective uplift needs logged conversations to compare calls with and without one; the labels "
            f"here are {run.labelled.label_source}"
        )
    units, fit, valid, test = _held_out_units(run, snapshots, parts)
    if not (units.treated[fit].any() and not units.treated[fit].all()):
        raise DataError(
            "--objective uplift: the training slice has no "
            + ("treated units" if not units.treated[fit].any() else "controls")
            + " (it needs calls where a benefit was discussed and calls where an eligible one was not)"
        )
    model = UpliftModel(seed=run.options.seed).fit(
        units.sample(fit, names, categorical), valid[fit], progress
    )
    return _UpliftFit(model, units, fit, test)


def _evaluate_uplift(
    evaluation: Evaluation,
    uplift: _UpliftFit,
    parts: ScoringParts,
    run: TrainingRun,
    names: Sequence[str],
    categorical: Sequence[str],
    snapshots: HolderSnapshots,
    champion: ScoringParts | None = None,
) -> None:
    """An uplift model on the held-out slice's units (every eligible benefit of its calls): the Qini
    coefficient and AUUC of ranking them by uplift beside ranking them by p_adopt, with bootstrap intervals
    over calls; and the adoptions each policy's top K would cause per call (DR: the model's, the adoption
    ranking's, the baselines', the model in service's when given), which the promotion gate compares. Units
    are weighted by their inverse chance of treatment, and the pseudo-outcomes' nuisance models are fitted
    within the slice (cross-fitted): that undoes the logging policy as a randomised comparison would."""
    units, test = uplift.units, uplift.test
    treated = units.treated[test]
    if not units.explored:
        evaluation.notes.append(OBSERVATIONAL_ASSUMPTIONS)
    if not (treated.any() and not treated.all()):
        evaluation.notes.append(
            "uplift: the held-out slice has no treated units or no controls: no Qini curve"
        )
        return
    seed = run.options.seed
    X = units.matrix.X[test]
    call_ids = units.frame["call_id"].to_numpy(dtype=object)[test]
    phi, e = held_out_pseudo_outcomes(units.sample(test, names, categorical), seed)
    weights = np.where(treated, 1.0 / e, 1.0 / (1.0 - e))
    adopted = units.adopted[test]
    held_out = matrix_rows(units.matrix, test)
    by_uplift_score = uplift.model.predict(X)
    by_adoption_score = parts.score(held_out)
    by_uplift = qini_curve(by_uplift_score, treated, adopted, weights)
    by_adoption = qini_curve(by_adoption_score, treated, adopted, weights)
    interval = qini_interval(
        by_uplift_score, treated, adopted, weights, call_ids, other=by_adoption_score, seed=seed
    )
    evaluation.metrics.update(
        qini_coefficient=by_uplift.coefficient,
        qini_coefficient_ci_low=interval.coefficient_ci[0],
        qini_coefficient_ci_high=interval.coefficient_ci[1],
        auuc=by_uplift.auuc,
        auuc_ci_low=interval.auuc_ci[0],
        auuc_ci_high=interval.auuc_ci[1],
        qini_coefficient_adoption_ranking=by_adoption.coefficient,
        auuc_adoption_ranking=by_adoption.auuc,
        qini_difference_ci_low=interval.difference_ci[0],
        qini_difference_ci_high=interval.difference_ci[1],
        uplift_test_treated=float(by_uplift.n_treated),
        uplift_test_controls=float(by_uplift.n_control),
    )
    evaluation.notes.append(
        f"uplift on the held-out slice's {int(test.sum()):,} units ({by_uplift.n_treated:,} treated, "
        f"{by_uplift.n_control:,} controls), weighted by inverse chance of treatment: Qini coefficient "
        f"{by_uplift.coefficient:.4f} (95% {interval.coefficient_ci[0]:.4f} to {interval.coefficient_ci[1]:.4f}; "
        f"AUUC {by_uplift.auuc:.4f}) ranking by uplift, {by_adoption.coefficient:.4f} "
        f"(AUUC {by_adoption.auuc:.4f}) ranking by p_adopt; the difference's 95% interval "
        f"{interval.difference_ci[0]:.4f} to {interval.difference_ci[1]:.4f} (bootstrap over calls)"
    )
    policies = {
        "model": by_uplift_score,
        "adoption_ranking": by_adoption_score,
        **baseline_scores(held_out, run.popularity, seed),
    }
    if champion is not None and champion.extra == parts.extra:
        frame = units.frame.loc[
            test, ["call_id", "cardholder_id", "as_of", "benefit_id", "call_reason", "rank"]
        ]
        theirs = build_pair_matrix(
            frame.reset_index(drop=True),
            snapshots,
            champion.holder,
            champion.estimator,
            run.benefits,
            champion.benefit_codes,
        )
        policies["champion"] = champion.ranking(theirs)
    evaluate_caused(evaluation, held_out, phi, policies, run.benefits, run.options.arbitration, seed)
    if "champion" in evaluation.caused:
        evaluation.metrics.update(
            vs_champion_dr_caused=evaluation.caused["model"].value,
            champion_dr_caused=evaluation.caused["champion"].value,
        )
    model = evaluation.caused["model"]
    evaluation.notes.append(
        f"uplift: the model's top {run.options.arbitration.top_k} would cause {model.value:.4f} adoptions per "
        f"held-out call (DR, 95% {model.ci[0]:.4f} to {model.ci[1]:.4f}, {model.calls:,} calls), ranking by "
        f"p_adopt {evaluation.caused['adoption_ranking'].value:.4f}"
        + (
            f", the model in service {evaluation.caused['champion'].value:.4f}"
            if "champion" in evaluation.caused
            else ""
        )
    )


def _held_out_units(
    run: TrainingRun, snapshots: HolderSnapshots, parts: ScoringParts
) -> tuple[UpliftUnits, _Mask, _Mask, _Mask]:
    """The uplift units of the run's labelled calls, and which fall in the training and early-stopping
    slices (`fit`), the early-stopping slice (`valid`) and the held-out slice (`test`)."""
    usage = run.data.con.sql("SELECT cardholder_id, benefit_id, first_used_date FROM benefit_usage").df()
    units = build_uplift_units(run.rows, usage, snapshots, parts, run.catalog, run.benefits)
    split = run.split
    slice_of_call = pd.Series(
        np.where(split.test, "test", np.where(split.valid, "valid", "train")), index=run.rows["call_id"]
    )
    slice_of_call = slice_of_call[~slice_of_call.index.duplicated()]
    where = units.frame["call_id"].map(slice_of_call).to_numpy(dtype=object)
    return units, where != "test", where == "valid", where == "test"


@dataclass(frozen=True)
class _DetractorFit:
    """The detractor model (None when the data had too few NPS answers) and the units it learnt from."""

    model: DetractorModel | None
    units: DetractorUnits
    test: np.ndarray[Any, np.dtype[np.bool_]]  # per unit: in the held-out slice

    def describe(self) -> str:
        if self.model is None:
            return str(self.units.too_few)
        return (
            f"detractor model on {self.units.describe()}; {self.model.best_iteration_:,} trees, early stopping "
            "on the early-stopping slice; not refit on the held-out slice"
        )


def _fit_detractor(
    run: TrainingRun,
    matrix: PairMatrix,
    names: Sequence[str],
    categorical: Sequence[str],
    progress: Reporter,
) -> _DetractorFit:
    """The detractor model from the run's answered calls (training slice fits, early-stopping slice stops it;
    the held-out slice's units are kept for its AUC), or none when the answers are too few (`units.too_few`)."""
    answers = run.data.con.sql(
        f"""SELECT call_id, score FROM nps
        WHERE responded_at IS NULL OR CAST(responded_at AS DATE) < DATE '{run.as_of.isoformat()}'"""
    ).df()
    split = run.split
    units = build_detractor_units(run.rows, answers, split.train)
    at = units.at
    test = split.test[at]
    if units.too_few is not None:
        return _DetractorFit(None, units, test)
    fit = split.train[at] | split.valid[at]
    # Calls where nothing was discussed, as pitchless rows: the baseline the added detractors are measured from.
    kept = split.train[units.pitchless_at] | split.valid[units.pitchless_at]
    quiet = units.pitchless_at[kept]
    model = DetractorModel(seed=run.options.seed, num_threads=run.options.threads).fit(
        np.vstack([matrix.X[at][fit], pitchless(matrix.X[quiet], names)]),
        np.concatenate([units.detractor[fit], units.pitchless_detractor[kept]]),
        np.concatenate([units.weight[fit], np.ones(len(quiet))]),
        names,
        categorical,
        np.concatenate([split.valid[at][fit], split.valid[quiet]]),
        progress,
    )
    return _DetractorFit(model, units, test)


def _evaluate_detractor(evaluation: Evaluation, detractor: _DetractorFit, matrix: PairMatrix) -> None:
    """The detractor model's AUC on the held-out slice's units (or the note saying why there is no model)."""
    if detractor.model is None:
        evaluation.notes.append(str(detractor.units.too_few))
        return
    units, test = detractor.units, detractor.test
    label = units.detractor[test]
    if not (label.any() and not label.all()):
        evaluation.notes.append(
            "detractor model: the held-out slice has no detractors or no other answers: no AUC"
        )
        return
    predicted = detractor.model.predict(matrix.X[units.at[test]])
    auc = ranking_auc(label, predicted)
    evaluation.metrics.update(detractor_auc=auc, detractor_test_units=float(test.sum()))
    evaluation.notes.append(
        f"detractor model: AUC {auc:.3f} on the held-out slice's {int(test.sum()):,} discussed suggestions on "
        f"answered calls ({int(label.sum()):,} on detractor calls); {units.describe()}"
    )


def _warnings(estimator: SpendEstimator) -> list[str]:
    if estimator.learned_nothing:
        return [f"WARNING: spend estimator: {estimator.describe()}"]
    return []


def _fit_estimator(
    data: DataSource,
    as_of: date,
    mcc_map: MccMap,
    extra: ExtraColumns,
    holder: HolderEncoding,
    names: Sequence[str],
    progress: Reporter,
    threads: int = 0,
) -> tuple[SpendEstimator, np.ndarray[Any, np.dtype[np.float64]]]:
    """The spend estimator learnt from every cardholder's features as of `as_of` (data strictly before it),
    and those features encoded (the drift reference of a model shipped as of `as_of` counts them too)."""
    snapshot = data.con.sql(snapshot_all_sql(as_of)).to_arrow_table()
    cardholders = holder.encode(compute_snapshots(data, snapshot, mcc_map, extra, progress).table)
    estimator = SpendEstimator(extra_inputs=tuple(extra.taken), num_threads=threads).fit(
        cardholders, names, holder.categorical, progress
    )
    return estimator, cardholders


@dataclass(frozen=True)
class _Shipped:
    """What goes into the model folder: the model, its spend estimator and benefit codes, and their scorer."""

    model: PropensityModel
    estimator: SpendEstimator
    benefit_encoder: CategoryEncoder
    parts: ScoringParts
    matrix: PairMatrix  # the presentations' rows as this model sees them (its spend estimator's values)
    # Every cardholder's features at the as-of, encoded, when the refit computed them (else None).
    population: np.ndarray[Any, np.dtype[np.float64]] | None = None


def _refit_on_every_row(
    run: TrainingRun,
    model: PropensityModel,
    matrix: PairMatrix,
    snapshots: HolderSnapshots,
    extra: ExtraColumns,
    holder: HolderEncoding,
    names: Sequence[str],
    heard: np.ndarray[Any, np.dtype[np.bool_]],
    progress: Reporter,
) -> _Shipped:
    """The spend estimator as of the as-of and the model on every labelled row (training, early stopping
    and evaluation slices).

    Trees: the number early stopping chose for the held-out fit, scaled by the rows added (as the
    held-out fit's own refit does). Calibration: fitted over time on out-of-time predictions of two
    forward-chaining folds the held-out fit already made: training rows → the early-stopping slice,
    training + early-stopping rows → the evaluation slice.
    """
    split, rows = run.split, run.rows
    estimator, population = _fit_estimator(
        run.data, run.as_of, run.mcc_map, extra, holder, names, progress, run.options.threads
    )
    encoder = CategoryEncoder.fit(BENEFIT_ENCODER, rows.loc[heard, "benefit_id"].tolist())
    codes = np.array([encoder.code_of(b) for b in run.benefits.ids])
    every = build_pair_matrix(rows, snapshots, holder, estimator, run.benefits, codes)
    y = rows["adopted"].to_numpy(dtype=np.float64)
    valid, test = split.valid & heard, split.test & heard
    y_later = np.concatenate([y[valid], y[test]])
    p_later = np.concatenate([model.valid_raw_proba_, model.predict_raw(matrix.X[test])])
    calibrator, losses = fit_calibrator(y_later, p_later) if model.calibrate else (Calibrator("identity"), {})
    trees = max(1, round(model.early_stopping_iteration_ * heard.sum() / max((split.train & heard).sum(), 1)))
    shipped = PropensityModel(
        num_boost_round=trees, params=model.params, num_threads=model.num_threads
    ).fit_rounds(
        every.X[heard], y[heard], model.feature_names_, model.categorical_features_, calibrator, progress
    )
    shipped.calibration_losses_ = losses
    parts = ScoringParts(extra, holder, estimator, codes, score_with(shipped))
    return _Shipped(shipped, estimator, encoder, parts, every, population)


def _describe_fits(
    run: TrainingRun, model: PropensityModel, shipped: _Shipped, shipped_rows: int, test_rows: int
) -> dict[str, str]:
    """Which fit the numbers come from and what ships, a sentence each (report, summary, manifest)."""
    split = run.split
    if split.by == "date":
        held_out = (
            f"held-out fit: trained on rows before {split.test_from} (early stopping on those from "
            f"{split.valid_from}), evaluated on the {test_rows:,} rows from {split.test_from}"
        )
    else:
        held_out = f"held-out fit: trained on a random 80% of cardholders, evaluated on the {test_rows:,} rows of the rest"
    if shipped.model is model:
        ships = f"the held-out fit itself ({model.best_iteration_:,} trees; spend estimator as of {split.valid_from})"
    else:
        ships = (
            f"refit on every labelled row up to the as-of {run.as_of} ({shipped_rows:,} rows, "
            f"{shipped.model.best_iteration_:,} trees: the {model.early_stopping_iteration_:,} early stopping chose "
            f"scaled by the rows), calibration {shipped.model.calibrator_.kind} fitted over time on two "
            f"forward-chaining folds (training → early-stopping slice, training + early stopping → "
            f"evaluation slice); spend estimator refit as of {run.as_of}; presentations in the last "
            f"{LABEL_WINDOW_DAYS} days (labels not known yet) are left out"
        )
    return {"metrics_from": held_out, "shipped_fit": ships}


def _rounds(model: PropensityModel, refitted: bool) -> str:
    """The fit's rounds as its line says them: how many early stopping chose, then the refit's."""
    chosen = (
        f"early stopping chose {model.early_stopping_iteration_:,} of up to {model.num_boost_round:,} rounds"
    )
    return f"{chosen}, refit {model.best_iteration_:,}" if refitted else chosen


def _evaluate_held_out(
    run: TrainingRun, parts: ScoringParts, matrix: PairMatrix, snapshots: HolderSnapshots, progress: Reporter
) -> Evaluation:
    """Held-out metrics and off-policy estimates, each beside the baselines' on the same rows and calls."""
    test_rows = run.rows[run.split.test].reset_index(drop=True)
    return evaluate_rows(
        run, parts, test_rows, matrix_rows(matrix, run.split.test), snapshots, run.popularity, progress
    )


def _trained_until(manifest: ModelManifest) -> date | None:
    """The first presentation date a stored model did not learn from (older folders: their test_from)."""
    summary = manifest.data_summary
    value = summary.get("shipped_rows_until", summary.get("test_from"))
    return date.fromisoformat(value) if isinstance(value, str) else None


def _compare_with_champion(
    evaluation: Evaluation,
    run: TrainingRun,
    champion: ModelBundle,
    parts: ScoringParts,
    matrix: PairMatrix,
    snapshots: HolderSnapshots,
    progress: Reporter,
) -> None:
    """The held-out fit beside the model in service on the same held-out calls: AUC and IPS adoptions.

    Only the calls the model in service did not learn from count (it may have been refit on some of
    this run's held-out rows); when it learnt from all of them there is no fair comparison: a note
    says so and the promotion gate falls back to the manifests' own numbers.
    """
    test = run.split.test.copy()
    until = _trained_until(champion.manifest)
    since: date | None = None
    if until is not None and until > run.split.test_from:
        unseen = test & (run.rows["as_of"] >= pd.Timestamp(until)).to_numpy()
        if run.split.by == "cardholder" or not unseen.any():
            evaluation.notes.append(
                f"the model in service {champion.version} learnt from these held-out calls (its rows run to "
                f"{until}): no fair comparison on the same calls, so promotion compares the manifests' own "
                "held-out numbers"
            )
            return
        test, since = unseen, until
    rows = run.rows[test].reset_index(drop=True)
    theirs = bundle_parts(champion, run.benefits)
    their_snapshots = (
        snapshots
        if champion.extra == parts.extra
        else compute_snapshots(run.data, snapshots_of(rows), run.mcc_map, champion.extra, progress)
    )
    heard = ~rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
    y = rows["adopted"].to_numpy(dtype=np.float64)[heard]
    their_matrix = build_pair_matrix(
        rows, their_snapshots, theirs.holder, theirs.estimator, run.benefits, theirs.benefit_codes
    )
    nan = float("nan")
    auc = {
        "model": ranking_auc(y, parts.score(matrix_rows(matrix, test))[heard]) if heard.any() else nan,
        "champion": ranking_auc(y, theirs.score(their_matrix)[heard]) if heard.any() else nan,
    }
    ips: dict[str, float] = {}
    for name, scoring, holders in (("model", parts, snapshots), ("champion", theirs, their_snapshots)):
        candidates = _candidates_for(rows, holders, scoring, run.catalog, run.benefits)
        scratch = Evaluation()
        evaluate_off_policy(
            scratch,
            rows,
            candidates,
            {name: scoring.ranking(candidates)},
            run.benefits,
            run.options.arbitration,
        )
        estimate = scratch.off_policy.get(name)
        ips[name] = estimate.ips if estimate is not None else nan
        if name == "champion" and estimate is not None:
            evaluation.off_policy["champion"] = estimate
    calls = int(rows["call_id"].nunique())
    evaluation.champion = ChampionComparison(
        champion.version, calls, since, auc["model"], auc["champion"], ips["model"], ips["champion"]
    )
    evaluation.metrics.update(
        vs_champion_auc=auc["model"],
        champion_auc=auc["champion"],
        vs_champion_ips=ips["model"],
        champion_ips=ips["champion"],
        vs_champion_calls=float(calls),
    )


def evaluate_model(
    model_dir: Path, data_dir: Path, options: TrainOptions, progress: Reporter = SILENT
) -> Evaluation:
    """Evaluates a stored model on a data directory's held-out period, as `nba train` does at its end.

    `progress` is told each step and gets bars for the long ones. Raises ModelError when the model does
    not fit the data's catalog.
    """
    timer = _Timer(progress)
    t = time.perf_counter()
    progress.step("validate: the model folder and the data contract")
    bundle = load_bundle(model_dir)
    catalog, mcc_map, _ = load_inputs(data_dir, options)
    bundle.check_catalog(catalog)
    benefits = BenefitTable.from_catalog(catalog)
    parts = bundle_parts(bundle, benefits, options.arbitration.detractor_weight)
    t = timer.step("validate", t)
    with open_data(data_dir) as data:
        progress.step("features: each presentation's snapshot")
        with progress.query(data.con, "labelled presentations SQL"):
            run = prepare_run(data, data_dir, catalog, mcc_map, options)
        snapshots = compute_snapshots(data, snapshots_of(run.rows), mcc_map, bundle.extra, progress)
        t = timer.step("features", t, f"{snapshots.table.num_rows:,} snapshots")
        progress.step("evaluation: held-out period")
        matrix = build_pair_matrix(
            run.rows, snapshots, parts.holder, parts.estimator, benefits, parts.benefit_codes
        )
        evaluation = _evaluate_held_out(run, parts, matrix, snapshots, progress)
        if bundle.uplift is not None:
            progress.step("evaluation: uplift on the held-out slice's units")
            if run.labelled.label_source.startswith("conversations"):
                units, fit, _, test = _held_out_units(run, snapshots, parts)
                uplift = _UpliftFit(bundle.uplift, units, fit, test)
                _evaluate_uplift(
                    evaluation,
                    uplift,
                    parts,
                    run,
                    bundle.manifest.feature_names,
                    bundle.manifest.categorical_features,
                    snapshots,
                )
            else:
                evaluation.notes.append(
                    f"uplift: no Qini curve: the labels here are {run.labelled.label_source}, not conversations"
                )
        if options.oracle is not None:
            evaluate_against_oracle(evaluation, run, parts, run.popularity, progress)
        until = _trained_until(bundle.manifest)
        if until is not None and (run.split.by == "cardholder" or until > run.split.test_from):
            evaluation.notes.append(
                f"{bundle.version} learnt from presentations before {until}, some of these held-out ones "
                "among them: its held-out numbers here are optimistic (its report holds its held-out fit's)"
            )
        timer.step("evaluation", t)
    return evaluation


def _champion(models_root: Path) -> ModelBundle | None:
    current = read_current(models_root) if models_root.exists() else None
    if current is None:
        return None
    try:
        return load_bundle(models_root / current)
    except (ModelError, NotFoundError):
        # A broken champion is no reason to refuse a new model; the report says it was not compared.
        return None
