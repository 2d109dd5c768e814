"""Pairs: (cardholder, date, benefit, call context) rows → model input through the serving feature code."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from nba.contract import DataSource, MccMap
from nba.features import (
    HISTORY_COLUMNS,
    BenefitTable,
    ExtraColumns,
    HolderColumns,
    SqlEngine,
    build_benefit_history,
    build_candidate_matrix,
    build_cardholder_features,
    call_reason_code,
    register_snapshots,
)
from nba.model import HolderEncoding, SpendEstimator
from nba.progress import NO_PROGRESS, ProgressHook
from nba.vocab import SPEND_CATEGORIES

FloatArray = npt.NDArray[np.float64]

_SNAPSHOTS = "nba_pair_snapshots"


@dataclass
class EngineData(DataSource):
    """A data directory opened in DuckDB whose feature SQL runs on another engine (`--engine spark`):
    `compute_snapshots` sends the features and the benefit history to `feature_sql`, the rest of a job
    (labels, presentations) reads `con` as before."""

    feature_sql: SqlEngine | None = None


def with_feature_sql(data: DataSource, engine: SqlEngine | None) -> DataSource:
    """`data` whose feature SQL runs on `engine` (None: on DuckDB, `data` itself)."""
    return data if engine is None else EngineData(data.data_dir, data.con, data.files, feature_sql=engine)


@dataclass(frozen=True)
class HolderSnapshots:
    """Cardholder features for a set of (cardholder_id, as_of) snapshots, and each one's history."""

    table: pa.Table
    keys: pd.DataFrame  # cardholder_id, as_of, holder_row
    history: pd.DataFrame  # cardholder_id, as_of, benefit_id, used, HISTORY_COLUMNS


def compute_snapshots(
    data: DataSource,
    snapshots: pa.Table,
    mcc_map: MccMap,
    extra: ExtraColumns,
    progress: ProgressHook = NO_PROGRESS,
) -> HolderSnapshots:
    """Features and benefit history as of each snapshot's date (data strictly before it).

    `progress` watches the two SQL statements. With `data` an `EngineData` they run on its `feature_sql`
    (Spark), in its dialect, with the same results.
    """
    engine = data.feature_sql if isinstance(data, EngineData) else None

    def watch(description: str) -> contextlib.AbstractContextManager[None]:
        return progress.query(data.con, description) if engine is None else contextlib.nullcontext()

    target: duckdb.DuckDBPyConnection | SqlEngine = data.con if engine is None else engine
    sql = register_snapshots(target, snapshots, _SNAPSHOTS)
    try:
        with watch(f"features SQL, {snapshots.num_rows:,} snapshots"):
            table = build_cardholder_features(target, sql, mcc_map, extra)
        with watch("benefit history SQL"):
            history = build_benefit_history(target, sql).to_pandas()
    finally:
        if engine is None:
            data.con.unregister(_SNAPSHOTS)
        else:
            engine.unregister(_SNAPSHOTS)
    keys = pd.DataFrame(
        {
            "cardholder_id": table.column("cardholder_id").to_pylist(),
            "as_of": pd.to_datetime(table.column("as_of").to_pandas()),
            "holder_row": np.arange(table.num_rows),
        }
    )
    history["as_of"] = pd.to_datetime(history["as_of"])
    return HolderSnapshots(table, keys, history)


@dataclass(frozen=True, eq=False)
class PairMatrix:
    """Model rows for pairs, with what evaluation and arbitration need beside them."""

    X: FloatArray
    value_usd: FloatArray
    benefit_index: npt.NDArray[np.int64]
    categories: npt.NDArray[np.bool_]
    frame: pd.DataFrame  # the pairs, in the order of X, with holder_row, used, product_id


def build_pair_matrix(
    pairs: pd.DataFrame,
    snapshots: HolderSnapshots,
    holder: HolderEncoding,
    estimator: SpendEstimator,
    benefits: BenefitTable,
    benefit_codes: FloatArray,
) -> PairMatrix:
    """Model rows for `pairs` (cardholder_id, as_of, benefit_id, call_reason, rank): the same matrix code
    as serving, fed with each pair's own snapshot."""
    frame = pairs.copy()
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame = frame.merge(snapshots.keys, on=["cardholder_id", "as_of"], how="left", validate="many_to_one")
    if frame["holder_row"].isna().any():
        missing = frame.loc[frame["holder_row"].isna(), "cardholder_id"].iloc[0]
        raise ValueError(
            f"no feature snapshot for cardholder {missing!r} (card opened on or after the date?)"
        )
    frame = frame.merge(
        snapshots.history, on=["cardholder_id", "as_of", "benefit_id"], how="left", validate="many_to_one"
    )
    frame["used"] = frame["used"].fillna(False).astype(bool)
    for column in HISTORY_COLUMNS:
        if column == "days_since_last_presented":
            frame[column] = frame[column].astype("float64")
        else:
            frame[column] = frame[column].fillna(0).astype("float64")
    holder_X = holder.encode(snapshots.table)
    est_spend = estimator.predict(holder_X, holder.feature_names)
    reference = np.array([estimator.reference_usd_[c] for c in SPEND_CATEGORIES])
    position = {benefit_id: i for i, benefit_id in enumerate(benefits.ids)}
    benefit_index = np.asarray(frame["benefit_id"].map(position).to_numpy(), dtype=np.int64)
    product_ids = np.asarray(snapshots.table.column("product_id").to_pylist(), dtype=object)
    holder_row = frame["holder_row"].to_numpy(dtype=np.int64)
    product_position = {p: i for i, p in enumerate(benefits.product_ids)}
    product_index = np.array([product_position[p] for p in product_ids[holder_row]], dtype=np.int64)
    frame["product_id"] = product_ids[holder_row]
    reasons = frame["call_reason"].where(frame["call_reason"].notna(), None)
    X, value = build_candidate_matrix(
        holder_X=holder_X,
        holder_columns=HolderColumns.from_names(holder.feature_names),
        est_spend_by_category=est_spend,
        reference_spend_by_category=reference,
        pair_holder=holder_row,
        pair_benefit=benefit_index,
        pair_base_earn_rate=benefits.product_base_rate[product_index],
        pair_history=frame[list(HISTORY_COLUMNS)].to_numpy(dtype=np.float64),
        pair_call_reason=np.array([call_reason_code(r) for r in reasons], dtype=np.float64),
        pair_rank=frame["rank"].to_numpy(dtype=np.float64, na_value=np.nan),
        benefits=benefits,
        benefit_codes=benefit_codes,
    )
    return PairMatrix(X, value, benefit_index, benefits.category_mask[benefit_index] > 0, frame)
