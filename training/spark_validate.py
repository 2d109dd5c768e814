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
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from nba.contract import (
    DEFAULT_CATALOG_PATH,
    DEFAULT_MAX_PROBLEMS,
    MCC_OVERRIDE_FILE,
    TABLES,
    TYPE_WORDS,
    check_as_of,
    load_catalog,
    load_mcc_map,
    value_checks,
)
from nba.errors import DataError, Problem, ValidationError
from training.spark_data import CATALOG_FILE, copy_side_file, data_uri, path_exists

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EXAMPLES_PER_KIND: Final = 3
_ROW: Final = "__row"
_RECORD: Final = "__record"
_MALFORMED: Final = "__malformed"
# Spark's PERMISSIVE CSV reading puts a line it cannot read as a row (too few or too many fields) here,
# whole, beside whatever fields it could read; the line is then one problem, not a row of the table.
_CORRUPT: Final = "__corrupt_line"
MALFORMED_MESSAGE: Final = "a line that is not a row of the table (too few or too many fields)"
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
    # How many of its problems are listed (`--max-problems`): its examples, or for a problem of the whole
    # file (no rows) that one problem when there was room for it.
    listed: int = 0

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

    @property
    def total(self) -> int:
        """Every problem found, listed or not."""
        return sum(kind.count for kind in self.kinds)

    @property
    def listed(self) -> int:
        """The problems listed: at most `max_problems`, as local validation lists them."""
        return sum(kind.listed for kind in self.kinds)

    def raise_for_problems(self) -> None:
        """Raises ValidationError (the first problem of each kind, the total counted) when there is any."""
        if self.kinds:
            problems = [
                Problem(kind.file, str(kind)[len(kind.file) + 2 :], column=None) for kind in self.kinds
            ]
            raise ValidationError(problems, self.total)


@dataclass
class _Room:
    """How many more problems may be listed: `--max-problems` means what it means locally (at most that
    many problems are listed, every one is counted), spent kind by kind in the order they are found."""

    left: int
    kinds: list[ProblemKind] = field(default_factory=list)

    def take(self, wanted: int) -> int:
        given = max(min(wanted, self.left), 0)
        self.left -= given
        return given

    def add_whole(self, file: str, column: str | None, message: str) -> None:
        """A problem of a whole file or column (no rows): one problem, listed while there is room."""
        self.kinds.append(ProblemKind(file, column, message, 1, listed=self.take(1)))


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


def _read(session: SparkSession, uri: str, spec: Any) -> _Table | None:
    for suffix in (".parquet", ".csv"):
        path = f"{uri}/{spec.name}{suffix}"
        if not path_exists(session, path):
            continue
        if suffix == ".parquet":
            frame = session.read.parquet(path)
            frame = frame.selectExpr(
                "*",
                f"_metadata.row_index + 1 AS {_ROW}",
                f"CAST(NULL AS STRING) AS {_RECORD}",
                f"false AS {_MALFORMED}",
            )
        else:
            frame = _read_csv(session, path)
        return _Table(spec.name, path.rsplit("/", 1)[-1], frame, suffix == ".csv")
    return None


def _read_csv(session: SparkSession, path: str) -> DataFrame:
    """A contract CSV: every field as text, an empty field NULL (missing), as in DuckDB; `__record` the
    record as read (a malformed line: the line itself), `__malformed` whether Spark could not read the
    line as a row. PERMISSIVE mode keeps such a line (missing fields NULL, extra ones dropped) and puts
    its text in the corrupt-record column; here it is counted as a problem and left out of every other
    check, as local validation sets such lines aside."""
    from pyspark.sql.types import StringType, StructField, StructType

    header = session.read.options(header=True, inferSchema=False).csv(path).columns
    schema = StructType([StructField(name, StringType()) for name in [*header, _CORRUPT]])
    frame = (
        session.read.schema(schema)
        .options(header=True, mode="PERMISSIVE", columnNameOfCorruptRecord=_CORRUPT)
        .csv(path)
    )
    fields = ", ".join(f"coalesce({_quote(c)}, '')" for c in header)
    return frame.selectExpr(
        *(_quote(c) for c in header),
        f"CAST(NULL AS BIGINT) AS {_ROW}",
        f"coalesce({_CORRUPT}, concat_ws(',', {fields})) AS {_RECORD}",
        f"{_CORRUPT} IS NOT NULL AS {_MALFORMED}",
    )


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
    spark: SparkSession,
    data: str | Path,
    as_of: date | None = None,
    catalog_path: Path | None = None,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    examples: int = EXAMPLES_PER_KIND,
) -> SparkValidation:
    """Checks a data path (any path Spark reads: a folder, `s3a://`, `hdfs://`) on Spark; returns the
    problem kinds (none: the data is valid), each with its count and at most `examples` examples, at most
    `max_problems` problems listed in all (every one counted).

    The tables, `catalog.yaml` and `mcc_map.csv` are read through Spark's file system, as
    `open_spark_data` reads them; `catalog_path` (a local file) replaces the data's catalog.
    Raises DataError (one line) when Spark cannot read the path, and for an as-of that leaves no data
    before it, as local validation does.
    """
    uri = data_uri(data)
    if not path_exists(spark, uri):
        raise DataError(f"{uri}: Spark cannot read this path: it does not exist")
    # A session of its own: CSV column pruning off, so a malformed line is found whichever columns a
    # query reads (with pruning, Spark counts only the fields a query asks for).
    session = spark.newSession()
    session.conf.set("spark.sql.csv.parser.columnPruning.enabled", "false")
    room = _Room(max_problems)
    catalog = _load_side_files(session, uri, catalog_path, room)
    tables: dict[str, _Table] = {}
    for spec in TABLES.values():
        table = _read(session, uri, spec)
        if table is None:
            if not spec.optional:
                room.add_whole(
                    f"{spec.name}.csv", None, "table is missing (expected NAME.csv or NAME.parquet)"
                )
            continue
        found = [c for c in table.frame.columns if c not in (_ROW, _RECORD, _MALFORMED)]
        missing = [c.name for c in spec.required_columns if c.name not in found]
        for name in missing:
            room.add_whole(
                table.file, name, f"required column is missing (columns found: {', '.join(found) or 'none'})"
            )
        if not missing:
            tables[spec.name] = table
    checks_by_table = {name: _typed_frame(table, room) for name, table in tables.items()}
    _mark_later(tables, as_of)
    rows: dict[str, int] = {}
    spans: list[tuple[bool, date | None, date | None]] = []
    for name, table in tables.items():
        checks = checks_by_table[name]
        # One pass per table: the malformed lines and every value check's count, the rows, and each date
        # column's first and last day.
        days = [
            f"CASE WHEN NOT {_MALFORMED} THEN CAST({_quote('t:' + c.name)} AS DATE) END"
            for c in TABLES[name].columns
            if c.type in ("date", "timestamp")
        ]
        counts_sql = [f"count_if({_MALFORMED})"]
        counts_sql += [f"count_if({c.condition} AND NOT {_LATER})" for c in checks]
        span_sql = [f"{f}({day})" for day in days for f in ("min", "max")]
        counted = table.frame.selectExpr(*counts_sql, "count(*)", *span_sql).collect()[0]
        malformed, counts = int(counted[0]), counted[1 : len(checks) + 1]
        rows[table.file] = int(counted[len(checks) + 1])
        found = counted[len(checks) + 2 :]
        spans += [(name == "transactions", found[i], found[i + 1]) for i in range(0, len(found), 2)]
        if malformed:
            shown = _examples(table.frame, _MALFORMED, None, room.take(min(examples, malformed)))
            room.kinds.append(ProblemKind(table.file, None, MALFORMED_MESSAGE, malformed, shown, len(shown)))
        for check, count in zip(checks, counts, strict=True):
            if count:
                text = f"`r:{check.column}`" if check.show_value else None
                where = f"{check.condition} AND NOT {_LATER}"
                shown = _examples(table.frame, where, text, room.take(min(examples, int(count))))
                room.kinds.append(
                    ProblemKind(table.file, check.column, check.message, int(count), shown, len(shown))
                )
        room.kinds.extend(_duplicates(table, examples, room))
    # Messages name the path as given (a local folder as local validation names it), a URI as Spark does.
    _check_as_of(spans, as_of, str(data) if uri.startswith("file:") else uri)
    room.kinds.extend(_references(session, tables, catalog, examples, room))
    return SparkValidation(room.kinds, rows)


def _load_side_files(session: SparkSession, uri: str, catalog_path: Path | None, room: _Room) -> Any:
    """The catalog (`catalog_path`, else the data's `catalog.yaml`, else the shipped one) and the data's
    `mcc_map.csv`, read through Spark's file system and checked by their own loaders, whose problems
    join the others; the catalog, or None when it has problems."""
    catalog = None
    with copy_side_file(session, uri, CATALOG_FILE) as own:
        try:
            catalog = load_catalog(catalog_path or own or DEFAULT_CATALOG_PATH)
        except ValidationError as exc:
            _add_problems(room, exc)
        except DataError as exc:
            room.add_whole(CATALOG_FILE, None, str(exc))
    with copy_side_file(session, uri, MCC_OVERRIDE_FILE) as override:
        try:
            load_mcc_map(override)
        except ValidationError as exc:
            _add_problems(room, exc)
        except DataError as exc:
            room.add_whole(MCC_OVERRIDE_FILE, None, str(exc))
    return catalog


def _add_problems(room: _Room, exc: ValidationError) -> None:
    """A side file's problems (the catalog's, the MCC map's) as local validation lists them, one each."""
    for problem in exc.problems:
        room.add_whole(problem.file, None, str(problem)[len(problem.file) + 2 :])
    if exc.total > len(exc.problems):
        file = exc.problems[0].file if exc.problems else CATALOG_FILE
        room.kinds.append(
            ProblemKind(file, None, "more problems (not listed)", exc.total - len(exc.problems))
        )


def _typed_frame(table: _Table, room: _Room) -> list[_Check]:
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
            room.add_whole(table.file, column.name, message)
            parts.append(f"CAST(NULL AS {_SPARK_TYPE[column.type]}) AS {typed_name}")
            continue
        parts.append(f"{typed} AS {typed_name}")
        checks.extend(_value_checks(column, typed_name, text_name))
    table.frame = table.frame.selectExpr(*parts)
    return checks


def _mark_later(tables: dict[str, _Table], as_of: date | None) -> None:
    """`__later`: the row is not checked: it is dated on or after `as_of` (no job uses it as of then), or
    it is a malformed CSV line (one problem of its own)."""
    for name, table in tables.items():
        dated = [
            f"CAST({_quote('t:' + c.name)} AS DATE) >= DATE '{as_of.isoformat()}'"
            for c in TABLES[name].columns
            if as_of is not None and c.type in ("date", "timestamp")
        ]
        later = f"coalesce({' OR '.join(dated)}, false)" if dated else "false"
        table.frame = table.frame.selectExpr("*", f"{later} OR {_MALFORMED} AS {_LATER}")


def _check_as_of(spans: list[tuple[bool, date | None, date | None]], as_of: date | None, source: str) -> None:
    """Refuses an as-of as local validation does (`check_as_of`), from each date column's (is it spend,
    first day, last day): the first day is the first spend's when there is any."""
    firsts = [lo for spend, lo, _ in spans if spend and lo is not None] or [lo for _, lo, _ in spans if lo]
    lasts = [hi for _, _, hi in spans if hi is not None]
    if as_of is not None or lasts:
        check_as_of(as_of, min(firsts) if firsts else None, max(lasts) if lasts else None, source)


def _duplicates(table: _Table, examples: int, room: _Room) -> Iterator[ProblemKind]:
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
        wanted = room.take(min(examples, int(total)))
        shown = tuple(
            Example(row["first_row"], ", ".join(str(row[t]) for t in typed))
            for row in (groups.orderBy("first_row").limit(wanted).collect() if wanted else [])
        )
        yield ProblemKind(
            table.file, ", ".join(key), f"duplicate {' and '.join(key)}", int(total), shown, len(shown)
        )


def _references(
    session: SparkSession, tables: dict[str, _Table], catalog: Any, examples: int, room: _Room
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
                tables[name].frame.where(f"NOT {_MALFORMED}").selectExpr(f"`t:{column}` AS id")
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
            shown = _examples(unknown, "true", typed, room.take(min(examples, count)))
            yield ProblemKind(tables[name].file, column, message, count, shown, len(shown))
