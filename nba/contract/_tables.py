"""Tables: a data directory's CSV/Parquet files → typed DuckDB views in the data contract's shape."""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import duckdb

from nba.errors import DataError, Problem, SchemaError, ValidationError
from nba.vocab import CALL_REASONS, LOGGED_OUTCOMES

# Where DuckDB spills what does not fit in memory (DuckDB's default is a relative `.tmp`).
SPILL_DIR: Final = Path(tempfile.gettempdir()) / "nba-duckdb-spill"

ValueType = Literal["string", "int", "float", "date", "timestamp"]
_SQL_TYPE: Final[dict[str, str]] = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
_TYPE_WORDS: Final[dict[str, str]] = {
    "string": "text",
    "int": "a whole number",
    "float": "a finite number",
    "date": "a date in YYYY-MM-DD form",
    "timestamp": "an ISO 8601 timestamp",
}


@dataclass(frozen=True)
class Column:
    """One column of the contract: its type, whether it must exist, and the values it allows."""

    name: str
    type: ValueType
    required: bool = True
    choices: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    # A low bound that is excluded (logging_prob is a probability > 0).
    min_exclusive: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract."""

    name: str
    columns: tuple[Column, ...]
    optional: bool = False
    unique: tuple[tuple[str, ...], ...] = ()

    @property
    def required_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


_ID: Final = "string"
TABLES: Final[dict[str, TableSpec]] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "cardholders",
            (
                Column("cardholder_id", _ID),
                Column("product_id", _ID),
                Column("open_date", "date"),
                Column("birth_year", "int", required=False, min_value=1900, max_value=2100),
                Column("region", "string", required=False),
                Column("segment", "string", required=False),
            ),
            unique=(("cardholder_id",),),
        ),
        TableSpec(
            "transactions",
            (
                Column("cardholder_id", _ID),
                Column("transaction_date", "date"),
                Column("amount", "float"),
                Column("mcc", "int", min_value=0, max_value=9999),
                Column("transaction_id", "string", required=False),
                Column("merchant_name", "string", required=False),
            ),
        ),
        TableSpec(
            "benefit_usage",
            (Column("cardholder_id", _ID), Column("benefit_id", _ID), Column("first_used_date", "date")),
            unique=(("cardholder_id", "benefit_id"),),
        ),
        TableSpec(
            "conversations",
            (
                Column("call_id", _ID),
                Column("cardholder_id", _ID),
                Column("benefit_id", _ID),
                Column("presented_at", "timestamp"),
                Column("outcome", "string", choices=LOGGED_OUTCOMES),
                Column("agent_id", "string", required=False),
                Column("rank", "int", required=False, min_value=1, max_value=100),
                Column("call_reason", "string", required=False, choices=CALL_REASONS),
                Column("logging_prob", "float", required=False, min_value=0, max_value=1, min_exclusive=True),
            ),
            unique=(("call_id", "benefit_id"),),
        ),
        TableSpec(
            "calls",
            (
                Column("call_id", _ID),
                Column("cardholder_id", _ID),
                Column("started_at", "timestamp"),
                Column("call_reason", "string", required=False, choices=CALL_REASONS),
                Column("agent_id", "string", required=False),
            ),
            optional=True,
            unique=(("call_id",),),
        ),
        TableSpec(
            "nps",
            (
                Column("call_id", _ID),
                Column("score", "int", min_value=0, max_value=10),
                Column("responded_at", "timestamp", required=False),
            ),
            unique=(("call_id",),),
        ),
    )
}
TABLE_SUFFIXES: Final = (".csv", ".parquet")

# Source types that hold a column's values without loss.
_INT_SQL: Final = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"})
_FLOAT_SQL: Final = frozenset({"FLOAT", "DOUBLE", "REAL"})
_TIMESTAMP_SQL: Final = frozenset(
    {"TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMP WITH TIME ZONE", "DATE"}
)
_DATE_RE: Final = r"\d{4}-\d{2}-\d{2}"
_TIMESTAMP_RE: Final = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?"


@dataclass(frozen=True)
class TableFile:
    """Where a table lives and the columns (with DuckDB types) its file has."""

    spec: TableSpec
    path: Path
    source_types: dict[str, str] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def extra_columns(self) -> tuple[str, ...]:
        known = {c.name for c in self.spec.columns}
        return tuple(name for name in self.source_types if name not in known)

    def scan_sql(self, skip_rejected: str | None = None) -> str:
        """SQL that reads the file as it is, with `__row`, the 1-based data row number.

        `skip_rejected` (CSV only) names the table `reject_malformed_lines` filled: the lines it set
        aside are skipped and the other rows keep their row numbers in the file.
        """
        path = _sql_string(str(self.path))
        if self.path.suffix == ".parquet":
            return f"SELECT file_row_number + 1 AS __row, * EXCLUDE (file_row_number) FROM read_parquet({path}, file_row_number = true)"
        if skip_rejected is None:
            return f"SELECT row_number() OVER () AS __row, * FROM {self.read_csv_sql()}"
        # The k-th row read is row k + (how many set-aside rows come before it) of the file; set-aside
        # row r_i (the i-th, 1-based) comes before it when the r_i - i rows read before r_i are < k.
        return (
            f"SELECT __k + (SELECT count(*) FROM {skip_rejected} WHERE data_row - position < __k) AS __row, "
            f"* EXCLUDE (__k) FROM (SELECT row_number() OVER () AS __k, * FROM "
            f"{self.read_csv_sql('ignore_errors = true')})"
        )

    def read_csv_sql(self, extra: str = "") -> str:
        """DuckDB's read_csv over the file as the contract reads it: every column text, strict; `extra` options."""
        columns = ", ".join(f"{_sql_string(name)}: 'VARCHAR'" for name in self.source_types)
        return (
            f"read_csv({_sql_string(str(self.path))}, header = true, auto_detect = false, delim = ',', "
            f"quote = '\"', escape = '\"', strict_mode = true, null_padding = false, "
            f"columns = {{{columns}}}{', ' + extra if extra else ''})"
        )


def reject_malformed_lines(con: duckdb.DuckDBPyConnection, table: TableFile, name: str) -> list[Problem]:
    """Reads a CSV file once, setting aside the lines DuckDB cannot read as rows of the table (too few or
    too many columns, an unterminated quote), so that the rest of the file can still be checked.

    Writes the set-aside data rows into the temp table `name` (`data_row`, `position`) for
    `TableFile.scan_sql(skip_rejected=name)` and returns one problem per set-aside line.
    """
    rejects, scans = f"{name}_errors", f"{name}_scans"
    con.execute(
        f"SELECT count(*) FROM "
        f"{table.read_csv_sql(f'store_rejects = true, rejects_table = {_sql_string(rejects)}, rejects_scan = {_sql_string(scans)}')}"
    ).fetchall()
    lines = con.execute(
        f"SELECT line, arg_min(error_type, column_idx), arg_min(error_message, column_idx), "
        f"arg_min(csv_line, column_idx) FROM {rejects} GROUP BY line ORDER BY line"
    ).fetchall()
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT line - 1 AS data_row, "
        f"row_number() OVER (ORDER BY line) AS position FROM (SELECT DISTINCT line FROM {rejects})"
    )
    problems = []
    for line, error_type, message, text in lines:
        if error_type in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
            found = len(next(csv.reader([text]), []))
            what = f"expected {len(table.source_types)} columns, found {found}"
        else:
            what = str(message).strip().splitlines()[0]
        problems.append(Problem(table.file_name, f"line {line}: {what}"))
    return problems


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def query_one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The first row of a query that returns exactly one (an aggregate), with the result fully consumed."""
    rows = con.execute(sql).fetchall()
    return tuple(rows[0])


def quote_ident(name: str) -> str:
    """A SQL identifier, quoted so any column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def find_table_file(data_dir: Path, name: str) -> Path | None:
    """The file holding table `name` in `data_dir` (NAME.csv or NAME.parquet), or None.

    Raises SchemaError when both exist: which one is meant would be a guess.
    """
    found = [
        data_dir / f"{name}{suffix}" for suffix in TABLE_SUFFIXES if (data_dir / f"{name}{suffix}").exists()
    ]
    if len(found) > 1:
        raise SchemaError(f"{data_dir}: both {found[0].name} and {found[1].name} exist; keep one")
    return found[0] if found else None


def _read_csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        try:
            return next(csv.reader(handle))
        except StopIteration:
            raise SchemaError(f"{path.name}: the file is empty; it needs at least a header line") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SchemaError(f"{path.name}, line 1: the header cannot be read ({exc})") from None


def describe_table_file(con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path) -> TableFile:
    """Reads a table file's column names and types without reading its rows."""
    if path.suffix == ".csv":
        header = _read_csv_header(path)
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise SchemaError(f"{path.name}, line 1: column {duplicated[0]} appears more than once")
        return TableFile(spec, path, {name: "VARCHAR" for name in header})
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_sql_string(str(path))})").fetchall()
    except duckdb.Error as exc:
        raise SchemaError(f"{path.name}: not a readable Parquet file ({_first_line(exc)})") from None
    return TableFile(spec, path, {str(row[0]): str(row[1]) for row in rows})


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def csv_error_problem(file_name: str, exc: duckdb.Error) -> Problem:
    """Turns DuckDB's multi-line CSV error into one problem naming the line."""
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    columns = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if line and columns:
        expected, found = columns.groups()
        return Problem(file_name, f"line {line.group(1)}: expected {expected} columns, found {found}")
    if line:
        lines = [part.strip() for part in text.splitlines()[1:] if part.strip()]
        detail = next((part for part in lines if not part.startswith("Original Line")), "malformed line")
        return Problem(file_name, f"line {line.group(1)}: {detail}")
    return Problem(file_name, f"the file cannot be read as CSV ({_first_line(exc)})")


@dataclass(frozen=True)
class ParsedColumn:
    """SQL for one contract column: the typed value (NULL when absent or unparsable) and the raw text."""

    column: Column
    typed_sql: str
    text_sql: str
    present: bool
    type_problem: str | None = None

    @property
    def parse_failed_sql(self) -> str:
        return f"({self.text_sql} IS NOT NULL AND {self.typed_sql} IS NULL)"


def parse_column(table: TableFile, column: Column) -> ParsedColumn:
    """Builds the SQL that turns a column of the file into its contract type, without coercing.

    Integers must be written as integers (a float column is accepted when every value is whole),
    dates as YYYY-MM-DD, timestamps as ISO 8601 (naive ones are UTC; offsets are converted to UTC).
    """
    target = _SQL_TYPE[column.type]
    source = table.source_types.get(column.name)
    if source is None:
        return ParsedColumn(column, f"CAST(NULL AS {target})", "CAST(NULL AS VARCHAR)", present=False)
    ident = quote_ident(column.name)
    text = f"CAST({ident} AS VARCHAR)"
    base = source.split("(")[0]
    typed: str | None = None
    if base == "VARCHAR":
        typed = _parse_text(ident, column.type)
    elif column.type == "string" and base in _INT_SQL:
        typed = text
    elif column.type == "int" and base in _INT_SQL:
        typed = f"CAST({ident} AS BIGINT)"
    elif column.type == "int" and (base in _FLOAT_SQL or base == "DECIMAL"):
        typed = f"CASE WHEN {ident} = round({ident}) THEN TRY_CAST({ident} AS BIGINT) END"
    elif column.type == "float" and (base in _INT_SQL or base in _FLOAT_SQL or base == "DECIMAL"):
        typed = f"CASE WHEN isfinite(CAST({ident} AS DOUBLE)) THEN CAST({ident} AS DOUBLE) END"
    elif column.type == "date" and base == "DATE":
        typed = ident
    elif column.type == "timestamp" and base in _TIMESTAMP_SQL:
        typed = f"CAST({ident} AS TIMESTAMP)"
    if typed is None:
        problem = f"has type {source}; the contract says {_TYPE_WORDS[column.type]}"
        return ParsedColumn(column, f"CAST(NULL AS {target})", text, present=True, type_problem=problem)
    return ParsedColumn(column, typed, text, present=True)


def _parse_text(ident: str, value_type: ValueType) -> str:
    trimmed = f"trim({ident})"
    if value_type == "string":
        return f"CASE WHEN {trimmed} <> '' THEN {ident} END"
    if value_type == "int":
        return f"CASE WHEN regexp_full_match({trimmed}, '[+-]?[0-9]{{1,18}}') THEN TRY_CAST({trimmed} AS BIGINT) END"
    if value_type == "float":
        cast = f"TRY_CAST({trimmed} AS DOUBLE)"
        number = "'[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?'"
        return f"CASE WHEN regexp_full_match({trimmed}, {number}) AND isfinite({cast}) THEN {cast} END"
    if value_type == "date":
        return f"CASE WHEN regexp_full_match({trimmed}, '{_DATE_RE}') THEN TRY_CAST({trimmed} AS DATE) END"
    cast = f"CAST(TRY_CAST({trimmed} AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"CASE WHEN regexp_full_match({trimmed}, '{_TIMESTAMP_RE}') THEN {cast} END"


def typed_select_sql(table: TableFile, *, with_row: bool = False) -> str:
    """SELECT that yields the table in contract types (absent optional columns as NULL), extra columns as read."""
    parts = ["__row"] if with_row else []
    for column in table.spec.columns:
        parts.append(f"{parse_column(table, column).typed_sql} AS {quote_ident(column.name)}")
    parts.extend(quote_ident(name) for name in table.extra_columns)
    return f"SELECT {', '.join(parts)} FROM ({table.scan_sql()})"


def empty_select_sql(spec: TableSpec) -> str:
    """SELECT that yields no rows with the table's contract columns and types (a table not given)."""
    parts = [f"CAST(NULL AS {_SQL_TYPE[c.type]}) AS {quote_ident(c.name)}" for c in spec.columns]
    return f"SELECT {', '.join(parts)} WHERE false"


@dataclass
class DataSource:
    """A DuckDB connection with one typed view per contract table of a data directory.

    Views are named after the tables (`cardholders`, `transactions`, ...) and read the files lazily,
    so queries over them run out of core. Build one with `open_data`.
    """

    data_dir: Path
    con: duckdb.DuckDBPyConnection
    files: dict[str, TableFile]

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> DataSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def row_count(self, table: str) -> int:
        return int(query_one(self.con, f"SELECT count(*) FROM {quote_ident(table)}")[0])

    def latest_date(self) -> date | None:
        """The latest date or timestamp (as a UTC calendar date) in any table, or None if all are empty."""
        return self.date_range()[1]

    def date_range(self) -> tuple[date | None, date | None]:
        """The data's first date (of its transactions: every feature rests on spend; of any table when
        there are none) and its latest date or timestamp in any table, as UTC calendar dates; (None,
        None) when every table is empty."""
        return first_and_last_dates(
            self.con, {name: (spec, name) for name, spec in TABLES.items()}, quote_ident
        )

    def resolve_as_of(self, as_of: date | None) -> date:
        """The as-of a job uses: `as_of` checked against the data's dates, or the day after the latest.

        Raises DataError as `check_as_of` does.
        """
        first, last = self.date_range()
        return check_as_of(as_of, first, last, str(self.data_dir))


def first_and_last_dates(
    con: duckdb.DuckDBPyConnection,
    tables: dict[str, tuple[TableSpec, str]],
    column_sql: Callable[[str], str],
) -> tuple[date | None, date | None]:
    """(first, last) as `DataSource.date_range` defines them, over `tables` (name → its spec and the
    relation to read) with each column read as `column_sql(column name)`."""
    parts = []
    for name, (spec, relation) in tables.items():
        for column in spec.columns:
            if column.type in ("date", "timestamp"):
                day = f"CAST({column_sql(column.name)} AS DATE)"
                spend = "true" if name == "transactions" else "false"
                parts.append(f"SELECT {spend} AS spend, min({day}) AS lo, max({day}) AS hi FROM {relation}")
    if not parts:
        return None, None
    first_spend, first_any, last = query_one(
        con, f"SELECT min(lo) FILTER (spend), min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})"
    )
    return first_spend or first_any, last


def check_as_of(as_of: date | None, first: date | None, last: date | None, source: str) -> date:
    """The one meaning of `--as-of D` everywhere: use only data dated strictly before D.

    Takes the requested as-of (None: the day after `last`), the earliest and latest date in the data
    (None when it has no dated rows; see `DataSource.date_range`) and the data's name for the message.
    D must leave some data before it (D after `first`) and no gap of days without data (D at most the
    day after `last`).
    Returns the as-of to use; raises DataError in one line otherwise.

    Example:
        >>> check_as_of(date(2030, 1, 1), date(2025, 1, 1), date(2026, 9, 30), "data")
        Traceback (most recent call last):
        DataError: --as-of 2030-01-01 is after 2026-10-01, the day after the last date in data (2026-09-30) ...
    """
    if first is None or last is None:
        raise DataError(f"{source}: no dated rows at all, so there is no data before any as-of date")
    day_after = last + timedelta(days=1)
    if as_of is None:
        return day_after
    if as_of <= first:
        raise DataError(
            f"--as-of {as_of} is not after the first date in {source} ({first}): no spend is dated "
            f"before it; use a day from {first + timedelta(days=1)} to {day_after}"
        )
    if as_of > day_after:
        raise DataError(
            f"--as-of {as_of} is after {day_after}, the day after the last date in {source} ({last}): "
            f"the days between hold no data; use a day from {first + timedelta(days=1)} to {day_after}"
        )
    return as_of


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask: taskset, a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up the way every nba job uses it.

    Larger-than-memory work spills under the system temp folder (`SPILL_DIR`), not into a `.tmp`
    folder wherever the command happens to run (DuckDB's default). `threads` defaults to the CPUs
    the process may use (`usable_cpus`).
    """
    config: dict[str, str | bool | int | float | list[str]] = {
        "preserve_insertion_order": True,
        "temp_directory": str(SPILL_DIR),
        # DuckDB sizes its pool by the machine's cores, not by the CPUs this process may run on: under
        # taskset or a container's cpuset the extra threads only take turns on the same CPUs. Pinned to
        # one of two cores, a statement over a small CSV file took ~2.2 ms of CPU with two threads and
        # ~1.6 ms with one; the validation, feature, insights and drift tests ~7% less CPU in all.
        "threads": threads if threads is not None else usable_cpus(),
    }
    return duckdb.connect(config=config)


def locate_tables(
    con: duckdb.DuckDBPyConnection, data_dir: Path
) -> tuple[dict[str, TableFile], list[Problem]]:
    """Finds and describes each contract table's file; problems for missing tables and columns."""
    files: dict[str, TableFile] = {}
    problems: list[Problem] = []
    if not data_dir.is_dir():
        raise SchemaError(f"{data_dir}: not a directory")
    for spec in TABLES.values():
        try:
            path = find_table_file(data_dir, spec.name)
            if path is None:
                if not spec.optional:
                    problems.append(
                        Problem(f"{spec.name}.csv", "table is missing (expected NAME.csv or NAME.parquet)")
                    )
                continue
            table = describe_table_file(con, spec, path)
        except SchemaError as exc:
            problems.append(Problem(str(data_dir.name), str(exc)))
            continue
        missing = [c.name for c in spec.required_columns if c.name not in table.source_types]
        for name in missing:
            found = ", ".join(table.source_types) or "none"
            problems.append(
                Problem(table.file_name, f"required column is missing (columns found: {found})", column=name)
            )
        if not missing:
            files[spec.name] = table
    return files, problems


def open_data(data_dir: Path, threads: int | None = None) -> DataSource:
    """Opens a data directory as typed DuckDB views, one per contract table.

    This checks that the tables and required columns exist, not the values: run
    `nba.contract._validation.validate_data` for that before trusting the numbers.

    Raises ValidationError naming every missing table or column.
    """
    con = connect(threads)
    files, problems = locate_tables(con, data_dir)
    if problems:
        con.close()
        raise ValidationError(problems, len(problems))
    for spec in TABLES.values():
        sql = typed_select_sql(files[spec.name]) if spec.name in files else empty_select_sql(spec)
        con.execute(f"CREATE VIEW {quote_ident(spec.name)} AS {sql}")
    return DataSource(data_dir, con, files)
