"""Spark labels: a data path opened in Spark → the DuckDB side of `nba train --engine spark`, read through Spark.

`nba train --engine spark` sends its feature SQL (the transactions: the heavy part) to Spark. The rest of a
training run (labelled presentations, the benefit history of the labels, natural adoption, drift's newest
calls) reads the contract's other tables with DuckDB. Here those tables (cardholders, benefit usage,
conversations, calls, NPS: presentations, not transactions) are read through Spark's typed views, brought
back as Arrow and held as DuckDB tables, so any path Spark reads (a folder, `s3a://`, `hdfs://`) trains end
to end. `transactions` is a view that fails with one line if anything asks DuckDB for it: the spend is
Spark's to read, never an empty table quietly standing in for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from nba.contract import TABLES
from training.pairs import EngineData
from training.spark_data import SparkData

SPEND_TABLE: Final = "transactions"
_DUCKDB_TYPE: Final = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


@dataclass
class SparkLabels(EngineData):
    """The contract's tables but the transactions, read through Spark and held in DuckDB; the feature SQL
    runs on Spark (`feature_sql`). Its dates are the data's own, as Spark finds them in every table."""

    span: tuple[date | None, date | None] = field(default=(None, None))

    def date_range(self) -> tuple[date | None, date | None]:
        return self.span


def _naive_utc(table: pa.Table) -> pa.Table:
    """Spark's timestamps (instants, tagged UTC) as the naive UTC timestamps DuckDB's contract views hold."""
    fields = [
        pa.field(f.name, pa.timestamp(f.type.unit), nullable=True)
        if pa.types.is_timestamp(f.type) and f.type.tz is not None
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def open_spark_labels(spark: SparkData) -> SparkLabels:
    """The tables of `spark`'s data path but the transactions, as DuckDB tables (read through Spark once).

    Raises ComputeEngineError when a Spark job fails (one line), as `SparkSql.arrow` does.
    """
    con = duckdb.connect()
    for name, spec in TABLES.items():
        if name == SPEND_TABLE:
            columns = ", ".join(f"CAST(NULL AS {_DUCKDB_TYPE[c.type]}) AS {c.name}" for c in spec.columns)
            message = f"{spark.uri}: the transactions are read on Spark (--engine spark), not by this process"
            quoted = "'" + message.replace("'", "''") + "'"
            con.execute(f"CREATE VIEW {name} AS SELECT {columns} FROM range(1) WHERE error({quoted}) IS NULL")
            continue
        table = _naive_utc(spark.sql.arrow(f"SELECT * FROM {name}"))
        con.register("nba_spark_rows", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM nba_spark_rows")
        con.unregister("nba_spark_rows")
    return SparkLabels(Path(spark.uri), con, {}, feature_sql=spark.sql, span=spark.date_range())
