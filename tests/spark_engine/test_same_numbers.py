"""Spark and DuckDB give the same numbers: the sample world's serving snapshot and training snapshots,
column by column (money to the cent, counts exactly, shares and trends within 1e-12 relative), and
Spark's profile snapshot loads into the same Profiles as DuckDB's.

One Spark run per statement set (the JVM's first plans are slow): a profile snapshot built by Spark (the
serving features, benefit history and contact tables) and one training-snapshot run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from nba.contract import catalog_for, load_catalog, load_mcc_map, open_data
from nba.features import (
    SPARK,
    BenefitTable,
    FeatureConfig,
    cardholder_features_sql,
    feature_names,
    mcc_category_table,
    select_extra_columns,
    snapshot_all_sql,
)
from nba.model import load_bundle
from nba.profiles import profiles_from_snapshot
from nba.profiles._snapshots import load_snapshot
from tests.deployment import Deployment, assert_same_profiles
from tests.spark import SPARK_TEST
from training.cli import main
from training.engine_job import build_snapshot
from training.pairs import compute_snapshots, with_feature_sql
from training.spark_data import SparkData, open_spark_data
from training.training_run import TrainOptions, load_inputs, open_training_data, prepare_run

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Each Spark feature run plans ~100 stages: tens of seconds on 2 cores, so not in the quick loop.
pytestmark = [SPARK_TEST, pytest.mark.slow]

# Shares and trends are ratios of rounded sums: the issue allows 1e-12 relative; the rest must be equal.
RATIO_PREFIXES = ("share_", "trend_")
MCC_VIEW = "nba_test_plan_mcc"


def assert_same_rows(got: pa.Table, expected: pa.Table) -> None:
    """Column by column: the same names and types; ratios within 1e-12 relative, everything else equal
    (money is rounded to cents in the SQL, so equal money is equal to the cent)."""
    assert got.schema == expected.schema
    assert got.num_rows == expected.num_rows
    for name in expected.column_names:
        a, b = got.column(name), expected.column(name)
        if name.startswith(RATIO_PREFIXES):
            x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
            assert np.allclose(x, y, rtol=1e-12, atol=0.0, equal_nan=True), name
        else:
            assert a.equals(b), f"{name}: first difference at row {_first_difference(a, b)}"


def _first_difference(a: pa.ChunkedArray, b: pa.ChunkedArray) -> int:
    same = pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b)).to_numpy(zero_copy_only=False)
    return int(np.flatnonzero(~(same | both_null))[0])


@pytest.fixture(scope="module")
def spark_data(spark: SparkSession, sample_deployment: Deployment) -> Iterator[SparkData]:
    with open_spark_data(spark, sample_deployment.data_dir) as opened:
        yield opened


@dataclass(frozen=True)
class Snapshots:
    spark_folder: Path
    duckdb_folder: Path


@pytest.fixture(scope="module")
def snapshots(
    spark_data: SparkData, sample_deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> Snapshots:
    out = tmp_path_factory.mktemp("spark-profiles")
    model = sample_deployment.models_dir / sample_deployment.version
    built = build_snapshot(sample_deployment.data_dir, model, out, spark=spark_data)
    return Snapshots(built.folder, sample_deployment.profiles_dir / sample_deployment.as_of.isoformat())


def test_spark_serving_snapshot_has_duckdbs_rows_column_by_column(snapshots: Snapshots) -> None:
    got, expected = load_snapshot(snapshots.spark_folder), load_snapshot(snapshots.duckdb_folder)
    assert got.manifest.feature_names == expected.manifest.feature_names
    assert got.manifest.extra_columns == expected.manifest.extra_columns
    assert_same_rows(got.tables.features, expected.tables.features)
    assert_same_rows(got.tables.history, expected.tables.history)
    assert_same_rows(got.tables.contact, expected.tables.contact)
    assert got.manifest.estimates == expected.manifest.estimates


def test_spark_snapshot_files_are_duckdbs_byte_for_byte(snapshots: Snapshots) -> None:
    # The same rows written the same way: the manifests' checksums agree file by file.
    got = load_snapshot(snapshots.spark_folder).manifest.files
    expected = load_snapshot(snapshots.duckdb_folder).manifest.files
    assert got == expected


def test_spark_snapshot_loads_into_duckdbs_profiles(
    snapshots: Snapshots, sample_deployment: Deployment
) -> None:
    bundle = load_bundle(sample_deployment.models_dir / sample_deployment.version)
    benefits = BenefitTable.from_catalog(load_catalog(catalog_for(sample_deployment.data_dir)))
    assert_same_profiles(
        profiles_from_snapshot(snapshots.spark_folder, bundle, benefits),
        profiles_from_snapshot(snapshots.duckdb_folder, bundle, benefits),
    )


def test_spark_training_snapshots_equal_duckdbs(spark_data: SparkData, sample_deployment: Deployment) -> None:
    """One snapshot per presentation day, as `nba train` builds its training set: features and history."""
    talks = pq.read_table(
        sample_deployment.data_dir / "conversations.parquet", columns=["cardholder_id", "presented_at"]
    )
    pairs = pa.table({"cardholder_id": talks.column("cardholder_id"), "as_of": talks.column("presented_at")})
    mcc_map = load_mcc_map(None)
    with open_data(sample_deployment.data_dir) as data:
        extra = select_extra_columns(data.con, FeatureConfig())
        assert select_extra_columns(spark_data.sql, FeatureConfig()) == extra
        expected = compute_snapshots(data, pairs, mcc_map, extra)
        got = compute_snapshots(with_feature_sql(data, spark_data.sql), pairs, mcc_map, extra)
    assert got.table.num_rows > 1000  # many (cardholder, day) pairs, not one date
    assert got.table.column_names == ["cardholder_id", "as_of", *feature_names(extra)]
    assert_same_rows(got.table, expected.table)
    assert got.keys.equals(expected.keys)
    assert got.history.equals(expected.history)


def test_nba_features_on_spark_writes_duckdbs_rows(
    spark: SparkSession, sample_deployment: Deployment, snapshots: Snapshots, tmp_path: Path
) -> None:
    out = tmp_path / "features.parquet"
    args = ["features", "--data", str(sample_deployment.data_dir), "--out", str(out), "-q"]
    assert main([*args, "--engine", "spark", "--spark-master", "local[2]"]) == 0
    expected = load_snapshot(snapshots.duckdb_folder).tables.features
    assert_same_rows(pq.read_table(out), expected)
    assert spark.sql("SELECT 1 AS one").collect()[0].one == 1  # the test run's session is left running


def test_spark_feature_plan_has_no_single_partition_step(spark_data: SparkData) -> None:
    """Spark numbers the snapshot pairs per hash bucket, not with a window over every row in one task."""
    spark_data.sql.materialize(MCC_VIEW, mcc_category_table(load_mcc_map(None)))
    try:
        extra = select_extra_columns(spark_data.sql, FeatureConfig())
        sql = cardholder_features_sql(snapshot_all_sql(date(2026, 1, 1), SPARK), extra, MCC_VIEW, SPARK)
        plan = spark_data.spark.sql(sql)._jdf.queryExecution().executedPlan().toString()
    finally:
        spark_data.sql.drop(MCC_VIEW)
    assert "Window" in plan and "Exchange" in plan
    assert "SinglePartition" not in plan


def test_training_reads_every_table_through_spark_with_duckdbs_labels(
    spark_data: SparkData, sample_deployment: Deployment
) -> None:
    """`nba train --engine spark` on a path this process cannot read: validation, catalog, MCC map and the
    labelled presentations all come through Spark, and equal what DuckDB reads from the folder."""
    data_dir = sample_deployment.data_dir
    nowhere = Path("/nonexistent/lake/world")  # what a lake path is to this process
    options = TrainOptions(spark=spark_data)
    catalog, mcc_map, _ = load_inputs(nowhere, options)
    assert catalog == load_catalog(catalog_for(data_dir))
    assert np.array_equal(mcc_map.category_index, load_mcc_map(None).category_index)
    with open_data(data_dir) as local:
        expected = prepare_run(local, data_dir, catalog, mcc_map, TrainOptions())
    with open_training_data(nowhere, options) as data:
        got = prepare_run(data, nowhere, catalog, mcc_map, options)
        with pytest.raises(duckdb.Error, match="the transactions are read on Spark"):
            data.con.sql("SELECT count(*) FROM transactions").fetchall()
    assert got.rows.shape[0] > 1000 and got.as_of == expected.as_of
    pd.testing.assert_frame_equal(got.rows, expected.rows)
    assert np.array_equal(got.split.train, expected.split.train)
    assert np.array_equal(got.split.valid, expected.split.valid)
