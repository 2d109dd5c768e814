"""Profiles: a data directory as of a date + a model bundle → every cardholder's features in compact arrays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from nba.bundle import ModelBundle
from nba.errors import ModelError
from nba.features import build_benefit_history, build_cardholder_features, snapshot_all_sql
from nba.matrix import HISTORY_COLUMNS, BenefitTable
from nba.mcc import MccMap
from nba.tables import DataSource

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Per (cardholder, benefit): what the contact policy needs beside the model's history columns.
_CONTACT_SQL: Final = """
SELECT c.cardholder_id, c.benefit_id,
       min(s.as_of - CAST(c.presented_at AS DATE)) FILTER (WHERE c.outcome = 'declined') AS days_since_declined,
       count(*) FILTER (WHERE s.as_of - CAST(c.presented_at AS DATE) <= 90) AS presented_90d
FROM conversations AS c
JOIN ({snapshots}) AS s ON s.cardholder_id = c.cardholder_id AND CAST(c.presented_at AS DATE) < s.as_of
WHERE c.outcome <> 'not_discussed'
GROUP BY c.cardholder_id, c.benefit_id
"""


@dataclass(frozen=True, eq=False)
class Profiles:
    """Every cardholder's model-ready features as of one date, held in numpy arrays.

    `holder_X` holds the model's cardholder columns (float32 to halve memory; widened per request),
    `est_spend` the spend estimator's yearly spend per category, and the per-benefit history is a
    sparse CSR-like layout: the rows of cardholder i are `history_*[offsets[i]:offsets[i + 1]]`.
    """

    as_of: date
    model_version: str
    ids: tuple[str, ...]
    index: dict[str, int]
    holder_X: npt.NDArray[np.float32]
    est_spend: npt.NDArray[np.float32]
    product_index: npt.NDArray[np.int16]
    offsets: IntArray
    history_benefit: npt.NDArray[np.int16]
    history_used: npt.NDArray[np.bool_]
    history_values: npt.NDArray[np.float32]  # HISTORY_COLUMNS
    history_days_since_declined: npt.NDArray[np.float32]
    history_presented_90d: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        arrays = (
            self.holder_X,
            self.est_spend,
            self.product_index,
            self.offsets,
            self.history_benefit,
            self.history_used,
            self.history_values,
            self.history_days_since_declined,
            self.history_presented_90d,
        )
        return sum(a.nbytes for a in arrays)


def build_profiles(
    data: DataSource, as_of: date, bundle: ModelBundle, mcc_map: MccMap, benefits: BenefitTable
) -> Profiles:
    """Computes every cardholder's profile as of `as_of` with the model's own feature code and encoders.

    Raises ModelError when a cardholder's product is not in the catalog the model serves.
    """
    snapshots = snapshot_all_sql(as_of)
    table = build_cardholder_features(data.con, snapshots, mcc_map, bundle.extra)
    history = build_benefit_history(data.con, snapshots)
    contact = data.con.sql(_CONTACT_SQL.format(snapshots=snapshots)).to_arrow_table()
    return assemble_profiles(as_of, table, history, contact, bundle, benefits)


def assemble_profiles(
    as_of: date,
    table: pa.Table,
    history: pa.Table,
    contact: pa.Table,
    bundle: ModelBundle,
    benefits: BenefitTable,
) -> Profiles:
    """Profiles from the three tables `build_profiles` computes (feature rows, benefit history, contact)."""
    ids = tuple(table.column("cardholder_id").to_pylist())
    index = {cardholder_id: i for i, cardholder_id in enumerate(ids)}
    holder_X = bundle.holder.encode(table)
    est_spend = bundle.estimator.predict(holder_X, bundle.holder.feature_names)
    product_position = {p: i for i, p in enumerate(benefits.product_ids)}
    products = table.column("product_id").to_pylist()
    unknown = sorted({p for p in products if p not in product_position})
    if unknown:
        raise ModelError(f"cardholders have products the catalog does not describe: {unknown[:5]}")
    product_index = np.array([product_position[p] for p in products], dtype=np.int16)

    benefit_position = {b: i for i, b in enumerate(benefits.ids)}
    hist = history.to_pandas()
    hist = hist[hist["benefit_id"].isin(benefit_position)]
    contact_frame = contact.to_pandas()
    hist = hist.merge(contact_frame, on=["cardholder_id", "benefit_id"], how="left")
    hist["row"] = hist["cardholder_id"].map(index)
    hist = hist.dropna(subset=["row"]).sort_values(["row", "benefit_id"], kind="stable")
    rows = hist["row"].to_numpy(dtype=np.int64)
    offsets = np.searchsorted(rows, np.arange(len(ids) + 1)).astype(np.int64)
    values = hist[list(HISTORY_COLUMNS)].astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
    return Profiles(
        as_of=as_of,
        model_version=bundle.version,
        ids=ids,
        index=index,
        holder_X=holder_X.astype(np.float32),
        est_spend=est_spend.astype(np.float32),
        product_index=product_index,
        offsets=offsets,
        history_benefit=hist["benefit_id"].map(benefit_position).to_numpy(dtype=np.int16),
        history_used=hist["used"].to_numpy(dtype=bool),
        history_values=values,
        history_days_since_declined=hist["days_since_declined"]
        .astype("float64")
        .to_numpy(dtype=np.float32, na_value=np.nan),
        history_presented_90d=hist["presented_90d"].fillna(0).to_numpy(dtype=np.float32),
    )
