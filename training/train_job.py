"""Training job: a data directory → features, training set, spend estimator, model, evaluation, model folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from nba.arbitration import ArbitrationConfig
from nba.bundle import (
    BENEFIT_ENCODER,
    HolderEncoding,
    ModelBundle,
    bundle_files,
    load_bundle,
    model_categorical,
    model_feature_names,
)
from nba.catalog import Catalog, catalog_for, load_catalog
from nba.drift import drift_files, render_section
from nba.errors import DataError, ModelError, NotFoundError
from nba.estimator import SpendEstimator
from nba.features import (
    FeatureConfig,
    categorical_features,
    feature_names,
    load_feature_config,
    select_extra_columns,
    snapshot_all_sql,
)
from nba.matrix import BenefitTable
from nba.mcc import MccMap, load_mcc_map
from nba.model import CategoryEncoder, PropensityModel
from nba.registry import decide_promotion, read_current, set_current, write_model_dir
from nba.tables import DataSource, open_data
from nba.validation import MCC_OVERRIDE_FILE, validate_data
from training.drift_job import DriftScorer, newest_presentations_drift, training_drift_reference
from training.evaluate import (
    Evaluation,
    ScoringParts,
    baseline_scores,
    eligible_pairs,
    evaluate_logged,
    evaluate_off_policy,
    evaluate_oracle,
    read_oracle,
)
from training.pairs import HolderSnapshots, PairMatrix, build_pair_matrix, compute_snapshots
from training.presentations import (
    LabelledRows,
    TimeSplit,
    load_natural_adoption,
    load_presentations,
    split_by_time,
)
from training.progress import SILENT, Reporter
from training.report import write_report


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
    arbitration: ArbitrationConfig = field(default_factory=ArbitrationConfig)
    # Train the final trees on the training and early-stopping rows (their number found by early
    # stopping): +0.004 oracle ratio and +0.006 held-out AUC on two 50k worlds, for a second fit.
    refit: bool = True


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


def _load_inputs(data_dir: Path, options: TrainOptions) -> tuple[Catalog, MccMap, FeatureConfig]:
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
    pairs = " UNION ALL ".join(
        f"SELECT cardholder_id, '{b}' AS benefit_id FROM cardholders WHERE product_id = '{p.id}'"
        for p in catalog.products
        for b in p.benefits
    )
    snapshots = [
        load_natural_adoption(data, as_of - timedelta(days=91 + NATURAL_SNAPSHOT_STEP_DAYS * j), pairs)
        for j in reversed(range(NATURAL_SNAPSHOTS))
    ]
    source = (
        f"natural adoption: first use in the 90 days after each of {NATURAL_SNAPSHOTS} snapshot dates "
        f"{NATURAL_SNAPSHOT_STEP_DAYS} days apart, the latest {snapshots[-1].table.column('as_of')[0]} "
        "(no conversations yet)"
    )
    return LabelledRows(pa.concat_tables([s.table for s in snapshots]), source, {})


def _snapshots_of(frame: pd.DataFrame) -> pa.Table:
    keys = frame[["cardholder_id", "as_of"]].drop_duplicates()
    return pa.table(
        {
            "cardholder_id": keys["cardholder_id"].tolist(),
            "as_of": pa.array(keys["as_of"].tolist(), pa.date32()),
        }
    )


def _popularity(train_rows: pd.DataFrame) -> dict[str, float]:
    heard = train_rows[train_rows["outcome"].fillna("") != "not_discussed"]
    return {str(k): float(v) for k, v in heard.groupby("benefit_id")["adopted"].mean().items()}


def _score_with(model: PropensityModel) -> Callable[[PairMatrix], np.ndarray[Any, np.dtype[np.float64]]]:
    def score(matrix: PairMatrix) -> np.ndarray[Any, np.dtype[np.float64]]:
        return model.predict_proba(matrix.X)[:, 1] if len(matrix.X) else np.zeros(0)

    return score


def _bundle_parts(bundle: ModelBundle, benefits: BenefitTable) -> ScoringParts:
    return ScoringParts(
        extra=bundle.extra,
        holder=bundle.holder,
        estimator=bundle.estimator,
        benefit_codes=bundle.benefit_codes(benefits),
        score=_score_with(bundle.model),
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
class _Run:
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
        return _popularity(self.rows[self.split.train])


def _prepare_run(
    data: DataSource, data_dir: Path, catalog: Catalog, mcc_map: MccMap, options: TrainOptions
) -> _Run:
    latest = data.latest_date()
    if latest is None:
        raise DataError(f"{data_dir}: no dated rows at all; nothing to train or evaluate on")
    as_of = options.as_of or latest + timedelta(days=1)
    if options.as_of is not None and options.as_of > latest + timedelta(days=1):
        raise DataError(f"--as-of {as_of} is after the data, which ends on {latest}")
    labelled = _labelled_rows(data, as_of, catalog)
    rows = labelled.table.to_pandas()
    if rows.empty:
        raise DataError(
            f"{data_dir}: no presentations with a known label before {as_of}; nothing to learn from"
        )
    rows["as_of"] = pd.to_datetime(rows["as_of"])
    split = split_by_time(rows["as_of"].to_numpy(dtype="datetime64[D]"))
    return _Run(
        data, as_of, labelled, rows, split, catalog, BenefitTable.from_catalog(catalog), mcc_map, options
    )


def train_model(
    data_dir: Path, models_root: Path, options: TrainOptions, progress: Reporter = SILENT
) -> TrainResult:
    """Trains, evaluates and stores a model version from a data directory; promotes it when asked and better.

    `progress` is told each step, and gets bars for the long ones (SQL, fits, evaluation parts).
    Raises DataError for invalid data or no labels, ModelError when the model cannot be trained.
    """
    timer = _Timer(progress)
    started = t = time.perf_counter()
    progress.step("validate: the data contract")
    catalog, mcc_map, config = _load_inputs(data_dir, options)
    benefits = BenefitTable.from_catalog(catalog)
    t = timer.step("validate", t)
    with open_data(data_dir) as data:
        progress.step("features: each presentation's snapshot")
        extra = select_extra_columns(data.con, config)
        with progress.query(data.con, "labelled presentations SQL"):
            run = _prepare_run(data, data_dir, catalog, mcc_map, options)
        as_of, labelled, rows, split = run.as_of, run.labelled, run.rows, run.split
        snapshots = compute_snapshots(data, _snapshots_of(rows), mcc_map, extra, progress)
        t = timer.step("features", t, f"{snapshots.table.num_rows:,} snapshots")

        progress.step("spend estimator: a regression per category")
        names = feature_names(extra)
        holder = HolderEncoding.fit(snapshots.table, names, categorical_features(extra))
        estimator_snapshot = data.con.sql(snapshot_all_sql(split.valid_from)).to_arrow_table()
        estimator_rows = compute_snapshots(data, estimator_snapshot, mcc_map, extra, progress)
        estimator = SpendEstimator(extra_inputs=tuple(extra.taken)).fit(
            holder.encode(estimator_rows.table), names, holder.categorical, progress
        )
        fitted = f"{len(estimator.boosters_)} of {len(estimator.inputs_)} categories fitted"
        t = timer.step("spend estimator", t, f"{estimator_rows.table.num_rows:,} cardholders, {fitted}")

        progress.step("training set: candidate matrix")
        heard = (rows["outcome"].fillna("") != "not_discussed").to_numpy()
        benefit_encoder = CategoryEncoder.fit(
            BENEFIT_ENCODER, rows.loc[split.train & heard, "benefit_id"].tolist()
        )
        benefit_codes = np.array([benefit_encoder.code_of(b) for b in benefits.ids])
        matrix = build_pair_matrix(rows, snapshots, holder, estimator, benefits, benefit_codes)
        y = rows["adopted"].to_numpy(dtype=np.float64)
        train_mask, valid_mask = split.train & heard, split.valid & heard
        if y[train_mask].sum() == 0:
            raise DataError(
                "no positive labels in the training period: nobody adopted a benefit after a presentation"
            )
        t = timer.step(
            "training set", t, f"{int(train_mask.sum()):,} train, {int(valid_mask.sum()):,} valid rows"
        )

        progress.step("model fit: LightGBM")
        all_names = model_feature_names(names)
        model = PropensityModel(
            num_boost_round=options.num_boost_round, params={"seed": options.seed}, refit=options.refit
        )
        model.fit(
            matrix.X[train_mask],
            y[train_mask],
            all_names,
            model_categorical(holder.categorical),
            matrix.X[valid_mask],
            y[valid_mask],
            progress,
        )
        t = timer.step("model fit", t, _rounds(model, refitted=model.refit and bool(valid_mask.any())))

        progress.step("evaluation: held-out period")
        parts = ScoringParts(extra, holder, estimator, benefit_codes, _score_with(model))
        champion = _champion(models_root)
        evaluation = _evaluate(run, parts, matrix, snapshots, progress)
        if champion is not None and labelled.label_source.startswith("conversations"):
            progress.step(f"evaluation: the model in service ({champion.version})")
            champion_parts = _bundle_parts(champion, benefits)
            same = champion.extra == extra
            champion_snapshots = (
                snapshots
                if same
                else compute_snapshots(data, _snapshots_of(rows), mcc_map, champion.extra, progress)
            )
            test_rows = rows[split.test].reset_index(drop=True)
            champion_candidates = _candidates_for(
                test_rows, champion_snapshots, champion_parts, catalog, benefits
            )
            champion_scores = {"champion": champion_parts.score(champion_candidates)}
            evaluate_off_policy(
                evaluation,
                test_rows,
                champion_candidates,
                champion_scores,
                benefits,
                options.arbitration,
                progress,
            )
        t = timer.step("evaluation", t)

        # Drift (training/drift_job.py): the reference kept in the model folder for `nba drift` and the
        # service, and the calls of the last 30 days (labels not known yet) measured against it for the report.
        drift_reference = training_drift_reference(
            model, holder, matrix, rows, heard, data, as_of, mcc_map, extra, progress
        )
        drift_scorer = DriftScorer(extra, holder, estimator, model, lambda _: benefit_codes)
        drift_newest = newest_presentations_drift(
            data, catalog, drift_scorer, drift_reference, as_of, progress=progress
        )
        t = timer.step("drift", t)

    progress.step("model folder: report, plots, manifest")
    evaluation.metrics["best_iteration"] = float(model.best_iteration_)
    evaluation.metrics["early_stopping_iteration"] = float(model.early_stopping_iteration_)
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
        "valid_from": split.valid_from.isoformat(),
        "test_from": split.test_from.isoformat(),
        "first_presentation": rows["as_of"].min().date().isoformat(),
        "last_presentation": rows["as_of"].max().date().isoformat(),
    }
    files = bundle_files(model, estimator, holder, benefit_encoder)
    files.update(drift_files(drift_reference))
    report_files = write_report(evaluation, model, data_summary, extra, labelled, options, estimator)
    report_files["report.md"] += ("\n" + render_section(drift_newest)).encode()
    files.update(report_files)
    params: dict[str, Any] = {
        "num_boost_round": options.num_boost_round,
        "seed": options.seed,
        "gamma": options.arbitration.gamma,
        "top_k": options.arbitration.top_k,
        "calibration": model.calibrator_.kind,
        "refit": model.refit,
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
        categorical_features=list(model_categorical(holder.categorical)),
        extra={"extra_columns": extra.model_dump(), "holder_features": list(names)},
    )
    load_bundle(model_dir)  # what was written must load: checksums, feature lists, artifacts
    timer.step("model folder", t)
    version = model_dir.name
    promoted, reason = False, "not asked to promote (--promote)"
    if options.promote:
        champion_ope = evaluation.off_policy.get("champion")
        decision = decide_promotion(
            challenger=load_bundle(model_dir).manifest,
            champion=champion.manifest if champion is not None else None,
            challenger_on_same_data=evaluation.metrics.get("expected_adoptions_top3")
            if champion_ope
            else None,
            champion_on_same_data=champion_ope.ips if champion_ope else None,
        )
        promoted, reason = decision.promote, decision.reason
        if promoted:
            set_current(models_root, version)
    timer.timings["total"] = round(time.perf_counter() - started, 3)
    counts = {
        "rows": len(rows),
        "train": int(train_mask.sum()),
        "valid": int(valid_mask.sum()),
        "test": int(split.test.sum()),
    }
    return TrainResult(model_dir, version, evaluation, promoted, reason, timer.timings, counts)


def _rounds(model: PropensityModel, refitted: bool) -> str:
    """The fit's rounds as its line says them: how many early stopping chose, then the refit's."""
    chosen = (
        f"early stopping chose {model.early_stopping_iteration_:,} of up to {model.num_boost_round:,} rounds"
    )
    return f"{chosen}, refit {model.best_iteration_:,}" if refitted else chosen


def _evaluate(
    run: _Run, parts: ScoringParts, matrix: PairMatrix, snapshots: HolderSnapshots, progress: Reporter
) -> Evaluation:
    """Held-out metrics, off-policy estimates beside baselines, and the oracle comparison when given."""
    evaluation = Evaluation()
    split, options, benefits = run.split, run.options, run.benefits
    off_policy = run.labelled.label_source.startswith("conversations")
    n_parts = 1 + int(off_policy) + int(options.oracle is not None)  # logged metrics, off-policy, oracle
    with progress.track("parts", n_parts) as done:
        test_rows = run.rows[split.test].reset_index(drop=True)
        test_matrix = _subset(matrix, split.test)
        evaluate_logged(evaluation, test_rows, test_matrix, parts.score(test_matrix))
        done.advance()
        if off_policy:
            candidates = _candidates_for(test_rows, snapshots, parts, run.catalog, benefits)
            policies = {
                "model": parts.score(candidates),
                **baseline_scores(candidates, run.popularity, options.seed),
            }
            evaluate_off_policy(
                evaluation, test_rows, candidates, policies, benefits, options.arbitration, progress
            )
            done.advance()
        else:
            evaluation.notes.append(
                f"no conversations to evaluate off-policy on; labels are {run.labelled.label_source}"
            )
        if options.oracle is not None:
            evaluate_oracle(
                evaluation,
                run.data,
                pd.Timestamp(run.as_of),
                read_oracle(options.oracle),
                parts,
                run.mcc_map,
                run.catalog,
                benefits,
                run.popularity,
                options.arbitration,
                options.seed,
                progress,
            )
            done.advance()
    return evaluation


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
    catalog, mcc_map, _ = _load_inputs(data_dir, options)
    bundle.check_catalog(catalog)
    benefits = BenefitTable.from_catalog(catalog)
    parts = _bundle_parts(bundle, benefits)
    t = timer.step("validate", t)
    with open_data(data_dir) as data:
        progress.step("features: each presentation's snapshot")
        with progress.query(data.con, "labelled presentations SQL"):
            run = _prepare_run(data, data_dir, catalog, mcc_map, options)
        snapshots = compute_snapshots(data, _snapshots_of(run.rows), mcc_map, bundle.extra, progress)
        t = timer.step("features", t, f"{snapshots.table.num_rows:,} snapshots")
        progress.step("evaluation: held-out period")
        matrix = build_pair_matrix(
            run.rows, snapshots, parts.holder, parts.estimator, benefits, parts.benefit_codes
        )
        evaluation = _evaluate(run, parts, matrix, snapshots, progress)
        timer.step("evaluation", t)
    return evaluation


def _subset(matrix: PairMatrix, mask: np.ndarray[Any, np.dtype[np.bool_]]) -> PairMatrix:
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
