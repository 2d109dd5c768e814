"""Spark session: settings from a file, NBA_SPARK_* and the flags; one clear line for what stops Spark."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nba.errors import ComputeEngineError, DataError
from tests.spark import SPARK_TEST
from training.spark_session import (
    SparkSettings,
    env_spark_conf,
    read_spark_conf,
    spark_settings,
    start_spark,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = SPARK_TEST


def test_settings_file_of_key_value_lines(tmp_path: Path) -> None:
    path = tmp_path / "spark.conf"
    path.write_text(
        "# comments and blank lines are skipped\n\nspark.executor.memory=4g\n"
        "spark.sql.shuffle.partitions 400\nspark.driver.bindAddress = 0.0.0.0\n",
        encoding="utf-8",
    )
    assert read_spark_conf(path) == {
        "spark.executor.memory": "4g",
        "spark.sql.shuffle.partitions": "400",
        "spark.driver.bindAddress": "0.0.0.0",
    }


def test_settings_file_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "spark.yaml"
    path.write_text("spark.executor.cores: 4\nspark.sql.adaptive.enabled: true\n", encoding="utf-8")
    assert read_spark_conf(path) == {"spark.executor.cores": "4", "spark.sql.adaptive.enabled": "true"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "a.conf",
            "spark.executor.memory=4g\nexecutor.memory=4g\n",
            r"a\.conf, line 2: 'executor\.memory' is not a Spark setting",
        ),
        ("b.conf", "spark.executor.memory=\n", r"b\.conf, line 1: spark\.executor\.memory needs one value"),
        ("c.yaml", "- spark.executor.memory\n", r"c\.yaml: Spark settings must be a mapping"),
        ("d.yaml", "spark.x: [1, 2]\n", r"d\.yaml, key 'spark\.x': spark\.x needs one value"),
        ("e.yaml", "spark.x: [1,\n", r"e\.yaml: not valid YAML"),
    ],
)
def test_a_bad_settings_file_is_one_line_naming_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_spark_conf(path)


def test_a_missing_settings_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.conf: cannot read the Spark settings"):
        read_spark_conf(tmp_path / "nope.conf")


def test_nba_spark_variables_map_to_dotted_settings() -> None:
    environ = {
        "NBA_SPARK_EXECUTOR_MEMORY": "4g",
        "NBA_SPARK_SQL_SHUFFLE_PARTITIONS": "64",
        "NBA_SPARK_": "ignored: no name",
        "NBA_PORT": "8000",
    }
    assert env_spark_conf(environ) == {"spark.executor.memory": "4g", "spark.sql.shuffle.partitions": "64"}


def test_variables_override_the_file_and_the_flag_overrides_both(tmp_path: Path) -> None:
    path = tmp_path / "spark.conf"
    path.write_text("spark.master=spark://a:7077\nspark.executor.memory=2g\n", encoding="utf-8")
    from_file = spark_settings(None, path, environ={})
    assert from_file == SparkSettings("spark://a:7077", {"spark.executor.memory": "2g"})
    from_env = spark_settings(
        None, path, environ={"NBA_SPARK_MASTER": "yarn", "NBA_SPARK_EXECUTOR_MEMORY": "8g"}
    )
    assert from_env == SparkSettings("yarn", {"spark.executor.memory": "8g"})
    assert spark_settings("local[2]", path, environ={"NBA_SPARK_MASTER": "yarn"}).master == "local[2]"
    assert spark_settings(None, None, environ={}).master == "local[*]"


def test_without_pyspark_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(
        ComputeEngineError, match=r"needs PySpark, which is not installed: pip install 'nba\[spark\]'$"
    ):
        start_spark(SparkSettings("local[1]"))


def test_without_java_the_error_names_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        ComputeEngineError,
        match=r"needs Java 17 or newer; found no java on the PATH: apt-get install openjdk-17-jre-headless",
    ):
        start_spark(SparkSettings("local[1]"))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ComputeEngineError, match=r"found no JAVA_HOME/bin/java"):
        start_spark(SparkSettings("local[1]"))


def test_an_unreachable_master_is_one_line_naming_it() -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(
            ComputeEngineError,
            match=rf"cannot reach the Spark master spark://127\.0\.0\.1:{port} \(127\.0\.0\.1:{port}: ",
        ):
            start_spark(SparkSettings(f"spark://127.0.0.1:{port}"))


def test_a_malformed_standalone_master_is_named() -> None:
    with pytest.raises(DataError, match=r"--spark-master 'spark://nohost': expected spark://HOST:PORT"):
        start_spark(SparkSettings("spark://nohost"))


def test_the_shared_session_runs_sql_in_utc_on_the_loopback(spark: SparkSession) -> None:
    assert (
        spark.sql("SELECT CAST(TIMESTAMP '2025-01-01 23:30:00' AS DATE) AS day").collect()[0].day.isoformat()
        == "2025-01-01"
    )
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert spark.sparkContext.master == "local[2]"
