"""Bad input on Spark: a data path Spark cannot read, a missing table, a Spark job failing mid-way (no
half-written snapshot folder), and the engine options' mistakes: one clear line each."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nba.errors import ComputeEngineError, DataError, SchemaError
from tests.conftest import SAMPLE_DATA
from tests.deployment import Deployment
from tests.spark import SPARK_TEST
from training.cli import main
from training.engine_job import build_snapshot
from training.spark_data import SparkSql, data_uri, open_spark_data

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = SPARK_TEST


@pytest.mark.parametrize(
    ("given", "uri"),
    [
        ("s3a://bucket/world", "s3a://bucket/world"),
        ("s3a:/bucket/world", "s3a://bucket/world"),  # what a command line's Path makes of it
        ("hdfs://namenode:8020/data/world/", "hdfs://namenode:8020/data/world"),
        ("/data/world", "file:///data/world"),
    ],
)
def test_data_paths_are_named_as_spark_reads_them(given: str, uri: str) -> None:
    assert data_uri(given) == uri


def test_a_path_that_does_not_exist_is_one_line(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"^file://.*/nowhere: Spark cannot read this path: it does not exist$"
    ):
        open_spark_data(spark, tmp_path / "nowhere")


def test_a_file_system_spark_has_no_driver_for_is_named(spark: SparkSession) -> None:
    with pytest.raises(DataError, match=r"^nosuchfs://bucket/world: Spark cannot read this path: .*nosuchfs"):
        open_spark_data(spark, "nosuchfs://bucket/world")


def test_a_missing_table_or_column_is_named(spark: SparkSession, valid_dir: Path) -> None:
    (valid_dir / "nps.csv").unlink()
    with pytest.raises(SchemaError, match=r"table nps is missing \(expected nps\.csv or nps\.parquet\)$"):
        open_spark_data(spark, valid_dir)
    (valid_dir / "nps.csv").write_text("call_id,responded_at\nK1,\n", encoding="utf-8")
    with pytest.raises(
        SchemaError,
        match=r"^nps\.csv: required column score is missing \(columns found: call_id, responded_at\)$",
    ):
        open_spark_data(spark, valid_dir)


@pytest.mark.slow  # one Spark feature run before the failure: tens of seconds
def test_a_spark_job_failing_mid_way_leaves_no_snapshot_folder(
    spark: SparkSession, sample_deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    statements: list[str] = []
    run = SparkSql.write_parquet

    def write_then_break(self: SparkSql, sql: str, uri: str) -> Any:
        # The second statement (benefit history) finds conversations.parquet broken: a real Spark job
        # failing after the executors wrote the features' parts.
        statements.append(sql)
        if len(statements) == 2:
            (data / "conversations.parquet").write_bytes(b"not parquet any more" * 100)
        return run(self, sql, uri)

    monkeypatch.setattr(SparkSql, "write_parquet", write_then_break)
    out = tmp_path / "profiles"
    model = sample_deployment.models_dir / sample_deployment.version
    with (
        open_spark_data(spark, data) as opened,
        pytest.raises(
            ComputeEngineError, match=r"^the Spark job failed: [^\n]*conversations\.parquet[^\n]*$"
        ),
    ):
        build_snapshot(data, model, out, as_of=sample_deployment.as_of, spark=opened)
    assert len(statements) == 2
    assert not out.exists() or list(out.iterdir()) == []  # neither the snapshot nor the executors' parts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "presto"], "--engine: must be one of duckdb, spark, got 'presto'"),
        (["--spark-master", "local[2]"], "--spark-master and --spark-conf go with --engine spark"),
        (["--engine", "spark", "--spark-master", "spark://nohost"], "expected spark://HOST:PORT"),
    ],
)
def test_engine_options_mistakes_are_one_line(
    valid_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["features", "--data", str(valid_dir), "--out", str(tmp_path / "f.parquet"), *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1


def test_nba_features_on_spark_names_a_path_spark_cannot_read(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "features",
            "--data",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "f.parquet"),
            "--engine",
            "spark",
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 1
        and err.startswith("error: file://")
        and err.strip().endswith("nowhere: Spark cannot read this path: it does not exist")
    )
    assert spark.sql("SELECT 1 AS one").collect()[0].one == 1  # the test run's session is left running


def test_a_table_file_spark_cannot_read_is_named(spark: SparkSession, valid_dir: Path) -> None:
    (valid_dir / "nps.csv").unlink()
    (valid_dir / "nps.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"^file://.*/nps\.parquet: Spark cannot read it: "):
        open_spark_data(spark, valid_dir)


@pytest.mark.parametrize("command", [["validate"], ["train"]])
def test_validate_and_train_on_spark_name_a_path_spark_cannot_read(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    nowhere = str(tmp_path / "nowhere")
    models = str(tmp_path / "models")
    args = [*command, nowhere] if command == ["validate"] else [*command, "--data", nowhere, "--out", models]
    code = main([*args, "--engine", "spark"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert err.endswith("nowhere: Spark cannot read this path: it does not exist")
    assert not (tmp_path / "models").exists()
