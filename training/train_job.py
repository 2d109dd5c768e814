"""Training job: a data directory → features, training set, spend estimator, model, evaluation, model folder."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa

from nba.contract import (
    MCC_OVERRIDE_FILE,
    Catalog,
    DataSource,
    MccMap,
    catalog_for,
    load_catalog,
    load_mcc_map,
    open_data,
    validate_data,
)
from nba.decision import ArbitrationConfig
from nba.drift import drift_files, render_section
from nba.errors import DataError, ModelError, NotFoundError
from nba.features import (
    BenefitTable,
    ExtraColumns,
    FeatureConfig,
    categorical_features,
    feature_names,
    load_feature_config,
    select_extra_columns,
    snapshot_all_sql,
)
from nba.model import (
    BENEFIT_ENCODER,
    CHAMPION_KEY,
    Calibrator,
    CategoryEncoder,
    HolderEncoding,
    ModelBundle,
    ModelManifest,
    PropensityModel,
    SpendEstimator,
    baseline_problem,
    bundle_files,
    fit_calibrator,
    gate_promotion,
    load_bundle,
    model_categorical,
    model_feature_names,
    read_current,
    set_current,
    write_model_dir,
)
from nba.vocab import NOT_DISCUSSED
from training.drift_job import DriftScorer, newest_presentations_drift, training_drift_reference
from training.evaluate import (
    ChampionComparison,
    Evaluation,
    ScoringParts,
    baseline_scores,
    eligible_pairs,
    evaluate_baselines_logged,
    evaluate_logged,
    evaluate_months,
    evaluate_off_policy,
    evaluate_oracle,
    read_oracle,
)
from training.metrics import ranking_auc
from training.pairs import HolderSnapshots, PairMatrix, build_pair_matrix, compute_snapshots
from training.presentations import (
    LABEL_WINDOW_DAYS,
    LabelledRows,
    TimeSplit,
    load_natural_adoption,
    load_presentations,
    split_rows,
)
from training.progress import SILENT, Reporter
from training.report import write_report

if TYPE_CHECKING:
    from training.backtest_job import BacktestResult


# `nba train`'s own backtest (training/backtest_job.py::backtest_in_training): how many of the latest months
# it refits by default. A month costs one LightGBM fit of fixed rounds and the month's evaluation
# (bench/bench_train_cost.py); the refit on every row and these months stay within 2x a train without them.
TRAIN_BACKTEST_MONTHS: Final = 2
MAX_TRAIN_BACKTEST_MONTHS: Final = 12


@dataclass(frozen=True)
class TrainOptions:
    """What `nba train` takes besides the data directory and the models folder."""

    as_of: date | None = None
    feature_config: Path | None = None
    catalog_path: Path | None = None
    oracle: Path | None = None
    promote: bool = False
    num_boost_round: int = 2000
    seed: int = 0
    # Evaluation (and so the promotion gate) measures the policies' rankings with no value floor by default:
    # the floor takes the same small benefits from the model and every baseline and narrows their gaps; on a
    # small held-out slice it flipped the gate (tests/e2e/test_train.py's second run: model IPS 0.350 below
    # random's 0.374 with the $12 floor). `nba evaluate --value-floor 12` and bench/bench_value_floor.py
    # measure the floor; the service and `nba score`/`recommend` apply it.
    arbitration: ArbitrationConfig = field(default_factory=lambda: ArbitrationConfig(value_floor_usd=0.0))
    # The held-out fit trains its final trees on the training and early-stopping rows (their number
    # found by early stopping): +0.004 oracle ratio and +0.006 held-out AUC on two 50k worlds.
    refit: bool = True
    # The model that ships is refit on every labelled row up to the as-of, the evaluation slice
    # included (the newest months are the most like tomorrow's calls); the report's numbers stay the
    # held-out fit's. False ships the held-out fit itself.
    ship_all_rows: bool = True
    # Promote past the promotion gate (recorded as forced in the registry's HISTORY).
    force: bool = False
    # LightGBM's threads (0: OpenMP's default, every core); `nba train` passes --threads.
    threads: int = 0
    # The latest months backtested within the run, shown in the report (0: none).
    backtest_months: int = TRAIN_BACKTEST_MONTHS


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


def load_inputs(data_dir: Path, options: TrainOptions) -> tuple[Catalog, MccMap, FeatureConfig]:
    """The validated data directory's catalog, MCC map and features config; ValidationError on bad data."""
    # The rows before --as-of are checked; later ones are not used (each snapshot's features, each
    # label's window end before it), so a backtest can train as of any earlier date on the full data.
    report = validate_data(data_dir, as_of=options.as_of, catalog_path=options.catalog_path)
    report.raise_for_problems()
    catalog = load_catalog(options.catalog_path or catalog_for(data_dir))
    override = data_dir / MCC_OVERRIDE_FILE
    mcc_map = load_mcc_map(override if override.exists() else None)
    config = load_feature_config(options.feature_config) if options.feature_config else FeatureConfig()
    return catalog, mcc_map, config


NATURAL_SNAPSHOTS = 4
NATURAL_SNAPSHOT_STEP_DAYS = 45


def _labelled_rows(data: DataSource, as_of: date, catalog: Catalog) -> LabelledRows:
    """Labelled presentations; for a programme with no conversations yet, natural adoption instead.

    Natural adoption is observed at several snapshot dates (45 days apart, the latest one 91 days
    before as_of so its 90-day window is complete), so the later snapshots can be held out in time.
    """
    rows = load_presentations(data, as_of)
    if rows.table.num_rows:
        return rows
    recent = rows.left_out.get("label_not_known_yet", 0)
    pairs = " UNION ALL ".join(
        f"SELECT cardholder_id, '{b}' AS benefit_id FROM cardholders WHERE product_id = '{p.id}'"
        for p in catalog.products
        for b in p.benefits
    )
    snapshots = [
        load_natural_adoption(data, as_of - timedelta(days=91 + NATURAL_SNAPSHOT_STEP_DAYS * j), pairs)
        for j in reversed(range(NATURAL_SNAPSHOTS))
    ]
    why = (
        f"no conversation has a known label yet: all {recent:,} are in the {LABEL_WINDOW_DAYS} days before the as-of"
        if recent
        else "no conversations yet"
    )
    source = (
        f"natural adoption: first use in the 90 days after each of {NATURAL_SNAPSHOTS} snapshot dates "
        f"{NATURAL_SNAPSHOT_STEP_DAYS} days apart, the latest {snapshots[-1].table.column('as_of')[0]} ({why})"
    )
    return LabelledRows(pa.concat_tables([s.table for s in snapshots]), source, {})


def snapshots_of(frame: pd.DataFrame) -> pa.Table:
    """The distinct (cardholder_id, as_of) pairs of `frame`: the feature snapshots its rows need."""
    keys = frame[["cardholder_id", "as_of"]].drop_duplicates()
    return pa.table(
        {
            "cardholder_id": keys["cardholder_id"].tolist(),
            "as_of": pa.array(keys["as_of"].tolist(), pa.date32()),
        }
    )


def popularity_of(train_rows: pd.DataFrame) -> dict[str, float]:
    """Each benefit's adoption rate among the heard presentations of `train_rows` (the most-popular baseline)."""
    heard = train_rows[train_rows["outcome"].fillna("") != NOT_DISCUSSED]
    return {str(k): float(v) for k, v in heard.groupby("benefit_id")["adopted"].mean().items()}


def score_with(model: PropensityModel) -> Callable[[PairMatrix], np.ndarray[Any, np.dtype[np.float64]]]:
    """The scorer of ScoringParts for a fitted model: a pair matrix → p_adopt per row."""

    def score(matrix: PairMatrix) -> np.ndarray[Any, np.dtype[np.float64]]:
        return model.predict_proba(matrix.X)[:, 1] if len(matrix.X) else np.zeros(0)

    return score


def bundle_parts(bundle: ModelBundle, benefits: BenefitTable) -> ScoringParts:
    """What scoring with a stored model needs: its extra columns, encoders, estimator and benefit codes."""
    return ScoringParts(
        extra=bundle.extra,
        holder=bundle.holder,
        estimator=bundle.estimator,
        benefit_codes=bundle.benefit_codes(benefits),
        score=score_with(bundle.model),
    )


def _candidates_for(
    test_rows: pd.DataFrame,
    snapshots: HolderSnapshots,
    parts: ScoringParts,
    catalog: Catalog,
    benefits: BenefitTable,
) -> PairMatrix:
    calls = test_rows[["call_id", "cardholder_id", "as_of", "call_reason"]].drop_duplicates("call_id")
    pairs = eligible_pairs(calls, snapshots, catalog, benefits)
    return build_pair_matrix(pairs, snapshots, parts.holder, parts.estimator, benefits, parts.benefit_codes)


@dataclass(frozen=True)
class TrainingRun:
    """What training and evaluation both derive from a data directory: the labelled rows and their split."""

    data: DataSource
    as_of: date
    labelled: LabelledRows
    rows: pd.DataFrame
    split: TimeSplit
    catalog: Catalog
    benefits: BenefitTable
    mcc_map: MccMap
    options: TrainOptions

    @property
    def popularity(self) -> dict[str, float]:
        return popularity_of(self.rows[self.split.train])


def prepare_run(
    data: DataSource, data_dir: Path, catalog: Catalog, mcc_map: MccMap, options: TrainOptions
) -> TrainingRun:
    """The labelled rows before the as-of (`options.as_of`, else the day after the data) and their split.

    Raises DataError when the data has no dated rows, no labelled presentation, or rows that cannot be split.
    """
    as_of = data.resolve_as_of(options.as_of)
    labelled = _labelled_rows(data, as_of, catalog)
    rows = labelled.table.to_pandas()
    if rows.empty:
        recent = labelled.left_out.get("label_not_known_yet", 0)
        why = (
            f": all {recent:,} are in the {LABEL_WINDOW_DAYS} days before it, where whether the benefit "
            f"was taken up is not known yet (give data that runs on past them, or an earlier --as-of)"
            if recent
            else "; nothing to learn from"
        )
        raise DataError(f"{data_dir}: no presentations with a known label before {as_of}{why}")
    rows["as_of"] = pd.to_datetime(rows["as_of"])
    try:
        split = split_rows(
            rows["as_of"].to_numpy(dtype="datetime64[D]"),
            rows["cardholder_id"].to_numpy(dtype=object),
            seed=options.seed,
        )
    except ValueError as exc:
        raise DataError(f"{data_dir}: {exc}") from None
    return TrainingRun(
        data, as_of, labelled, rows, split, catalog, BenefitTable.from_catalog(catalog), mcc_map, options
    )


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
    # backtest_job builds on this module, so it is imported where it is used.
    from training.backtest_job import (
        backtest_in_training,
        render_training_backtest,
        training_backtest_step,
        training_backtest_summary,
    )

    if not 0 <= options.backtest_months <= MAX_TRAIN_BACKTEST_MONTHS:
        raise DataError(
            f"`--backtest-months` must be an integer in [0, {MAX_TRAIN_BACKTEST_MONTHS}]. "
            f"Got {options.backtest_months} instead."
        )
    timer = _Timer(progress)
    started = t = time.perf_counter()
    progress.step("validate: the data contract")
    catalog, mcc_map, config = load_inputs(data_dir, options)
    benefits = BenefitTable.from_catalog(catalog)
    t = timer.step("validate", t)
    with open_data(data_dir) as data:
        progress.step("features: each presentation's snapshot")
        extra = select_extra_columns(data.con, config)
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
        heard = (rows["outcome"].fillna("") != NOT_DISCUSSED).to_numpy()
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

        progress.step("evaluation: held-out period")
        parts = ScoringParts(extra, holder, estimator, benefit_codes, score_with(model))
        champion = _champion(models_root)
        evaluation = _evaluate_held_out(run, parts, matrix, snapshots, progress)
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
            data, catalog, drift_scorer, drift_reference, as_of, progress=progress
        )
        t = timer.step("drift", t)

    progress.step("model folder: report, plots, manifest")
    evaluation.metrics["best_iteration"] = float(model.best_iteration_)
    evaluation.metrics["early_stopping_iteration"] = float(model.early_stopping_iteration_)
    evaluation.metrics["shipped_trees"] = float(shipped.model.best_iteration_)
    last_presentation = rows["as_of"].max().date()
    fits = _describe_fits(run, model, shipped, int(shipped_rows.sum()), int((split.test & heard).sum()))
    data_summary: dict[str, Any] = {
        "data_dir": str(data_dir),
        "as_of": as_of.isoformat(),
        "label_source": labelled.label_source,
        "rows": len(rows),
        "rows_heard": int(heard.sum()),
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
    }
    if evaluation.champion is not None:
        data_summary[CHAMPION_KEY] = evaluation.champion.version
    if split.note:
        evaluation.notes.append(split.note)
    files = bundle_files(shipped.model, shipped.estimator, holder, shipped.benefit_encoder)
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
        "calibration": shipped.model.calibrator_.kind,
        "refit": model.refit,
        "ship_all_rows": options.ship_all_rows,
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


def evaluate_rows(
    run: TrainingRun,
    parts: ScoringParts,
    test_rows: pd.DataFrame,
    test_matrix: PairMatrix,
    snapshots: HolderSnapshots,
    popularity: dict[str, float],
    progress: Reporter,
) -> Evaluation:
    """Metrics on `test_rows` (their pair matrix `test_matrix`; `snapshots` hold their cardholders) and
    off-policy estimates on their calls, each beside the baselines' (`popularity`: what was known before)."""
    evaluation = Evaluation()
    options, benefits = run.options, run.benefits
    off_policy = run.labelled.label_source.startswith("conversations")
    with progress.track("parts", 1 + int(off_policy)) as done:  # logged metrics, off-policy
        p_test = parts.score(test_matrix)
        evaluate_logged(evaluation, test_rows, test_matrix, p_test)
        evaluate_baselines_logged(evaluation, test_rows, test_matrix, popularity, options.seed)
        evaluate_months(evaluation, test_rows, test_matrix, p_test, popularity, options.seed)
        done.advance()
        if off_policy:
            candidates = _candidates_for(test_rows, snapshots, parts, run.catalog, benefits)
            policies = {
                "model": parts.score(candidates),
                **baseline_scores(candidates, popularity, options.seed),
            }
            evaluate_off_policy(
                evaluation, test_rows, candidates, policies, benefits, options.arbitration, progress
            )
            done.advance()
        else:
            evaluation.notes.append(
                f"no conversations to evaluate off-policy on; labels are {run.labelled.label_source}"
            )
    return evaluation


def evaluate_against_oracle(
    evaluation: Evaluation,
    run: TrainingRun,
    parts: ScoringParts,
    popularity: dict[str, float],
    progress: Reporter,
    truth: pd.DataFrame | None = None,
    day: date | None = None,
) -> None:
    """The oracle comparison at `day` (default: the run's as-of) with `truth` (default: the oracle file's
    truth as of the latest date it holds)."""
    if run.options.oracle is None:
        return
    evaluate_oracle(
        evaluation,
        run.data,
        pd.Timestamp(day or run.as_of),
        truth if truth is not None else read_oracle(run.options.oracle),
        parts,
        run.mcc_map,
        run.catalog,
        run.benefits,
        popularity,
        run.options.arbitration,
        run.options.seed,
        progress,
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
    heard = (rows["outcome"].fillna("") != NOT_DISCUSSED).to_numpy()
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
            {name: scoring.score(candidates)},
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
    parts = bundle_parts(bundle, benefits)
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


def matrix_rows(matrix: PairMatrix, mask: np.ndarray[Any, np.dtype[np.bool_]]) -> PairMatrix:
    """The rows of `matrix` where `mask` holds, every part of it."""
    return PairMatrix(
        matrix.X[mask],
        matrix.value_usd[mask],
        matrix.benefit_index[mask],
        matrix.categories[mask],
        matrix.frame[mask].reset_index(drop=True),
    )


def _champion(models_root: Path) -> ModelBundle | None:
    current = read_current(models_root) if models_root.exists() else None
    if current is None:
        return None
    try:
        return load_bundle(models_root / current)
    except (ModelError, NotFoundError):
        # A broken champion is no reason to refuse a new model; the report says it was not compared.
        return None
