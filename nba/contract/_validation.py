"""Validation: a data directory + catalog + MCC map → every problem (file, row, column, value) and a summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from nba.contract._catalog import Catalog, catalog_for, load_catalog
from nba.contract._mcc import MCC_MAP_FILE, MccMap, load_mcc_map
from nba.contract._tables import (
    Column,
    ParsedColumn,
    TableFile,
    check_as_of,
    connect,
    csv_error_problem,
    first_and_last_dates,
    locate_tables,
    parse_column,
    query_one,
    quote_ident,
    reject_malformed_lines,
)
from nba.errors import DataError, Problem, ValidationError, check_param

DEFAULT_MAX_PROBLEMS: Final = 100
MCC_OVERRIDE_FILE: Final = MCC_MAP_FILE  # a data directory's patch of the shipped MCC map


@dataclass(frozen=True)
class TableSummary:
    """What one table holds."""

    name: str
    file: str
    rows: int
    extra_columns: tuple[str, ...]


@dataclass(frozen=True)
class DataSummary:
    """What a data directory holds, for a person deciding whether to trust it."""

    tables: tuple[TableSummary, ...]
    cardholders: int
    first_date: date | None
    last_date: date | None
    as_of: date | None
    net_spend_usd: float
    other_spend_share: float | None
    # With an as-of: per table, the rows dated on or after it (not checked; no job uses them as of it).
    rows_after_as_of: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ValidationReport:
    """Problems found (the first `max_problems`), how many in all, and a summary when the data is valid."""

    problems: list[Problem]
    total: int
    summary: DataSummary | None = None

    @property
    def ok(self) -> bool:
        return self.total == 0

    def raise_for_problems(self) -> None:
        """Raises ValidationError when there is any problem."""
        if self.total:
            raise ValidationError(self.problems, self.total)


@dataclass
class _Collector:
    limit: int
    problems: list[Problem] = field(default_factory=list)
    total: int = 0

    @property
    def room(self) -> int:
        return max(self.limit - len(self.problems), 0)

    def add(self, problem: Problem) -> None:
        self.total += 1
        if self.room:
            self.problems.append(problem)


@dataclass(frozen=True)
class ValueCheck:
    """One check of a column's values: the SQL condition a bad row meets, and what the problem says."""

    column: Column
    condition_sql: str
    message: str
    # Show the raw text of the cell (False for empty cells: there is nothing to show).
    show_value: bool = True


# What a value of each contract type must be, as a problem says it.
TYPE_WORDS: Final = {
    "string": "text",
    "int": "a whole number",
    "float": "a finite number",
    "date": "a date in YYYY-MM-DD form",
    "timestamp": "an ISO 8601 timestamp",
}


def _number(value: float | None) -> str:
    return f"{value:g}" if value is not None else ""


def value_checks(column: Column, typed: str, text: str) -> list[ValueCheck]:
    """The checks of one present column, in any SQL engine: `typed` is the expression of its typed value
    (NULL when the text does not parse), `text` of its raw text (NULL when empty). `nba validate` runs them
    on DuckDB and `nba validate --engine spark` on Spark: the same conditions, the same messages."""
    checks = []
    if column.required:
        checks.append(
            ValueCheck(column, f"{text} IS NULL", "is empty; a value is required", show_value=False)
        )
    fail = "is blank" if column.type == "string" else f"is not {TYPE_WORDS[column.type]}"
    checks.append(ValueCheck(column, f"({text} IS NOT NULL AND {typed} IS NULL)", fail))
    low, high = column.min_value, column.max_value
    if low is not None and high is not None:
        low_cmp = "<=" if column.min_exclusive else "<"
        shown = (
            f"({_number(low)}, {_number(high)}]"
            if column.min_exclusive
            else f"{_number(low)}–{_number(high)}"
        )
        checks.append(
            ValueCheck(column, f"({typed} {low_cmp} {low} OR {typed} > {high})", f"is outside {shown}")
        )
    if column.choices:
        listed = ", ".join(column.choices)
        values = ", ".join(f"'{choice}'" for choice in column.choices)
        checks.append(ValueCheck(column, f"{typed} NOT IN ({values})", f"is not one of: {listed}"))
    return checks


def _value_checks(parsed: ParsedColumn) -> list[ValueCheck]:
    name = parsed.column.name
    return value_checks(parsed.column, quote_ident(f"t:{name}"), quote_ident(f"r:{name}"))


def _checked_sql(
    table: TableFile, as_of: date | None, skip_rejected: str | None = None
) -> tuple[str, list[ParsedColumn]]:
    """SELECT with `__row`, per contract column its typed value `t:NAME` and raw text `r:NAME`, and
    `__later`: the row has a date on or after `as_of` (always false without one)."""
    parsed = [parse_column(table, column) for column in table.spec.columns]
    parts = ["__row"]
    for item in parsed:
        parts.append(f"{item.typed_sql} AS {quote_ident('t:' + item.column.name)}")
        parts.append(f"{item.text_sql} AS {quote_ident('r:' + item.column.name)}")
    dated = [
        f"CAST({quote_ident('t:' + item.column.name)} AS DATE) >= DATE '{as_of.isoformat()}'"
        for item in parsed
        if as_of is not None and item.present and item.column.type in ("date", "timestamp")
    ]
    later = f"coalesce({' OR '.join(dated)}, false)" if dated else "false"
    scan = table.scan_sql(skip_rejected)
    return f"SELECT *, {later} AS __later FROM (SELECT {', '.join(parts)} FROM ({scan}))", parsed


def _report_rows(
    con: duckdb.DuckDBPyConnection, relation: str, checks: list[ValueCheck], table: TableFile, out: _Collector
) -> None:
    """One pass counts every check; then the first failing rows of each are fetched for the report."""
    if not checks:
        return
    # Rows dated on or after the as-of are counted in the summary, not checked: no job uses them.
    counts_sql = ", ".join(f"count_if({check.condition_sql} AND NOT __later)" for check in checks)
    counts = query_one(con, f"SELECT {counts_sql} FROM {relation}")
    for check, count in zip(checks, counts, strict=True):
        if not count:
            continue
        shown = out.room
        if shown:
            text = quote_ident(f"r:{check.column.name}")
            rows = con.execute(
                f"SELECT __row, {text} FROM {relation} WHERE {check.condition_sql} AND NOT __later "
                f"ORDER BY __row LIMIT {shown}"
            ).fetchall()
            for row_no, value in rows:
                value_text = str(value) if check.show_value and value is not None else None
                out.problems.append(
                    Problem(
                        table.file_name,
                        check.message,
                        row=int(row_no),
                        column=check.column.name,
                        value=value_text,
                    )
                )
        out.total += int(count)


def _report_duplicates(
    con: duckdb.DuckDBPyConnection, relation: str, table: TableFile, out: _Collector
) -> None:
    for key in table.spec.unique:
        typed = [quote_ident(f"t:{name}") for name in key]
        not_null = " AND ".join([*(f"{column} IS NOT NULL" for column in typed), "NOT __later"])
        sql = (
            f"SELECT __row, first_row, {', '.join(typed)} FROM ("
            f"SELECT __row, {', '.join(typed)}, min(__row) OVER (PARTITION BY {', '.join(typed)}) AS first_row "
            f"FROM {relation} WHERE {not_null}) WHERE __row <> first_row ORDER BY __row"
        )
        count = int(query_one(con, f"SELECT count(*) FROM ({sql})")[0])
        if not count:
            continue
        for row in con.execute(f"{sql} LIMIT {max(out.room, 0)}").fetchall() if out.room else []:
            value = ", ".join(str(v) for v in row[2:])
            what = " and ".join(key)
            out.problems.append(
                Problem(
                    table.file_name,
                    f"duplicate {what}: the same as row {row[1]}",
                    row=int(row[0]),
                    column=", ".join(key),
                    value=value,
                )
            )
        out.total += count


@dataclass(frozen=True)
class _Reference:
    table: str
    column: str
    target: str
    target_sql: str
    message: str


def _references(files: dict[str, TableFile]) -> list[_Reference]:
    holder_ids = 'SELECT "t:cardholder_id" AS id FROM __checked_cardholders'
    refs = [
        _Reference(
            "cardholders",
            "product_id",
            "catalog",
            "SELECT id FROM __products",
            "is not a product in the catalog",
        ),
    ]
    for table in ("transactions", "benefit_usage", "conversations", "calls"):
        refs.append(
            _Reference(
                table, "cardholder_id", "cardholders", holder_ids, "is not a cardholder in cardholders"
            )
        )
    for table in ("benefit_usage", "conversations"):
        refs.append(
            _Reference(
                table, "benefit_id", "catalog", "SELECT id FROM __benefits", "is not a benefit in the catalog"
            )
        )
    call_sources = [t for t in ("conversations", "calls") if t in files]
    if "calls" in files:
        refs.append(
            _Reference(
                "conversations",
                "call_id",
                "calls",
                'SELECT "t:call_id" AS id FROM __checked_calls',
                "is not a call in calls",
            )
        )
    if call_sources:
        union = " UNION ALL ".join(f'SELECT "t:call_id" AS id FROM __checked_{t}' for t in call_sources)
        names = " or ".join(call_sources)
        refs.append(_Reference("nps", "call_id", "+".join(call_sources), union, f"is not a call in {names}"))
    return refs


def _report_references(
    con: duckdb.DuckDBPyConnection, checked: dict[str, TableFile], refs: list[_Reference], out: _Collector
) -> None:
    for ref in refs:
        if ref.table not in checked or any(
            part not in checked and part != "catalog" for part in ref.target.split("+")
        ):
            continue
        column = quote_ident(f"t:{ref.column}")
        sql = (
            f"SELECT __row, {column} FROM __checked_{ref.table} WHERE {column} IS NOT NULL AND NOT __later "
            f"AND {column} NOT IN (SELECT id FROM ({ref.target_sql}) WHERE id IS NOT NULL)"
        )
        count = int(query_one(con, f"SELECT count(*) FROM ({sql})")[0])
        if not count:
            continue
        if out.room:
            for row_no, value in con.execute(f"{sql} ORDER BY __row LIMIT {out.room}").fetchall():
                out.problems.append(
                    Problem(
                        checked[ref.table].file_name,
                        ref.message,
                        row=int(row_no),
                        column=ref.column,
                        value=str(value),
                    )
                )
        out.total += count


@dataclass(frozen=True)
class _RowCounts:
    """A checked table's rows, and those dated on or after the as-of (counted, not checked)."""

    rows: int
    later: int


def _count_rows(con: duckdb.DuckDBPyConnection, name: str) -> _RowCounts:
    """The first pass over a checked table: it reads every line (a malformed one raises here), and its
    counts are the summary's, so the summary reads no file again (two passes over each table fewer)."""
    rows, later = query_one(con, f"SELECT count(*), count_if(__later) FROM __checked_{name}")
    return _RowCounts(int(rows), int(later or 0))


def _typed(name: str) -> str:
    return quote_ident(f"t:{name}")


def _summarise(
    con: duckdb.DuckDBPyConnection,
    checked: dict[str, TableFile],
    counts: dict[str, _RowCounts],
    as_of: date | None,
    mcc_map: MccMap,
) -> DataSummary:
    tables = [
        TableSummary(name, table.file_name, counts[name].rows, table.extra_columns)
        for name, table in checked.items()
    ]
    con.register("__mcc_map", mcc_map.to_arrow())
    first, last, total, other = query_one(
        con,
        'SELECT min("t:transaction_date"), max("t:transaction_date"), coalesce(sum("t:amount"), 0), '
        "sum(CASE WHEN m.category = 'other' THEN \"t:amount\" ELSE 0 END) "
        'FROM __checked_transactions t LEFT JOIN __mcc_map m ON m.mcc = t."t:mcc"',
    )
    holders = next(t.rows for t in tables if t.name == "cardholders")
    share = float(other) / float(total) if total else None
    later = tuple(
        (table.file_name, counts[name].later) for name, table in checked.items() if counts[name].later
    )
    return DataSummary(tuple(tables), holders, first, last, as_of, float(total), share, later)


def _catalog_tables(con: duckdb.DuckDBPyConnection, catalog: Catalog | None) -> None:
    products = [p.id for p in catalog.products] if catalog else []
    benefits = [b.id for b in catalog.benefits] if catalog else []
    con.register("__products", pa.table({"id": pa.array(products, pa.string())}))
    con.register("__benefits", pa.table({"id": pa.array(benefits, pa.string())}))


def _load_config(
    data_dir: Path, catalog_path: Path | None, out: _Collector
) -> tuple[Catalog | None, MccMap | None]:
    catalog: Catalog | None = None
    mcc_map: MccMap | None = None
    try:
        catalog = load_catalog(catalog_path or catalog_for(data_dir))
    except ValidationError as exc:
        for problem in exc.problems:
            out.add(problem)
        out.total += exc.total - len(exc.problems)
    except DataError as exc:
        out.add(Problem("catalog.yaml", str(exc)))
    override = data_dir / MCC_OVERRIDE_FILE
    try:
        mcc_map = load_mcc_map(override if override.exists() else None)
    except ValidationError as exc:
        for problem in exc.problems:
            out.add(problem)
        out.total += exc.total - len(exc.problems)
    except DataError as exc:
        out.add(Problem(MCC_OVERRIDE_FILE, str(exc)))
    return catalog, mcc_map


def validate_data(
    data_dir: Path,
    *,
    as_of: date | None = None,
    catalog_path: Path | None = None,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    threads: int | None = None,
) -> ValidationReport:
    """Checks a data directory against the data contract and reports every problem found.

    Takes the directory, an optional as-of date (rows dated on or after it are not checked but counted
    in the summary, as no job uses them as of it; without it the as-of is the day after the latest
    date in the data), an optional catalog (default: the
    directory's catalog.yaml, else the shipped one) and a cap on the problems listed (all are counted).
    Returns a ValidationReport; its summary is filled when there are no problems. Never raises for
    bad data: that is what the report is for; raises DataError (one line) for an as-of that leaves no
    data before it or lies past the day after the data's last date (see `check_as_of`).

    Example:
        >>> report = validate_data(Path("data_samples"))
        >>> report.ok, report.summary.cardholders
    """
    check_param("max_problems", max_problems, max_problems >= 1, "a positive integer")
    out = _Collector(max_problems)
    catalog, mcc_map = _load_config(data_dir, catalog_path, out)
    con = connect(threads)
    try:
        files, problems = locate_tables(con, data_dir)
        for problem in problems:
            out.add(problem)
        _catalog_tables(con, catalog)
        checked: dict[str, TableFile] = {}
        counts: dict[str, _RowCounts] = {}
        parsed_by_table: dict[str, list[ParsedColumn]] = {}
        for name, table in files.items():
            sql, parsed = _checked_sql(table, as_of)
            # A view, not a table: 100 M transactions are checked in passes over the file, out of core.
            con.execute(f"CREATE TEMP VIEW __checked_{name} AS {sql}")
            try:
                counts[name] = _count_rows(con, name)
            except duckdb.Error as exc:
                # A malformed line is one problem among the others: set it aside, check the rest.
                rejected = (
                    reject_malformed_lines(con, table, f"__rejected_{name}")
                    if table.path.suffix == ".csv"
                    else []
                )
                if not rejected:
                    out.add(csv_error_problem(table.file_name, exc))
                    continue
                for problem in rejected:
                    out.add(problem)
                sql, parsed = _checked_sql(table, as_of, f"__rejected_{name}")
                con.execute(f"CREATE OR REPLACE TEMP VIEW __checked_{name} AS {sql}")
                try:
                    counts[name] = _count_rows(con, name)
                except duckdb.Error as again:
                    out.add(csv_error_problem(table.file_name, again))
                    continue
            checked[name] = table
            parsed_by_table[name] = parsed
            for item in parsed:
                if item.type_problem:
                    out.add(Problem(table.file_name, item.type_problem, column=item.column.name))
        first, last = first_and_last_dates(
            con, {name: (table.spec, f"__checked_{name}") for name, table in checked.items()}, _typed
        )
        effective_as_of: date | None = None
        if as_of is not None or last is not None:
            effective_as_of = check_as_of(as_of, first, last, str(data_dir))
        for name, table in checked.items():
            checks = [
                check
                for item in parsed_by_table[name]
                if item.present and not item.type_problem
                for check in _value_checks(item)
            ]
            _report_rows(con, f"__checked_{name}", checks, table, out)
            _report_duplicates(con, f"__checked_{name}", table, out)
        refs = [r for r in _references(files) if catalog is not None or r.target != "catalog"]
        _report_references(con, checked, refs, out)
        summary = None
        if out.total == 0 and mcc_map is not None:
            summary = _summarise(con, checked, counts, effective_as_of, mcc_map)
        return ValidationReport(out.problems, out.total, summary)
    finally:
        con.close()
