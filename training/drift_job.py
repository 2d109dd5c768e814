"""Drift job: a model folder + a data directory (and a profile snapshot) → what has shifted since training.

Two halves: `training_drift_reference` and `newest_presentations_drift`, which the training job calls to
keep the reference in the model folder (`drift.json`) and to report the calls since its last labelled
ones; and `run_drift` (`nba drift`), which measures a data directory's newest month and a served
snapshot against a stored model's reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
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
from nba.drift import (
    CalibrationBeside,
    DriftReference,
    DriftSection,
    FeatureShift,
    RelationShift,
    ScoreShift,
    build_drift_reference,
    feature_shifts,
    load_drift_reference,
    profile_shifts,
    rates_beside,
    relation_shifts,
    render_section,
    score_shift,
)
from nba.errors import DataError, ModelError, check_param
from nba.features import BenefitTable, ExtraColumns, snapshot_all_sql
from nba.model import (
    HolderEncoding,
    ModelBundle,
    PropensityModel,
    SpendEstimator,
    load_bundle,
    model_categorical,
    model_feature_names,
)
from nba.profiles import profiles_from_snapshot, resolve_snapshot
from nba.vocab import DRIFT_REFERENCE_DAYS, UNHEARD_OUTCOMES
from training.pairs import PairMatrix, build_pair_matrix, compute_snapshots
from training.presentations import LABEL_WINDOW_DAYS, load_presentations
from training.progress import SILENT, Reporter

FloatArray = npt.NDArray[np.float64]
DEFAULT_WINDOW_DAYS: Final = 30


# --- the reference, kept at training time -------------------------------------------------------------------


def training_drift_reference(
    model: PropensityModel,
    holder: HolderEncoding,
    matrix: PairMatrix,
    rows: pd.DataFrame,
    fitted: npt.NDArray[np.bool_],
    data: DataSource,
    as_of: date,
    mcc_map: MccMap,
    extra: ExtraColumns,
    progress: Reporter = SILENT,
    scored_by: tuple[PropensityModel, PairMatrix] | None = None,
    population: FloatArray | None = None,
) -> DriftReference:
    """The drift reference of a training run (`drift_files` makes it the model folder's `drift.json`): the
    latest rows the model was fitted on, and every cardholder as of the training as-of (what a profile
    snapshot built later is compared with).

    `matrix` holds the model's input for `rows` (presentations, in the same order) and `fitted` marks the
    rows the model learnt from; the reference keeps their latest DRIFT_REFERENCE_DAYS days. Cardholder
    features count once per snapshot (a call's presentations share them), the pair features once per row.
    """
    # Scores as a model gives them to calls it has not learnt from: a model's scores of its own training
    # rows are more spread than tomorrow's (`scored_by`: the held-out fit, which had not seen the latest).
    score_model, score_matrix = scored_by if scored_by is not None else (model, matrix)
    presented = pd.to_datetime(rows["as_of"])
    recent = (
        fitted & (presented > presented[fitted].max() - pd.Timedelta(days=DRIFT_REFERENCE_DAYS)).to_numpy()
    )
    used = rows[recent]
    if population is None:  # `population`: every cardholder's features at the as-of, already encoded
        progress.step("drift reference: every cardholder's features at the as-of")
        table = data.con.sql(snapshot_all_sql(as_of)).to_arrow_table()
        population = holder.encode(compute_snapshots(data, table, mcc_map, extra, progress).table)
    encoded = population
    reference = build_drift_reference(
        features=model_columns(holder, matrix.X[recent], used),
        categorical=set(model_categorical(holder.categorical)),
        presented_on=[d.date() for d in pd.to_datetime(used["as_of"])],
        benefit_id=used["benefit_id"].astype(str).tolist(),
        outcome=used["outcome"].where(used["outcome"].notna(), None).tolist(),
        adopted=used["adopted"].to_numpy(dtype=np.float64),
        scores=score_model.predict_proba(score_matrix.X[recent])[:, 1] if recent.any() else np.zeros(0),
        population=(as_of, {name: encoded[:, j] for j, name in enumerate(holder.feature_names)}),
    )
    return reference


def model_columns(holder: HolderEncoding, X: FloatArray, rows: pd.DataFrame) -> dict[str, FloatArray]:
    """The model's input columns by name: cardholder features once per (cardholder, as_of), pair features
    once per row, so a call's two or three presentations do not count one cardholder thrice."""
    first = ~rows.duplicated(["cardholder_id", "as_of"]).to_numpy()
    n_holder = len(holder.feature_names)
    names = model_feature_names(holder.feature_names)
    return {name: X[first, j] if j < n_holder else X[:, j] for j, name in enumerate(names)}


@dataclass(frozen=True, eq=False)
class DriftScorer:
    """What measuring presentations needs of a model: its feature code and its scores (a loaded bundle's,
    or a training run's before its folder exists)."""

    extra: ExtraColumns
    holder: HolderEncoding
    estimator: SpendEstimator
    model: PropensityModel
    benefit_codes: Callable[[BenefitTable], FloatArray]

    @classmethod
    def of(cls, bundle: ModelBundle) -> DriftScorer:
        return cls(bundle.extra, bundle.holder, bundle.estimator, bundle.model, bundle.benefit_codes)


# --- nba drift ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftResult:
    """What `nba drift` found: one section per comparison."""

    model_version: str
    as_of: date
    sections: tuple[DriftSection, ...]

    def render(self, top: int = 15) -> str:
        head = f"# Drift of model {self.model_version} (data as of {self.as_of})\n\n"
        return head + "\n".join(render_section(s, top) for s in self.sections)


def _reference_of(bundle: ModelBundle) -> DriftReference:
    reference = load_drift_reference(bundle.path, bundle.manifest)
    if reference is None:
        raise ModelError(
            f"{bundle.path}: the model folder keeps no drift reference (drift.json); it was trained before "
            "model folders kept one: retrain it to measure drift"
        )
    return reference


def _snapshot_keys(frame: pd.DataFrame) -> pa.Table:
    keys = frame[["cardholder_id", "as_of"]].drop_duplicates()
    return pa.table(
        {
            "cardholder_id": keys["cardholder_id"].astype(str).tolist(),
            "as_of": pa.array([d.date() for d in pd.to_datetime(keys["as_of"])], pa.date32()),
        }
    )


def _counts_by_benefit(frame: pd.DataFrame, hit: pd.Series) -> dict[str, tuple[int, int]]:
    grouped = pd.DataFrame({"benefit_id": frame["benefit_id"].astype(str), "hit": hit.astype(int)})
    totals = grouped.groupby("benefit_id")["hit"].agg(["size", "sum"])
    return {str(b): (int(r["size"]), int(r["sum"])) for b, r in totals.iterrows()}


def _p_adopt_of(data: DataSource) -> pd.DataFrame | None:
    """The model's p_adopt per logged presentation, where the conversations table has that column."""
    columns = {row[0] for row in data.con.sql("DESCRIBE conversations").fetchall()}
    if "p_adopt" not in columns:
        return None
    frame: pd.DataFrame = data.con.sql(
        "SELECT call_id, benefit_id, CAST(p_adopt AS DOUBLE) AS p_adopt FROM conversations "
        "WHERE p_adopt IS NOT NULL"
    ).to_df()
    return frame


def _calibration(labelled: pd.DataFrame, p_adopt: pd.DataFrame) -> tuple[CalibrationBeside, ...]:
    served = labelled.merge(p_adopt, on=["call_id", "benefit_id"], how="inner")
    records = []
    for benefit_id, group in served.groupby("benefit_id"):
        records.append(
            CalibrationBeside(
                str(benefit_id), len(group), float(group["adopted"].mean()), float(group["p_adopt"].mean())
            )
        )
    return tuple(records)


def newest_presentations_drift(
    data: DataSource,
    catalog: Catalog,
    scorer: DriftScorer,
    reference: DriftReference,
    as_of: date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    progress: Reporter = SILENT,
    mcc_map: MccMap | None = None,
) -> DriftSection:
    """The training window against the data's newest `window_days` days of presentations before `as_of`:
    PSI per feature, scores, acceptance and 30-day adoption per benefit, and observed adoption beside
    p_adopt where the conversations carry it. `mcc_map`: the run's (else the data directory's)."""
    benefits = BenefitTable.from_catalog(catalog)
    if mcc_map is None:
        override = data.data_dir / MCC_OVERRIDE_FILE
        mcc_map = load_mcc_map(override if override.exists() else None)
    # Labels as known by as_of: complete for presentations more than 30 days old, partial after.
    rows = load_presentations(data, as_of + timedelta(days=LABEL_WINDOW_DAYS)).table.to_pandas()
    rows["as_of"] = pd.to_datetime(rows["as_of"])
    heard = rows[~rows["outcome"].isin(UNHEARD_OUTCOMES)]
    newest_from = pd.Timestamp(as_of - timedelta(days=window_days))
    labelled_to = pd.Timestamp(as_of - timedelta(days=LABEL_WINDOW_DAYS))
    labelled_from = labelled_to - pd.Timedelta(days=window_days)
    newest = heard[heard["as_of"] >= newest_from].reset_index(drop=True)
    labelled = heard[(heard["as_of"] >= labelled_from) & (heard["as_of"] < labelled_to)]
    title = (
        f"Training window ({reference.first_presentation} to {reference.last_presentation}) vs the newest "
        f"{window_days} days ({newest_from.date()} to {as_of - timedelta(days=1)})"
    )
    notes: list[str] = []
    features: tuple[FeatureShift, ...] = ()
    scores: ScoreShift | None = None
    if newest.empty:
        notes.append(
            f"no presentations discussed in the newest {window_days} days: no features or scores to compare"
        )
    else:
        progress.step("drift: features of the newest presentations")
        snapshots = compute_snapshots(data, _snapshot_keys(newest), mcc_map, scorer.extra, progress)
        matrix = build_pair_matrix(
            newest, snapshots, scorer.holder, scorer.estimator, benefits, scorer.benefit_codes(benefits)
        )
        features = feature_shifts(reference.features, model_columns(scorer.holder, matrix.X, newest))
        scores = score_shift(reference, scorer.model.predict_proba(matrix.X)[:, 1])
    p_adopt = _p_adopt_of(data)
    calibration: tuple[CalibrationBeside, ...] = ()
    if p_adopt is not None and not p_adopt.empty:
        complete = heard[heard["as_of"] < labelled_to]
        calibration = _calibration(complete, p_adopt)
        if not calibration:
            notes.append("presentations with p_adopt have no complete 30-day labels yet")
    return DriftSection(
        title=title,
        reference_rows=reference.rows,
        current_rows=len(newest),
        features=features,
        acceptance=rates_beside(
            reference.benefits, _counts_by_benefit(newest, newest["outcome"] == "accepted"), "accepted"
        ),
        adoption=rates_beside(
            reference.benefits, _counts_by_benefit(labelled, labelled["adopted"] > 0), "adopted"
        ),
        adoption_window=(
            f" (now: presentations {labelled_from.date()} to {(labelled_to - pd.Timedelta(days=1)).date()}, "
            "the newest whose 30 days are complete)"
        ),
        scores=scores,
        calibration=calibration,
        notes=tuple(notes),
    )


def relation_drift(
    data: DataSource,
    catalog: Catalog,
    scorer: DriftScorer,
    then: tuple[date, date],
    now: tuple[date, date],
    *,
    as_of: date,
    repeats: int = 3,
    seed: int = 0,
    progress: Reporter = SILENT,
) -> tuple[RelationShift, ...]:
    """Features whose relation to the outcome changed between two windows of labelled presentations
    ([from, to) each, labels complete by `as_of`): a fitted model's permutation importance on each (see
    nba.drift._relation). A backtest calls it with the model fitted before a month, then = its training
    window's end, now = the month. Raises DataError when a window has no adopters or no non-adopters.
    """
    benefits = BenefitTable.from_catalog(catalog)
    override = data.data_dir / MCC_OVERRIDE_FILE
    mcc_map = load_mcc_map(override if override.exists() else None)
    rows = load_presentations(data, as_of).table.to_pandas()
    rows["as_of"] = pd.to_datetime(rows["as_of"])
    heard = rows[~rows["outcome"].isin(UNHEARD_OUTCOMES)]
    sides = []
    for start, end in (then, now):
        window = heard[(heard["as_of"] >= pd.Timestamp(start)) & (heard["as_of"] < pd.Timestamp(end))]
        window = window.reset_index(drop=True)
        if window.empty:
            raise DataError(
                f"no labelled presentations from {start} to {end}; nothing to measure relations on"
            )
        progress.step(f"relations: presentations from {start} to {end}")
        snapshots = compute_snapshots(data, _snapshot_keys(window), mcc_map, scorer.extra, progress)
        matrix = build_pair_matrix(
            window, snapshots, scorer.holder, scorer.estimator, benefits, scorer.benefit_codes(benefits)
        )
        sides.append((matrix.X, window["adopted"].to_numpy(dtype=np.float64)))
    (X_then, y_then), (X_now, y_now) = sides
    names = model_feature_names(scorer.holder.feature_names)

    def score(X: FloatArray) -> FloatArray:
        scores: FloatArray = scorer.model.predict_proba(X)[:, 1]
        return scores

    return relation_shifts(score, X_then, y_then, X_now, y_now, names, repeats=repeats, seed=seed)


def _profiles_section(
    bundle: ModelBundle, reference: DriftReference, profiles_path: Path, catalog_path: Path
) -> tuple[DriftSection, date]:
    folder = resolve_snapshot(profiles_path)
    benefits = BenefitTable.from_catalog(load_catalog(catalog_path))
    profiles = profiles_from_snapshot(folder, bundle, benefits)
    if len(profiles) == 0:
        raise DataError(f"{folder}: the snapshot holds no cardholders; nothing to compare")
    against = (
        f"every cardholder as of {reference.population.as_of}"
        if reference.population is not None
        else "the training presentations"
    )
    rows = reference.population.rows if reference.population is not None else reference.rows
    section = DriftSection(
        title=f"Training data ({against}) vs the profile snapshot as of {profiles.as_of}",
        reference_rows=rows,
        current_rows=len(profiles),
        features=profile_shifts(reference, profiles, bundle.holder.feature_names),
        notes=("a snapshot has no outcomes or scores: cardholder features only",),
    )
    return section, profiles.as_of


def run_drift(
    model_dir: Path,
    data_dir: Path | None,
    profiles: Path | None = None,
    as_of: date | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    catalog_path: Path | None = None,
    progress: Reporter = SILENT,
) -> DriftResult:
    """Measures drift of a data directory's newest `window_days` days (and of a profile snapshot) against
    the model's training data, as kept in its folder.

    Raises ModelError for a model folder without a drift reference, DataError (or ValidationError) for
    invalid data or an as-of after the data, NotFoundError for a missing snapshot.
    """
    check_param("window_days", window_days, 1 <= window_days <= 366, "an int in [1, 366]", DataError)
    if data_dir is None and profiles is None:
        raise DataError("give a data directory (--data), a profile snapshot (--profiles) or both")
    progress.step("drift: the model's reference")
    bundle = load_bundle(model_dir)
    reference = _reference_of(bundle)
    sections: list[DriftSection] = []
    measured_as_of = as_of
    if data_dir is not None:
        progress.step("validate: the data contract")
        validate_data(data_dir, as_of=as_of, catalog_path=catalog_path).raise_for_problems()
        with open_data(data_dir) as data:
            measured_as_of = data.resolve_as_of(as_of)
            catalog = load_catalog(catalog_path or catalog_for(data_dir))
            sections.append(
                newest_presentations_drift(
                    data, catalog, DriftScorer.of(bundle), reference, measured_as_of, window_days, progress
                )
            )
    if profiles is not None:
        progress.step("drift: the profile snapshot")
        catalog_file = catalog_path or (
            catalog_for(data_dir) if data_dir is not None else DEFAULT_CATALOG_PATH
        )
        section, snapshot_as_of = _profiles_section(bundle, reference, profiles, catalog_file)
        sections.append(section)
        measured_as_of = measured_as_of or snapshot_as_of
    assert measured_as_of is not None
    return DriftResult(bundle.version, measured_as_of, tuple(sections))
