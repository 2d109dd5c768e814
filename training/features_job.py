"""Features job: a data directory and an as-of date → one feature row per cardholder, as Parquet or CSV."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nba.contract import MCC_OVERRIDE_FILE, load_mcc_map, open_data
from nba.errors import DataError
from nba.features import (
    ExtraColumns,
    FeatureConfig,
    build_cardholder_features,
    load_feature_config,
    select_extra_columns,
    snapshot_all_sql,
)
from nba.files import temp_path
from training.progress import SILENT, Reporter

if TYPE_CHECKING:
    from training.spark_data import SparkData

OUTPUT_SUFFIXES: Final = (".parquet", ".csv")


@dataclass(frozen=True)
class FeaturesResult:
    """What `run_features` wrote: where, for which date, its shape, the extra columns and the wall time."""

    out: Path
    as_of: date
    rows: int
    columns: int
    extra_columns: ExtraColumns
    seconds: float


def run_features(
    data_dir: Path,
    as_of: date | None,
    out: Path,
    config_path: Path | None = None,
    *,
    progress: Reporter = SILENT,
    spark: SparkData | None = None,
) -> FeaturesResult:
    """Computes the features of every cardholder whose card opened before `as_of`, and writes them to `out`.

    `as_of` defaults to the day after the latest date in the data. The data directory's `mcc_map.csv`
    patches the shipped MCC map; `config_path` (YAML or JSON, see FeatureConfig) chooses extra
    cardholder columns. `out` ends in .parquet or .csv. `progress` is told each step and watches the SQL.
    With `spark` (the same data opened in Spark, `open_engine`) the SQL runs there, in Spark's dialect,
    and `mcc_map.csv` is read through Spark's file system; the rows are the same.

    Raises DataError for a bad output name, an as-of outside the data (`check_as_of`) or a bad config, and the errors of
    `open_data` and `load_mcc_map` for bad input files.
    """
    started = time.perf_counter()
    if out.suffix not in OUTPUT_SUFFIXES:
        raise DataError(f"`out` must end in .parquet or .csv, got {out.name!r}")
    config = load_feature_config(config_path) if config_path is not None else FeatureConfig()
    if spark is not None:
        progress.step(f"{spark.uri}: choosing extra cardholder columns (Spark)")
        extra = select_extra_columns(spark.sql, config)
        as_of = spark.resolve_as_of(as_of)
        progress.step(
            f"{spark.uri}: computing features as of {as_of} on Spark ({spark.spark.sparkContext.master})"
        )
        table = build_cardholder_features(
            spark.sql, snapshot_all_sql(as_of, spark.sql.dialect), spark.mcc_map(), extra
        )
        progress.step(f"writing {table.num_rows:,} rows to {out}")
        write_table(table, out)
        return FeaturesResult(
            out, as_of, table.num_rows, table.num_columns, extra, time.perf_counter() - started
        )
    override = data_dir / MCC_OVERRIDE_FILE
    mcc_map = load_mcc_map(override if override.exists() else None)
    with open_data(data_dir) as data:
        progress.step(f"{data_dir}: choosing extra cardholder columns")
        extra = select_extra_columns(data.con, config)
        as_of = data.resolve_as_of(as_of)
        progress.step(f"{data_dir}: computing features as of {as_of}")
        with progress.query(data.con, "features SQL, every cardholder"):
            table = build_cardholder_features(data.con, snapshot_all_sql(as_of), mcc_map, extra)
        progress.step(f"writing {table.num_rows:,} rows to {out}")
        write_table(table, out)
    return FeaturesResult(
        out=out,
        as_of=as_of,
        rows=table.num_rows,
        columns=table.num_columns,
        extra_columns=extra,
        seconds=time.perf_counter() - started,
    )


def write_table(table: pa.Table, out: Path) -> None:
    """Writes `table` as Parquet or CSV by `out`'s extension, creating its folder.

    Written under a hidden name beside `out` and renamed over it when complete: a reader, or a job that
    fails half-way, never leaves half a file at `out`.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(out.parent, out.name)
    try:
        if out.suffix == ".csv":
            pacsv.write_csv(table, temp)
        else:
            pq.write_table(table, temp)
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
