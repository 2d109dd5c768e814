"""Spark fixture: one local SparkSession for the whole test run (local[2], loopback, no UI) → `spark`.

Registered from tests/conftest.py (`pytest_plugins`). Starting a JVM costs seconds, so every Spark test
shares this session; PySpark and Java come from `make test` (the `[test]` extra pulls in `[spark]`,
scripts/apt-test.txt holds openjdk-17-jre-headless). Without them the fixture fails and says so, it
never skips. Tests that start a session of their own settings would get this one back (getOrCreate).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# training (and through it nba) is imported by the fixture, not by this module: it is a plugin of the
# root conftest, so pytest-xdist's controller, which runs no test, imported it too.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# PySpark reads every result (collect, toArrow) over a local socket it never closes (pyspark.util's
# _create_local_socket keeps only the file made from it), so the socket's finaliser warns; with
# `filterwarnings = error` that fails the test. Spark test modules set `pytestmark = SPARK_TEST`.
SPARK_TEST = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)

# Two cores as CI has them; few shuffle partitions: the sample world is small.
TEST_MASTER = "local[2]"
TEST_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "1g",
    "spark.sql.adaptive.enabled": "true",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    from training.spark_session import SparkSettings, start_spark

    session = start_spark(SparkSettings(master=TEST_MASTER, conf=TEST_CONF))
    try:
        yield session
    finally:
        session.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the shared Spark session (a JVM, seconds to start, tens of seconds per job on
    the sample world) is slow: the quick loop (`-m "not slow"`) leaves it out."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
