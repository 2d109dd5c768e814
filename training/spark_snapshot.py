"""Spark snapshot: a data path opened in Spark → a profile snapshot's three tables, written by the executors.

`nba profiles build --engine spark` no longer brings a snapshot's rows to the driver as one Arrow table
(`toArrow`: 100 M cardholders × ~330 columns is ~260 GB). The three statements (features, benefit
history, contact history) are written by the executors as Parquet parts into a staging folder, in the
statements' order (each ends in ORDER BY: Spark range-partitions the rows, so part i holds the i-th range,
sorted). `nba.profiles.write_snapshot_parts` then streams the parts, one row group at a time, into the
snapshot's single-file tables, byte for byte what the DuckDB path writes, computing the spend estimates
per row group, checksumming, and renaming the folder into place as always.

The staging folder must be readable by this process and writable by the executors: with a local master,
any local folder (the snapshot root's hidden staging folder); on a cluster, a shared path (a mount both
see), or the parts go to the lake and are copied down first.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from nba.contract import MccMap
from nba.errors import SchemaError
from nba.features import (
    ExtraColumns,
    benefit_history_sql,
    cardholder_features_sql,
    mcc_category_table,
    snapshot_all_sql,
)
from nba.profiles import SnapshotParts, contact_history_sql
from training.spark_data import SparkData, plain_arrow

_MCC_VIEW: Final = "nba_snapshot_mcc"
_BATCH_ROWS: Final = 65_536


def _parts_of(folder: Path) -> Iterator[pa.Table]:
    """The rows Spark wrote into `folder`, in order (part files by partition number), a batch at a time,
    typed as `SparkSql.arrow` types them."""
    files = sorted(folder.glob("part-*.parquet"))
    if not files:  # Spark writes at least one part, empty when there are no rows; a job cut short none
        raise FileNotFoundError(f"{folder}: Spark wrote no part files")
    for file in files:
        parquet = pq.ParquetFile(file)
        yielded = False
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            yield plain_arrow(pa.Table.from_batches([batch]))
            yielded = True
        if not yielded:
            yield plain_arrow(parquet.schema_arrow.empty_table())


def write_profile_parts(
    data: SparkData, as_of: date, mcc_map: MccMap, extra: ExtraColumns, staging: Path
) -> SnapshotParts:
    """Runs the snapshot's three statements on Spark, each written by the executors into `staging`
    (a local folder, empty), and returns them as parts for `write_snapshot_parts`.

    Raises ComputeEngineError (one line) when a Spark job fails, and SchemaError as
    `build_cardholder_features` does when `cardholders` lacks one of `extra`'s columns.
    """
    sql = data.sql
    available = set(sql.column_names("cardholders"))
    missing = [name for name in extra.taken if name not in available]
    if missing:  # build_cardholder_features' check, before any job runs
        raise SchemaError(
            f"cardholders has no column {missing[0]!r}, which the features use (decided on the training data)"
        )
    snapshots = snapshot_all_sql(as_of, sql.dialect)
    statements = {
        "features": cardholder_features_sql(snapshots, extra, _MCC_VIEW, sql.dialect),
        "history": benefit_history_sql(snapshots, sql.dialect),
        "contact": contact_history_sql(snapshots, sql.dialect),
    }
    sql.materialize(_MCC_VIEW, mcc_category_table(mcc_map))
    try:
        for name, statement in statements.items():
            sql.write_parquet(statement, (staging / name).as_uri())
    finally:
        sql.drop(_MCC_VIEW)
    return SnapshotParts(
        _parts_of(staging / "features"), _parts_of(staging / "history"), _parts_of(staging / "contact"), extra
    )
