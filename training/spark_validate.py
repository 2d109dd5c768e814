"""Validation on Spark: a data directory → the contract's problems counted per kind, with the first examples.

`nba validate --engine spark`. The checks of `nba.contract`'s validation (a required value missing, a value
that does not parse as its contract type, outside its range, not one of its choices, a duplicate key, an id
that its table or the catalog does not know), written as Spark SQL over the tables as Spark reads them.
Only counts and a few example rows ever reach the driver: one aggregation per table counts every value
check, and each duplicate and reference check is one count plus a LIMIT for its examples.

Where a problem is: a Parquet row is its 1-based row index in the file (Spark's `_metadata.row_index`,
as local `nba validate` numbers rows); Spark keeps no line numbers for CSV, so a CSV example carries the
record itself (its fields joined by commas, as read).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from nba.contract import TABLES, TYPE_WORDS, catalog_for, check_as_of, load_catalog, value_checks
from nba.errors import DataError, ValidationError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EXAMPLES_PER_KIND: Final = 3
_ROW: Final = "__row"
_RECORD: Final = "__record"
_LATER: Final = "__later"
_DATE_RE: Final = r"\d{4}-\d{2}-\d{2}"
_TIMESTAMP_RE: Final = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?"
_INT_RE: Final = r"[+-]?[0-9]{1,18}"
_NUMBER_RE: Final = r"[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?"
_SPARK_TYPE: Final = {
    "string": "STRING",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
_INTEGRAL: Final = ("tinyint", "smallint", "int", "bigint")
_FRACTIONAL: Final = ("float", "double")


@dataclass(frozen=True)
class Example:
    """One row with the problem: its Parquet row number, or for CSV the record; the value when it has one."""

    row: int | None
    value: str | None
    record: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else f"record {self.record!r}"
        return where + ("" if self.value is None else f" ({self.value!r})")


@dataclass(frozen=True)
class ProblemKind:
    """Every row with one kind of problem: where (file, column), what (message), how many, the first few."""

    file: str
    column: str | None
    message: str
    count: int
    examples: tuple[Example, ...] = ()

    def __str__(self) -> str:
        where = self.file + (f", column {self.column}" if self.column else "")
        shown = "; ".join(str(e) for e in self.examples)
        rows = f"{self.count:,} row{'s' if self.count != 1 else ''}" if self.examples else ""
        return f"{where}: {self.message}" + (f": {rows}, e.g. {shown}" if rows else "")


@dataclass(frozen=True)
class SparkValidation:
    """The kinds of problem found and the rows read per table file."""

    kinds: list[ProblemKind]
    rows: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.kinds


@dataclass(frozen=True)
class _Check:
    column: str
    condition: str
    message: str
    show_value: bool = True


@dataclass
class _Table:
    name: str
    file: str
    frame: DataFrame
    csv: bool


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _pattern(regex: str) -> str:
    """A whole-value regex as a Spark SQL string literal (a backslash there escapes, so it is doubled)."""
    return "'^" + regex.replace("\\", "\\\\") + "$'"


def _typed_sql(column: Any, source: str) -> str | None:
    """Spark SQL turning a file's column (Spark type `source`) into its contract type, without coercing;
    None when the type cannot hold it (the rules of `nba.contract`'s `parse_column`)."""
    ident, kind = _quote(column.name), column.type
    trimmed = f"trim({ident})"
    if source == "string":
        if kind == "string":
            return f"CASE WHEN {trimmed} <> '' THEN {ident} END"
        if kind == "int":
            return f"CASE WHEN {trimmed} RLIKE {_pattern(_INT_RE)} THEN try_cast({trimmed} AS BIGINT) END"
        if kind == "float":
            cast = f"try_cast({trimmed} AS DOUBLE)"
            finite = f"NOT isnan({cast}) AND abs({cast}) < double('Infinity')"
            return f"CASE WHEN {trimmed} RLIKE {_pattern(_NUMBER_RE)} AND {finite} THEN {cast} END"
        if kind == "date":
            return f"CASE WHEN {trimmed} RLIKE {_pattern(_DATE_RE)} THEN try_cast({trimmed} AS DATE) END"
        return (
            f"CASE WHEN {trimmed} RLIKE {_pattern(_TIMESTAMP_RE)} THEN try_cast({trimmed} AS TIMESTAMP) END"
        )
    base = source.split("(")[0]
    if kind == "string" and base in _INTEGRAL:
        return f"CAST({ident} AS STRING)"
    if kind == "int" and base in _INTEGRAL:
        return f"CAST({ident} AS BIGINT)"
    if kind == "int" and (base in _FRACTIONAL or base == "decimal"):
        return f"CASE WHEN {ident} = round({ident}) THEN try_cast({ident} AS BIGINT) END"
    if kind == "float" and (base in _INTEGRAL or base in _FRACTIONAL or base == "decimal"):
        as_double = f"CAST({ident} AS DOUBLE)"
        return (
            f"CASE WHEN NOT isnan({as_double}) AND abs({as_double}) < double('Infinity') THEN {as_double} END"
        )
    if kind == "date" and base == "date":
        return ident
    if kind == "timestamp" and base in ("timestamp", "timestamp_ntz", "date"):
        return f"CAST({ident} AS TIMESTAMP)"
    return None


def _value_checks(column: Any, typed: str, text: str) -> list[_Check]:
    """The checks of one present column: `nba validate`'s own (`nba.contract.value_checks`)."""
    return [
        _Check(c.column.name, c.condition_sql, c.message, c.show_value)
        for c in value_checks(column, typed, text)
    ]


def _read(session: SparkSession, data_dir: Path, spec: Any) -> _Table | None:
    for suffix in (".parquet", ".csv"):
        path = data_dir / f"{spec.name}{suffix}"
        if not path.exists():
            continue
        if suffix == ".parquet":
            frame = session.read.parquet(str(path))
            frame = frame.selectExpr(
                "*", f"_metadata.row_index + 1 AS {_ROW}", f"CAST(NULL AS STRING) AS {_RECORD}"
            )
        else:
            # Every field as text, as the contract reads CSV; an empty field is NULL (missing), as in DuckDB.
            frame = session.read.options(header=True, inferSchema=False, mode="PERMISSIVE").csv(str(path))
            fields = ", ".join(f"coalesce({_quote(c)}, '')" for c in frame.columns)
            frame = frame.selectExpr(
                "*", f"CAST(NULL AS BIGINT) AS {_ROW}", f"concat_ws(',', {fields}) AS {_RECORD}"
            )
        return _Table(spec.name, path.name, frame, suffix == ".csv")
    return None


def _examples(frame: DataFrame, condition: str, value_sql: str | None, room: int) -> tuple[Example, ...]:
    if room <= 0:
        return ()
    value = value_sql or "CAST(NULL AS STRING)"
    rows = (
        frame.where(condition)
        .selectExpr(_ROW, _RECORD, f"CAST({value} AS STRING) AS value")
        .orderBy(_ROW)
        .limit(room)
        .collect()
    )
    return tuple(Example(row[_ROW], row["value"], row[_RECORD]) for row in rows)


def validate_on_spark(
    session: SparkSession,
    data_dir: Path,
    as_of: date | None = None,
    catalog_path: Path | None = None,
    examples: int = EXAMPLES_PER_KIND,
) -> SparkValidation:
    """Checks a data directory on Spark; returns the problem kinds (none: the data is valid).

    Raises DataError (one line) for an as-of that leaves no data before it, as local validation does.
    """
    kinds: list[ProblemKind] = []
    try:
        catalog = load_catalog(catalog_path or catalog_for(data_dir))
    except ValidationError as exc:
        catalog = None
        kinds.extend(ProblemKind(p.file, p.column, p.message, 1) for p in exc.problems)
    except DataError as exc:
        catalog = None
        kinds.append(ProblemKind("catalog.yaml", None, str(exc), 1))
    tables: dict[str, _Table] = {}
    for spec in TABLES.values():
        table = _read(session, data_dir, spec)
        if table is None:
            if not spec.optional:
                kinds.append(
                    ProblemKind(
                        f"{spec.name}.csv", None, "table is missing (expected NAME.csv or NAME.parquet)", 1
                    )
                )
            continue
        found = [c for c in table.frame.columns if c not in (_ROW, _RECORD)]
        missing = [c.name for c in spec.required_columns if c.name not in found]
        for name in missing:
            message = f"required column is missing (columns found: {', '.join(found) or 'none'})"
            kinds.append(ProblemKind(table.file, name, message, 1))
        if not missing:
            tables[spec.name] = table
    checks_by_table = {name: _typed_frame(table, kinds) for name, table in tables.items()}
    _mark_later(tables, as_of)
    rows: dict[str, int] = {}
    spans: list[tuple[bool, date | None, date | None]] = []
    for name, table in tables.items():
        checks = checks_by_table[name]
        # One pass per table: every value check's count, the rows, and each date column's first and last day.
        days = [
            f"CAST({_quote('t:' + c.name)} AS DATE)"
            for c in TABLES[name].columns
            if c.type in ("date", "timestamp")
        ]
        counts_sql = [f"count_if({c.condition} AND NOT {_LATER})" for c in checks]
        span_sql = [f"{f}({day})" for day in days for f in ("min", "max")]
        counted = table.frame.selectExpr(*counts_sql, "count(*)", *span_sql).collect()[0]
        rows[table.file] = int(counted[len(checks)])
        found = counted[len(checks) + 1 :]
        spans += [(name == "transactions", found[i], found[i + 1]) for i in range(0, len(found), 2)]
        for check, count in zip(checks, counted[: len(checks)], strict=True):
            if count:
                text = f"`r:{check.column}`" if check.show_value else None
                shown = _examples(table.frame, f"{check.condition} AND NOT {_LATER}", text, examples)
                kinds.append(ProblemKind(table.file, check.column, check.message, int(count), shown))
        kinds.extend(_duplicates(table, examples))
    _check_as_of(spans, as_of, str(data_dir))
    kinds.extend(_references(session, tables, catalog, examples))
    return SparkValidation(kinds, rows)


def _typed_frame(table: _Table, kinds: list[ProblemKind]) -> list[_Check]:
    """Adds `t:NAME` (typed) and `r:NAME` (text) per contract column to the table's frame; its checks."""
    spec = TABLES[table.name]
    source = {field.name: field.dataType.simpleString() for field in table.frame.schema.fields}
    parts = ["*"]
    checks: list[_Check] = []
    for column in spec.columns:
        typed_name, text_name = _quote(f"t:{column.name}"), _quote(f"r:{column.name}")
        if column.name not in source:
            parts += [
                f"CAST(NULL AS {_SPARK_TYPE[column.type]}) AS {typed_name}",
                f"CAST(NULL AS STRING) AS {text_name}",
            ]
            continue
        typed = _typed_sql(column, source[column.name])
        parts.append(f"CAST({_quote(column.name)} AS STRING) AS {text_name}")
        if typed is None:
            message = f"has type {source[column.name]}; the contract says {TYPE_WORDS[column.type]}"
            kinds.append(ProblemKind(table.file, column.name, message, 1))
            parts.append(f"CAST(NULL AS {_SPARK_TYPE[column.type]}) AS {typed_name}")
            continue
        parts.append(f"{typed} AS {typed_name}")
        checks.extend(_value_checks(column, typed_name, text_name))
    table.frame = table.frame.selectExpr(*parts)
    return checks


def _mark_later(tables: dict[str, _Table], as_of: date | None) -> None:
    """`__later`: the row is dated on or after `as_of` (not checked: no job uses it as of then)."""
    for name, table in tables.items():
        dated = [
            f"CAST({_quote('t:' + c.name)} AS DATE) >= DATE '{as_of.isoformat()}'"
            for c in TABLES[name].columns
            if as_of is not None and c.type in ("date", "timestamp")
        ]
        later = f"coalesce({' OR '.join(dated)}, false)" if dated else "false"
        table.frame = table.frame.selectExpr("*", f"{later} AS {_LATER}")


def _check_as_of(spans: list[tuple[bool, date | None, date | None]], as_of: date | None, source: str) -> None:
    """Refuses an as-of as local validation does (`check_as_of`), from each date column's (is it spend,
    first day, last day): the first day is the first spend's when there is any."""
    firsts = [lo for spend, lo, _ in spans if spend and lo is not None] or [lo for _, lo, _ in spans if lo]
    lasts = [hi for _, _, hi in spans if hi is not None]
    if as_of is not None or lasts:
        check_as_of(as_of, min(firsts) if firsts else None, max(lasts) if lasts else None, source)


def _duplicates(table: _Table, examples: int) -> Iterator[ProblemKind]:
    from pyspark.sql import functions as F

    for key in TABLES[table.name].unique:
        typed = [f"t:{name}" for name in key]
        rows = table.frame.where(
            " AND ".join([*(f"{_quote(t)} IS NOT NULL" for t in typed), f"NOT {_LATER}"])
        )
        groups = (
            rows.groupBy(*typed).agg(F.count("*").alias("n"), F.min(_ROW).alias("first_row")).where("n > 1")
        )
        total = groups.agg(F.sum(F.col("n") - 1)).collect()[0][0]
        if not total:
            continue
        shown = tuple(
            Example(row["first_row"], ", ".join(str(row[t]) for t in typed))
            for row in groups.orderBy("first_row").limit(examples).collect()
        )
        yield ProblemKind(table.file, ", ".join(key), f"duplicate {' and '.join(key)}", int(total), shown)


def _references(
    session: SparkSession, tables: dict[str, _Table], catalog: Any, examples: int
) -> Iterator[ProblemKind]:
    """Ids their table or the catalog does not know: a left anti join each, counted, a few examples."""
    ids: dict[str, list[DataFrame]] = {}
    if catalog is not None:
        ids["catalog:products"] = [session.createDataFrame([(p.id,) for p in catalog.products], "id string")]
        ids["catalog:benefits"] = [session.createDataFrame([(b.id,) for b in catalog.benefits], "id string")]
    for name, column in (
        ("cardholders", "cardholder_id"),
        ("calls", "call_id"),
        ("conversations", "call_id"),
    ):
        if name in tables:
            ids.setdefault(f"{name}:{column}", []).append(
                tables[name].frame.selectExpr(f"`t:{column}` AS id")
            )
    refs = [("cardholders", "product_id", ["catalog:products"], "is not a product in the catalog")]
    for name in ("transactions", "benefit_usage", "conversations", "calls"):
        refs.append(
            (name, "cardholder_id", ["cardholders:cardholder_id"], "is not a cardholder in cardholders")
        )
    for name in ("benefit_usage", "conversations"):
        refs.append((name, "benefit_id", ["catalog:benefits"], "is not a benefit in the catalog"))
    if "calls" in tables:
        refs.append(("conversations", "call_id", ["calls:call_id"], "is not a call in calls"))
    sources = [t for t in ("conversations", "calls") if t in tables]
    if sources:
        refs.append(
            ("nps", "call_id", [f"{t}:call_id" for t in sources], f"is not a call in {' or '.join(sources)}")
        )
    for name, column, targets, message in refs:
        if name not in tables or any(target not in ids for target in targets):
            continue
        known = ids[targets[0]][0]
        for target in targets[1:]:
            known = known.unionByName(ids[target][0])
        typed = _quote(f"t:{column}")
        rows = tables[name].frame.where(f"{typed} IS NOT NULL AND NOT {_LATER}")
        unknown = rows.join(known.where("id IS NOT NULL"), rows[f"t:{column}"] == known["id"], "left_anti")
        count = unknown.count()
        if count:
            shown = _examples(unknown, "true", typed, examples)
            yield ProblemKind(tables[name].file, column, message, count, shown)
