"""Pairs: (cardholder, date, benefit, call context) rows → model input through the serving feature code."""

from __future__ import annotations

from dataclasses import dataclass

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

    `progress` watches the two SQL statements.
    """
    sql = register_snapshots(data.con, snapshots, _SNAPSHOTS)
    try:
        with progress.query(data.con, f"features SQL, {snapshots.num_rows:,} snapshots"):
            table = build_cardholder_features(data.con, sql, mcc_map, extra)
        with progress.query(data.con, "benefit history SQL"):
            history = build_benefit_history(data.con, sql).to_pandas()
    finally:
        data.con.unregister(_SNAPSHOTS)
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
