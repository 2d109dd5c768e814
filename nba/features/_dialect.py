"""Dialects: an engine's name → its spellings of the few expressions the feature SQL cannot write in one way.

The feature SQL (`_sql`) is one text for every engine. What DuckDB and Spark SQL spell differently lives
here and nowhere else: days between two dates, one set bit, rounding to cents, quoting a name, the text
type. Everything else in that SQL (CTEs, `FILTER (WHERE ...)`, CASE, window functions, `bit_or`,
`bit_count`, TRY_CAST, GREATEST, EXTRACT, date literals) both engines read alike.

`SqlEngine` is what the feature code runs its statements on: DuckDB's connection (`DuckDBSql`, here) or
a Spark session (training/spark_data.py, which imports PySpark; nba/ never does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal, Protocol

import duckdb
import pyarrow as pa

DialectName = Literal["duckdb", "spark"]

# Spark's snapshot ids (`Dialect.snapshot_id`): buckets of the key's hash, each numbering up to 2^32 rows.
_SNAPSHOT_BUCKETS: Final = 65_536
_BUCKET_STRIDE: Final = 4_294_967_296


@dataclass(frozen=True)
class Dialect:
    """One SQL engine's spellings. Use the two instances, `DUCKDB` and `SPARK`."""

    name: DialectName

    @property
    def text_type(self) -> str:
        """The unbounded text type: DuckDB's VARCHAR; Spark wants a length on VARCHAR, so STRING."""
        return "VARCHAR" if self.name == "duckdb" else "STRING"

    def days_between(self, later: str, earlier: str) -> str:
        """Whole days from `earlier` to `later` (two DATEs). DuckDB subtracts dates into days; Spark's
        `-` gives an interval, so datediff."""
        if self.name == "duckdb":
            return f"({later} - {earlier})"
        return f"datediff({later}, {earlier})"

    def bit(self, position: str) -> str:
        """An INTEGER with only bit `position` (0..30) set (Spark 4 has no `<<` on every build: shiftleft)."""
        if self.name == "duckdb":
            return f"(CAST(1 AS INTEGER) << CAST({position} AS INTEGER))"
        return f"shiftleft(CAST(1 AS INTEGER), CAST({position} AS INTEGER))"

    def round_cents(self, expr: str) -> str:
        """A DOUBLE rounded to cents as DuckDB's ROUND(x, 2) does it: round(x * 100) / 100, halves away
        from zero. Spark's ROUND(x, 2) rounds the shortest decimal text instead (1.005 → 1.01, DuckDB 1.0),
        so Spark spells out DuckDB's arithmetic; at scale 0 both agree bit for bit."""
        if self.name == "duckdb":
            return f"ROUND({expr}, 2)"
        return f"(ROUND(({expr}) * 100) / 100)"

    def bit_or(self, expr: str) -> str:
        """Aggregate OR of integer bit masks (DuckDB, Spark, BigQuery, PostgreSQL: bit_or)."""
        return f"bit_or({expr})"

    def bit_count(self, expr: str) -> str:
        """Set bits of an integer (DuckDB, Spark, BigQuery: bit_count)."""
        return f"bit_count({expr})"

    def snapshot_id(self, key: str, order: str) -> str:
        """A BIGINT numbering the distinct rows of a relation uniquely, `key` its grouping column and
        `order` a total order of its rows.

        DuckDB numbers them in one pass in `order` (`row_number() OVER (ORDER BY ...)`: dense, and the
        order the statement's rows come out in). Spark computes such a window in one partition, one task
        for every snapshot; it numbers the rows within 65,536 buckets of `key`'s hash instead, each
        bucket's rows from its own offset (bucket × 2^32), so the work spreads over as many tasks as
        there are buckets, and the ids stay unique and deterministic (the same in every CTE that reads
        them) but do not follow `order`: Spark's statements sort by `order` itself
        (`snapshot_order`)."""
        if self.name == "duckdb":
            return f"row_number() OVER (ORDER BY {order})"
        bucket = f"pmod(xxhash64({key}), {_SNAPSHOT_BUCKETS})"
        return f"({bucket} * {_BUCKET_STRIDE} + row_number() OVER (PARTITION BY {bucket} ORDER BY {order}))"

    def snapshot_order(self, snap_id: str, order: str) -> str:
        """What sorts rows numbered by `snapshot_id` into `order`: in DuckDB the id itself (an integer
        sorts cheaper than a text and a date), in Spark `order` (its ids are not in that order)."""
        return snap_id if self.name == "duckdb" else order

    def date_literal(self, day: date) -> str:
        return f"DATE '{day.isoformat()}'"

    def quote_ident(self, name: str) -> str:
        """A name, quoted so any column name is safe: "x" in DuckDB (ANSI), `x` in Spark."""
        if self.name == "duckdb":
            return '"' + name.replace('"', '""') + '"'
        return "`" + name.replace("`", "``") + "`"


DUCKDB: Final = Dialect("duckdb")
SPARK: Final = Dialect("spark")


class SqlEngine(Protocol):
    """Where the feature SQL runs: statements in `dialect` over the contract's typed views."""

    @property
    def dialect(self) -> Dialect: ...

    def arrow(self, sql: str) -> pa.Table:
        """The rows of a query as an Arrow table (text as `string`, every field nullable)."""
        ...

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a (small) query as tuples."""
        ...

    def column_names(self, relation: str) -> tuple[str, ...]:
        """The columns of a view or table, in order."""
        ...

    def register(self, name: str, table: pa.Table) -> None:
        """Makes an Arrow table queryable as `name` (a view over it) until `unregister(name)`."""
        ...

    def unregister(self, name: str) -> None: ...

    def materialize(self, name: str, table: pa.Table) -> None:
        """Makes a small Arrow table a table of the engine's own, `name`, until `drop(name)`."""
        ...

    def drop(self, name: str) -> None: ...


class DuckDBSql:
    """`SqlEngine` over a DuckDB connection (the default engine: in process, out of core)."""

    dialect: Final = DUCKDB

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def arrow(self, sql: str) -> pa.Table:
        table: pa.Table = self.con.sql(sql).to_arrow_table()
        return table

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.con.execute(sql).fetchall()]

    def column_names(self, relation: str) -> tuple[str, ...]:
        return tuple(str(row[0]) for row in self.con.execute(f"DESCRIBE {relation}").fetchall())

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def materialize(self, name: str, table: pa.Table) -> None:
        # A DuckDB table, not a registered Arrow one: with an Arrow scan in its plan DuckDB cannot estimate
        # a statement's progress (`query_progress` stays at 0), and the feature SQL is the longest of a run.
        staging = f"{name}_arrow"
        self.con.register(staging, table)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {staging}")
        finally:
            self.con.unregister(staging)

    def drop(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")


def as_sql_engine(con: duckdb.DuckDBPyConnection | SqlEngine) -> SqlEngine:
    """A DuckDB connection wrapped as an `SqlEngine`; an engine as it is."""
    if isinstance(con, duckdb.DuckDBPyConnection):
        return DuckDBSql(con)
    return con
