"""A training run's shared pieces: options, the labelled rows and their split, scoring and evaluation on
rows → what `nba train`, `nba evaluate` and both backtests build on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from nba.contract import (
    DEFAULT_CATALOG_PATH,
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
from nba.errors import DataError, ModelError
from nba.features import BenefitTable, FeatureConfig, load_feature_config
from nba.model import DetractorModel, ModelBundle, PropensityModel, UpliftModel
from nba.vocab import DEFAULT_OBJECTIVE, UNHEARD_OUTCOMES
from training.cli_options import TRAIN_BACKTEST_MONTHS
from training.evaluate import (
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
from training.pairs import HolderSnapshots, PairMatrix, build_pair_matrix
from training.presentations import (
    LABEL_WINDOW_DAYS,
    LabelledRows,
    TimeSplit,
    load_natural_adoption,
    load_presentations,
    split_rows,
)
from training.progress import Reporter

if TYPE_CHECKING:
    from nba.features import SqlEngine
    from training.spark_data import SparkData


@dataclass(frozen=True)
class TrainOptions:
    """What `nba train` takes besides the data directory and the models folder."""

    as_of: date | None = None
    feature_config: Path | None = None
    catalog_path: Path | None = None
    oracle: Path | None = None
    # The generator's call truth (`generate_world(..., call_truth=True)`): each policy's true adoptions per
    # logged held-out call, beside its IPS and DR estimates.
    call_truth: Path | None = None
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
    # `--engine spark`: the data path opened in Spark, which reads every table (the feature SQL runs there,
    # the other tables come back for DuckDB: training/spark_labels.py); None: DuckDB reads `data_dir`.
    spark: SparkData | None = None
    # What the model ranks by (nba.vocab.OBJECTIVES): `uplift` adds a DR-learner beside the adoption model.
    objective: str = DEFAULT_OBJECTIVE

    @property
    def feature_sql(self) -> SqlEngine | None:
        """Where the feature SQL runs: Spark with `--engine spark`, else None (DuckDB)."""
        return self.spark.sql if self.spark is not None else None


def open_training_data(data_dir: Path, options: TrainOptions) -> DataSource:
    """The data a training run reads: `data_dir` in DuckDB, or with `options.spark` its tables read through
    Spark (the feature SQL on Spark, the rest held in DuckDB: `open_spark_labels`)."""
    if options.spark is None:
        return open_data(data_dir)
    from training.spark_labels import open_spark_labels

    return open_spark_labels(options.spark)


def load_inputs(data_dir: Path, options: TrainOptions) -> tuple[Catalog, MccMap, FeatureConfig]:
    """The validated data directory's catalog, MCC map and features config; ValidationError on bad data.

    With `options.spark` the data is validated on Spark and the catalog and MCC map are read through
    Spark's file system (`--catalog`, a local file, wins over the data's own catalog.yaml).
    """
    if options.spark is not None:
        return _load_inputs_on_spark(options.spark, options)
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


def _load_inputs_on_spark(spark: SparkData, options: TrainOptions) -> tuple[Catalog, MccMap, FeatureConfig]:
    from training.spark_data import CATALOG_FILE
    from training.spark_validate import validate_on_spark

    validate_on_spark(spark.spark, spark.uri, options.as_of, options.catalog_path).raise_for_problems()
    with spark.side_file(CATALOG_FILE) as own:
        catalog = load_catalog(options.catalog_path or own or DEFAULT_CATALOG_PATH)
    mcc_map = spark.mcc_map()
    config = load_feature_config(options.feature_config) if options.feature_config else FeatureConfig()
    return catalog, mcc_map, config


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
    heard = train_rows[~train_rows["outcome"].isin(UNHEARD_OUTCOMES)]
    return {str(k): float(v) for k, v in heard.groupby("benefit_id")["adopted"].mean().items()}


def score_with(model: PropensityModel) -> Callable[[PairMatrix], np.ndarray[Any, np.dtype[np.float64]]]:
    """The scorer of ScoringParts for a fitted model: a pair matrix → p_adopt per row."""

    def score(matrix: PairMatrix) -> np.ndarray[Any, np.dtype[np.float64]]:
        return model.predict_proba(matrix.X)[:, 1] if len(matrix.X) else np.zeros(0)

    return score


def bundle_parts(bundle: ModelBundle, benefits: BenefitTable, detractor_weight: float = 0.0) -> ScoringParts:
    """What scoring with a stored model needs: its extra columns, encoders, estimator and benefit codes; with a
    `detractor_weight` above 0, its detractor model for the NPS term (ModelError when it has none)."""
    detractor = None
    if detractor_weight > 0.0:
        if bundle.detractor is None:
            raise ModelError(
                f"--detractor-weight {detractor_weight:g} needs a detractor model, and model {bundle.version} has "
                "none (its training data had too few NPS answers; its report says why)"
            )
        detractor = detractor_of(bundle.detractor)
    return ScoringParts(
        extra=bundle.extra,
        holder=bundle.holder,
        estimator=bundle.estimator,
        benefit_codes=bundle.benefit_codes(benefits),
        score=score_with(bundle.model),
        rank=uplift_of(bundle.uplift) if bundle.uplift is not None else None,
        detractor=detractor,
        detractor_weight=detractor_weight,
    )


def detractor_of(model: DetractorModel) -> Callable[[PairMatrix], np.ndarray[Any, np.dtype[np.float64]]]:
    """The detractor scorer of ScoringParts: a pair matrix → the detractor chance each pitch adds to its call."""

    def score(matrix: PairMatrix) -> np.ndarray[Any, np.dtype[np.float64]]:
        return model.added_detractors(matrix.X)

    return score


def uplift_of(model: UpliftModel) -> Callable[[PairMatrix], np.ndarray[Any, np.dtype[np.float64]]]:
    """The ranking of ScoringParts for an uplift model: a pair matrix → estimated uplift per row."""

    def rank(matrix: PairMatrix) -> np.ndarray[Any, np.dtype[np.float64]]:
        return model.predict(matrix.X) if len(matrix.X) else np.zeros(0)

    return rank


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
                "model": parts.ranking(candidates),
                **baseline_scores(candidates, popularity, options.seed),
            }
            evaluate_off_policy(
                evaluation,
                test_rows,
                candidates,
                policies,
                benefits,
                options.arbitration,
                progress,
                # DR's outcome model is the chance of adoption, whatever the model ranks by.
                outcome_model=parts.score(candidates),
                call_truth=None if options.call_truth is None else pd.read_parquet(options.call_truth),
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


def matrix_rows(matrix: PairMatrix, mask: np.ndarray[Any, np.dtype[np.bool_]]) -> PairMatrix:
    """The rows of `matrix` where `mask` holds, every part of it."""
    return PairMatrix(
        matrix.X[mask],
        matrix.value_usd[mask],
        matrix.benefit_index[mask],
        matrix.categories[mask],
        matrix.frame[mask].reset_index(drop=True),
    )
