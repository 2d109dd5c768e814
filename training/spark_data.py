"""Spark data: a data path Spark reads (a folder, `s3a://`, `hdfs://`) → typed Spark SQL views of the contract.

The Spark twin of `nba.contract.open_data`: one temporary view per contract table (`cardholders`,
`transactions`, ...) in contract types, the same names and types DuckDB's views have, so the one
feature SQL text (`nba.features`, in Spark's dialect) runs over them unchanged. Views live in a session
of their own (`SparkSession.newSession`: the same cluster, separate views), dropped on `close`.

Files are found and read through Spark's file system (Hadoop's), so a path is whatever the cluster
reads; the small files beside the tables (`mcc_map.csv`, `catalog.yaml`) are read the same way and
copied to a local temporary folder, where the loaders of `nba.contract` read them. Only the contract's
types are parsed here; whether the values obey the contract is `nba validate`'s question.

Results come back to this process as Arrow (`SparkSql.arrow`): the feature rows of every cardholder, one
row each. The heavy part (the transactions, joined to the snapshot dates and aggregated) stays on the
cluster.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from nba.contract import MCC_OVERRIDE_FILE, TABLES, MccMap, check_as_of, load_mcc_map
from nba.errors import ComputeEngineError, DataError, SchemaError
from nba.features import SPARK, Dialect
from training.spark_session import first_line

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CATALOG_FILE: Final = "catalog.yaml"
_SPARK_TYPE: Final = {
    "string": "STRING",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
_FLOAT_SOURCES: Final = ("double", "float", "decimal")
_MAX_DOUBLE: Final = "1.7976931348623157E308"
_RAW_PREFIX: Final = "nba_raw_"
_FOLDED_URI_RE: Final = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):/([^/].*)")


def plain_arrow(table: pa.Table) -> pa.Table:
    """Spark's Arrow as DuckDB gives it: large text as `string`, every field nullable, no metadata."""
    fields = []
    for f in table.schema:
        kind = pa.string() if pa.types.is_large_string(f.type) else f.type
        fields.append(pa.field(f.name, kind, nullable=True))
    return table.cast(pa.schema(fields))


class SparkSql:
    """`nba.features.SqlEngine` over a Spark session: the feature SQL in Spark's dialect."""

    dialect: Final[Dialect] = SPARK

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._cached: dict[str, DataFrame] = {}

    def arrow(self, sql: str) -> pa.Table:
        return plain_arrow(self._run(lambda: self.spark.sql(sql).toArrow()))

    def write_parquet(self, sql: str, uri: str) -> None:
        """Runs `sql` and has the executors write its rows as Parquet parts under `uri` (a folder that
        must not exist), part i holding the i-th range of the statement's order; nothing comes back."""
        self._run(lambda: self.spark.sql(sql).write.parquet(uri))

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._run(lambda: self.spark.sql(sql).collect())]

    def column_names(self, relation: str) -> tuple[str, ...]:
        return tuple(self.spark.table(relation).columns)

    def register(self, name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def materialize(self, name: str, table: pa.Table) -> None:
        # Small (the MCC map: 10,000 rows): cached once, broadcast to every join.
        frame = self.spark.createDataFrame(table).cache()
        frame.createOrReplaceTempView(name)
        self._cached[name] = frame

    def drop(self, name: str) -> None:
        frame = self._cached.pop(name, None)
        if frame is not None:
            frame.unpersist()
        self.spark.catalog.dropTempView(name)

    def _run(self, job: Any) -> Any:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        try:
            return job()
        except (PySparkException, Py4JError) as exc:
            raise ComputeEngineError(f"the Spark job failed: {first_line(exc)}") from None


def path_exists(spark: SparkSession, uri: str) -> bool:
    """Whether `uri` exists, asked of the file system Spark would read it with."""
    jvm: Any = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    try:
        fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        return bool(fs.exists(path))
    except Exception as exc:  # Py4JJavaError: no file system for the scheme, access denied, ...
        raise DataError(f"{uri}: Spark cannot read this path: {first_line(exc)}") from None


@contextmanager
def copy_side_file(spark: SparkSession, uri: str, name: str) -> Iterator[Path | None]:
    """A small file `name` beside the tables of the data path `uri` (`mcc_map.csv`, `catalog.yaml`), read
    through Spark's file system and copied to a local temporary folder under its own name (so messages
    name it), or None when the data path has none."""
    source = f"{uri}/{name}"
    if not path_exists(spark, source):
        yield None
        return
    rows = spark.read.text(source, wholetext=True).collect()
    with tempfile.TemporaryDirectory(prefix="nba-spark-side-") as folder:
        local = Path(folder) / name
        local.write_text(rows[0][0] if rows else "", encoding="utf-8")
        yield local


def data_uri(data: str | Path) -> str:
    """A data path as Spark names it: a URI (`s3a://bucket/world`) as given, a local folder absolute.

    A command line's Path folds `s3a://bucket/x` into `s3a:/bucket/x`; a scheme followed by one slash is
    put back (so `hdfs:///x`, with no host, must be written `hdfs://namenode/x`).
    """
    text = str(data)
    folded = _FOLDED_URI_RE.fullmatch(text)
    if folded:
        text = f"{folded.group(1)}://{folded.group(2)}"
    if "://" in text:
        return text.rstrip("/")
    return Path(text).resolve().as_uri()


def _table_sql(name: str, source: dict[str, str], raw: str, q: Any) -> str:
    """SELECT over a table as read giving the contract's columns in contract types (extra columns as read).

    CSV columns arrive as text and are parsed (empty → NULL); Parquet ones are cast where the type allows.
    Timestamps are UTC (the session's zone), as DuckDB's views read them.
    """
    spec = TABLES[name]
    parts = []
    for column in spec.columns:
        target = _SPARK_TYPE[column.type]
        kind = source.get(column.name)
        x = q(column.name)
        if kind is None:
            expr = f"CAST(NULL AS {target})"
        elif kind == "string":
            expr = (
                f"CASE WHEN trim({x}) <> '' THEN {x} END"
                if column.type == "string"
                else f"TRY_CAST(NULLIF(trim({x}), '') AS {target})"
            )
        elif column.type == "string":
            expr = f"CAST({x} AS STRING)"
        elif column.type == "int" and kind.startswith(_FLOAT_SOURCES):
            expr = f"CASE WHEN {x} = round({x}) THEN TRY_CAST({x} AS BIGINT) END"
        elif column.type == "float":
            expr = (
                f"CASE WHEN CAST({x} AS DOUBLE) BETWEEN -{_MAX_DOUBLE} AND {_MAX_DOUBLE} "
                f"THEN CAST({x} AS DOUBLE) END"
            )
        else:
            expr = f"CAST({x} AS {target})"
        parts.append(f"{expr} AS {q(column.name)}")
    known = {column.name for column in spec.columns}
    parts.extend(q(name) for name in source if name not in known)
    return f"SELECT {', '.join(parts)} FROM {raw}"


@dataclass
class SparkData:
    """A data path opened in Spark: typed views of its tables on `sql`, and its small side files."""

    uri: str
    sql: SparkSql
    files: dict[str, str]

    @property
    def spark(self) -> SparkSession:
        return self.sql.spark

    def close(self) -> None:
        for name in self.spark.catalog.listTables():
            if name.isTemporary:
                self.spark.catalog.dropTempView(name.name)

    def __enter__(self) -> SparkData:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def date_range(self) -> tuple[date | None, date | None]:
        """(first, last) as `nba.contract.DataSource.date_range` defines them, computed on Spark."""
        parts = []
        for name, spec in TABLES.items():
            for column in spec.columns:
                if column.type in ("date", "timestamp"):
                    day = f"CAST({column.name} AS DATE)"
                    spend = "true" if name == "transactions" else "false"
                    parts.append(f"SELECT {spend} AS spend, min({day}) AS lo, max({day}) AS hi FROM {name}")
        first_spend, first_any, last = self.sql.rows(
            f"SELECT min(lo) FILTER (WHERE spend), min(lo), max(hi) FROM ({' UNION ALL '.join(parts)}) AS d"
        )[0]
        return first_spend or first_any, last

    def resolve_as_of(self, as_of: date | None) -> date:
        """The as-of a job uses, by `nba.contract.check_as_of`'s one rule."""
        first, last = self.date_range()
        return check_as_of(as_of, first, last, self.uri)

    @contextmanager
    def side_file(self, name: str) -> Iterator[Path | None]:
        """A small file beside the tables (`mcc_map.csv`, `catalog.yaml`): `copy_side_file`'s local copy."""
        with copy_side_file(self.spark, self.uri, name) as local:
            yield local

    def mcc_map(self) -> MccMap:
        """The shipped MCC map, patched by the data path's `mcc_map.csv` (read through Spark) if it has one."""
        with self.side_file(MCC_OVERRIDE_FILE) as override:
            return load_mcc_map(override)


def open_spark_data(spark: SparkSession, data: str | Path) -> SparkData:
    """Opens a data path as typed Spark views, one per contract table, in a session of their own.

    Raises DataError when Spark cannot read the path (no such folder, a file system it has no driver
    for) and SchemaError for a missing table or required column, or a table given as both CSV and Parquet.
    """
    uri = data_uri(data)
    if not path_exists(spark, uri):
        raise DataError(f"{uri}: Spark cannot read this path: it does not exist")
    session = spark.newSession()
    q = SPARK.quote_ident
    files: dict[str, str] = {}
    for name, spec in TABLES.items():
        found = [
            f"{uri}/{name}{suffix}"
            for suffix in (".csv", ".parquet")
            if path_exists(spark, f"{uri}/{name}{suffix}")
        ]
        if len(found) > 1:
            raise SchemaError(f"{uri}: both {name}.csv and {name}.parquet exist; keep one")
        raw = f"{_RAW_PREFIX}{name}"
        if not found:
            if not spec.optional:
                raise SchemaError(f"{uri}: table {name} is missing (expected {name}.csv or {name}.parquet)")
            empty = ", ".join(f"CAST(NULL AS {_SPARK_TYPE[c.type]}) AS {q(c.name)}" for c in spec.columns)
            session.sql(f"SELECT {empty} WHERE false").createOrReplaceTempView(name)
            continue
        files[name] = found[0]
        try:
            if found[0].endswith(".parquet"):
                frame = session.read.parquet(found[0])
            else:
                # The contract's CSV: a header line, RFC 4180 quoting ("" inside quotes), every column text.
                frame = session.read.csv(found[0], header=True, inferSchema=False, escape='"', multiLine=True)
        except Exception as exc:  # AnalysisException and friends: unreadable, not Parquet, ...
            raise DataError(f"{found[0]}: Spark cannot read it: {first_line(exc)}") from None
        source = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
        missing = [c.name for c in spec.required_columns if c.name not in source]
        if missing:
            raise SchemaError(
                f"{found[0].rsplit('/', 1)[-1]}: required column {missing[0]} is missing "
                f"(columns found: {', '.join(source) or 'none'})"
            )
        frame.createOrReplaceTempView(raw)
        session.sql(_table_sql(name, source, raw, q)).createOrReplaceTempView(name)
    return SparkData(uri, SparkSql(session), files)


@contextmanager
def open_engine(
    engine: str, data: str | Path, master: str | None = None, conf_file: Path | None = None
) -> Iterator[SparkData | None]:
    """The engine a command's `--engine`, `--spark-master` and `--spark-conf` ask for, over `data`:
    None for DuckDB (the job opens the data itself), else a Spark session with the data's views,
    stopped on exit unless it was running before.

    Raises DataError when Spark options come without `--engine spark`, and as `start_spark` and
    `open_spark_data` do.
    """
    from training.spark_session import running_spark, spark_settings, start_spark

    if engine != "spark":
        if master is not None or conf_file is not None:
            raise DataError("--spark-master and --spark-conf go with --engine spark")
        yield None
        return
    # A session this process runs already (a notebook's, a test run's) is used and left running.
    ours = running_spark() is None
    spark = start_spark(spark_settings(master, conf_file))
    try:
        with open_spark_data(spark, data) as opened:
            yield opened
    finally:
        if ours:
            spark.stop()
