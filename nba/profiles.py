"""Profiles: a data directory as of a date + a model bundle → every cardholder's features in compact arrays.

Two steps, so a profile snapshot can be stored once and served by any model (`nba.snapshots`):
`compute_profile_tables` runs the feature SQL (model-independent Arrow tables), and
`assemble_profiles` encodes them for one model (its encoders and spend estimator).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from nba.bundle import ModelBundle
from nba.errors import ModelError
from nba.features import ExtraColumns, build_benefit_history, build_cardholder_features, snapshot_all_sql
from nba.matrix import HISTORY_COLUMNS, BenefitTable
from nba.mcc import MccMap
from nba.tables import DataSource
from nba.vocab import SPEND_CATEGORIES

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
CONTACT_COLUMNS: Final = ("cardholder_id", "benefit_id", "days_since_declined", "presented_90d")
# Feature rows are encoded and run through the spend estimator this many at a time, so the float64
# matrix (1.7 GB for a million cardholders) is never held whole.
ASSEMBLY_ROWS: Final = 16_384


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


@dataclass(frozen=True, eq=False)
class ProfileTables:
    """What profiles are made of before a model encodes them: model-independent Arrow tables.

    `features`: `build_cardholder_features` rows (`cardholder_id`, `as_of`, then `feature_names(extra)`);
    `history`: `build_benefit_history`; `contact`: per (cardholder, benefit) what the contact policy
    needs (`CONTACT_COLUMNS`); `extra`: the extra (CRM) columns the features were computed with.
    """

    features: pa.Table
    history: pa.Table
    contact: pa.Table
    extra: ExtraColumns


def compute_profile_tables(
    data: DataSource, as_of: date, mcc_map: MccMap, extra: ExtraColumns
) -> ProfileTables:
    """Runs the feature SQL for every cardholder whose card was open before `as_of` (data strictly before it).

    `extra` is the model's `ExtraColumns` (the CRM columns its features take); nothing else about a model
    is needed. Raises SchemaError when `cardholders` lacks one of the extra columns.
    """
    snapshots = snapshot_all_sql(as_of)
    return ProfileTables(
        features=build_cardholder_features(data.con, snapshots, mcc_map, extra),
        history=build_benefit_history(data.con, snapshots),
        contact=data.con.sql(_CONTACT_SQL.format(snapshots=snapshots)).to_arrow_table(),
        extra=extra,
    )


def build_profiles(
    data: DataSource, as_of: date, bundle: ModelBundle, mcc_map: MccMap, benefits: BenefitTable
) -> Profiles:
    """Computes every cardholder's profile as of `as_of` with the model's own feature code and encoders.

    Raises ModelError when a cardholder's product is not in the catalog the model serves.
    """
    tables = compute_profile_tables(data, as_of, mcc_map, bundle.extra)
    return assemble_profiles(as_of, tables.features, tables.history, tables.contact, bundle, benefits)


def assemble_profiles(
    as_of: date,
    table: pa.Table,
    history: pa.Table,
    contact: pa.Table,
    bundle: ModelBundle,
    benefits: BenefitTable,
) -> Profiles:
    """Profiles from the three tables `build_profiles` computes (feature rows, benefit history, contact).

    Raises ModelError when a cardholder's product is not in the catalog or a feature column is missing.
    """
    ids = table.column("cardholder_id").combine_chunks()
    return assemble_profiles_from_batches(
        as_of,
        ids,
        table.to_batches(ASSEMBLY_ROWS),
        build_profile_history(ids, history, contact, benefits),
        bundle,
        benefits,
    )


@dataclass(frozen=True, eq=False)
class ProfileHistory:
    """The per-benefit history part of `Profiles` (see there), for cardholders in a given order."""

    offsets: IntArray
    benefit: npt.NDArray[np.int16]
    used: npt.NDArray[np.bool_]
    values: npt.NDArray[np.float32]
    days_since_declined: npt.NDArray[np.float32]
    presented_90d: npt.NDArray[np.float32]


def assemble_profiles_from_batches(
    as_of: date,
    ids: pa.Array,
    batches: Iterable[pa.RecordBatch],
    history: ProfileHistory,
    bundle: ModelBundle,
    benefits: BenefitTable,
    *,
    est_spend: npt.NDArray[np.float32] | None = None,
) -> Profiles:
    """`assemble_profiles` over feature rows that arrive in batches (read from a file as they are needed).

    `ids` are the cardholders in row order and `history` their `build_profile_history`; the batches
    hold the same cardholders in the same order, with `cardholder_id`, `product_id` and the model's
    cardholder features (other columns are ignored). Each batch is encoded on its own, so only the
    float32 result is ever held whole. `est_spend`, when given, is what `estimate_spend` returned for
    these rows and this model (stored with a snapshot), and the spend estimator is not run.

    Raises ModelError as `assemble_profiles` does, and when the batches do not hold `ids` or a
    cardholder comes twice.
    """
    expected = (len(ids), len(SPEND_CATEGORIES))
    if est_spend is not None and (est_spend.shape != expected or est_spend.dtype != np.float32):
        raise ModelError(
            f"the spend estimates are {est_spend.dtype} {est_spend.shape}, expected float32 {expected}"
        )
    index = {cardholder_id: i for i, cardholder_id in enumerate(ids.to_pylist())}
    if len(index) != len(ids):
        raise ModelError("the feature rows list a cardholder twice; a profile holds one row per cardholder")
    encoded = _encode_rows(ids, batches, bundle, keep_features=True, estimate=est_spend is None)
    assert encoded.holder_X is not None
    if est_spend is None:
        assert encoded.est_spend is not None
        est_spend = encoded.est_spend
    product_index = _positions(encoded.products, benefits.product_ids)
    if (product_index < 0).any():
        unknown = encoded.products.filter(pa.array(product_index < 0)).to_pylist()
        raise ModelError(
            f"cardholders have products the catalog does not describe: {sorted(set(unknown))[:5]}"
        )
    return Profiles(
        as_of=as_of,
        model_version=bundle.version,
        ids=tuple(index),
        index=index,
        holder_X=encoded.holder_X,
        est_spend=est_spend,
        product_index=product_index.astype(np.int16),
        offsets=history.offsets,
        history_benefit=history.benefit,
        history_used=history.used,
        history_values=history.values,
        history_days_since_declined=history.days_since_declined,
        history_presented_90d=history.presented_90d,
    )


def estimate_spend(features: pa.Table, bundle: ModelBundle) -> npt.NDArray[np.float32]:
    """The model's spend estimate per category for every feature row, as `Profiles.est_spend` holds it.

    The slow part of assembling profiles (16 LightGBM regressions per cardholder), so a snapshot built
    for a model stores it. Raises ModelError when a feature the model needs is missing.
    """
    ids = features.column("cardholder_id").combine_chunks()
    encoded = _encode_rows(
        ids, features.to_batches(ASSEMBLY_ROWS), bundle, keep_features=False, estimate=True
    )
    assert encoded.est_spend is not None
    return encoded.est_spend


@dataclass(frozen=True)
class _EncodedRows:
    products: pa.ChunkedArray
    holder_X: npt.NDArray[np.float32] | None
    est_spend: npt.NDArray[np.float32] | None


def _encode_rows(
    ids: pa.Array,
    batches: Iterable[pa.RecordBatch],
    bundle: ModelBundle,
    *,
    keep_features: bool,
    estimate: bool,
) -> _EncodedRows:
    """Feature rows of `ids`, batch by batch → the model's float32 columns and/or its spend estimates."""
    names = bundle.holder.feature_names
    n = len(ids)
    holder_X = np.empty((n, len(names)), dtype=np.float32) if keep_features else None
    est_spend = np.empty((n, len(SPEND_CATEGORIES)), dtype=np.float32) if estimate else None
    product_chunks: list[pa.Array] = []
    start = 0
    for batch in batches:
        end = start + batch.num_rows
        if end > n or not batch.column("cardholder_id").equals(ids.slice(start, batch.num_rows)):
            raise ModelError(f"the feature rows from row {start:,} are not the cardholders expected there")
        product_chunks.append(batch.column("product_id"))
        # LightGBM's predict already uses every core; a batch at a time bounds the float64 copy.
        X = bundle.holder.encode(pa.Table.from_batches([batch]))
        if est_spend is not None:
            est_spend[start:end] = bundle.estimator.predict(X, names)
        if holder_X is not None:
            holder_X[start:end] = X
        start = end
    if start != n:
        raise ModelError(f"the feature rows hold {start:,} cardholders, not the {n:,} expected")
    return _EncodedRows(pa.chunked_array(product_chunks, pa.string()), holder_X, est_spend)


def _positions(values: pa.ChunkedArray | pa.Array, levels: pa.Array | Sequence[str]) -> IntArray:
    """Each value's position in `levels` (no duplicates), -1 when it is not there or missing."""
    value_set = levels if isinstance(levels, pa.Array) else pa.array(list(levels), pa.string())
    found = pc.fill_null(pc.index_in(values, value_set=value_set), -1)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


def _match(keys: IntArray, lookup: IntArray) -> IntArray:
    """For each key, the position of the same key in `lookup` (unique keys), -1 when it is not there."""
    by_key = np.argsort(lookup, kind="stable")
    sorted_lookup = lookup[by_key]
    at = np.searchsorted(sorted_lookup, keys)
    found = at < len(sorted_lookup)
    found[found] = sorted_lookup[at[found]] == keys[found]
    out = np.full(len(keys), -1, dtype=np.int64)
    out[found] = by_key[at[found]]
    return out


def _floats(column: pa.ChunkedArray, take: IntArray) -> npt.NDArray[np.float32]:
    """Rows `take` of a column as float32 (through float64, as pandas did), NULL and take -1 as NaN."""
    values = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    out = np.full(len(take), np.nan, dtype=np.float64)
    present = take >= 0
    out[present] = values[take[present]]
    return out.astype(np.float32)


def build_profile_history(
    ids: pa.Array, history: pa.Table, contact: pa.Table, benefits: BenefitTable
) -> ProfileHistory:
    """The CSR-like per-benefit history of `Profiles` for cardholders `ids` (in that order).

    Rows are grouped by cardholder row, then ordered by benefit id; rows of cardholders not in `ids`
    or of benefits not in the catalog are left out. The contact columns come from `contact`'s row for
    the same (cardholder, benefit): NaN days and 0 presentations without one.
    """
    n_benefits = len(benefits.ids)
    rows = _positions(history.column("cardholder_id"), ids)
    benefit = _positions(history.column("benefit_id"), benefits.ids)
    # Within a cardholder, rows go in the order of the benefit ids as strings, not in catalog order.
    rank = np.empty(n_benefits, dtype=np.int64)
    rank[sorted(range(n_benefits), key=benefits.ids.__getitem__)] = np.arange(n_benefits)
    kept = np.flatnonzero((rows >= 0) & (benefit >= 0))
    sort_key = rows[kept] * n_benefits + rank[benefit[kept]]
    # The SQL returns history in this order already; sort only when it does not.
    order = kept if (sort_key[1:] > sort_key[:-1]).all() else kept[np.argsort(sort_key, kind="stable")]
    del sort_key
    key = rows[order] * n_benefits + benefit[order]

    contact_rows = _positions(contact.column("cardholder_id"), ids)
    contact_benefit = _positions(contact.column("benefit_id"), benefits.ids)
    contact_key = np.where(
        (contact_rows >= 0) & (contact_benefit >= 0), contact_rows * n_benefits + contact_benefit, -1
    )
    source = _match(key, contact_key)
    values = np.empty((len(order), len(HISTORY_COLUMNS)), dtype=np.float32)
    for j, name in enumerate(HISTORY_COLUMNS):
        values[:, j] = _floats(history.column(name), order)
    used = np.asarray(history.column("used").to_numpy(zero_copy_only=False), dtype=bool)
    return ProfileHistory(
        offsets=np.searchsorted(rows[order], np.arange(len(ids) + 1)).astype(np.int64),
        benefit=benefit[order].astype(np.int16),
        used=used[order],
        values=values,
        days_since_declined=_floats(contact.column("days_since_declined"), source),
        presented_90d=np.nan_to_num(_floats(contact.column("presented_90d"), source), nan=0.0),
    )
