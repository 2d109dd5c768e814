"""Rows: call decisions ↔ the feedback tables' rows (batch inserts, reads, repeats, outcome targets)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Dialect,
    Row,
    Select,
    Table,
    select,
)

from nba.errors import ConflictError
from nba.feedback._records import (
    CALL_FIELDS,
    OUTCOME_COLUMNS,
    SHOWN_COLUMNS,
    CallDecision,
    OutcomeRecord,
    ShownSuggestion,
    shown_columns,
)
from nba.feedback._schema import calls_table, suggestion_repeats_table, suggestions_table


def _placeholder(dialect: Dialect) -> str:
    """The driver's positional placeholder: `?` for sqlite3, `%s` for psycopg."""
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise AssertionError(f"unexpected paramstyle {dialect.paramstyle!r}")  # the store makes neither


def stored_call_ids(conn: Connection, call_ids: Collection[str]) -> set[str]:
    """Which of the call ids the store already holds (one query; SQL text, as `_BatchInsert` runs it)."""
    marks = ", ".join([_placeholder(conn.dialect)] * len(call_ids))
    result = conn.exec_driver_sql(f"SELECT call_id FROM calls WHERE call_id IN ({marks})", tuple(call_ids))
    return {row[0] for row in result}


class _BatchInsert:
    """An INSERT of some of a table's columns, run as the driver's own executemany of plain tuples.

    `conn.execute(table.insert(), [dict, ...])` spent more CPU in SQLAlchemy than in the database: per
    row it matched the dict's keys to the compiled statement's parameters and ran every column's bind
    processor (with the expanding `IN` of the already-stored check and a savepoint, log_decisions cost
    ~3.8× the sqlite3 module alone writing the same rows; now ~1.7×, bench/bench_decision_log.py). Here
    the statement text is made once per dialect and only the columns whose type converts values
    (timestamps, dates, JSON) go through their bind processor, the very one SQLAlchemy would run, so
    the stored values are the same (tested against SQLAlchemy's insert on both databases).
    """

    def __init__(self, table: Table, columns: Sequence[str], *, skip_taken: str | None = None) -> None:
        self.table = table
        self.columns = tuple(columns)
        # A key column: a row whose key is taken is not inserted (ON CONFLICT … DO NOTHING), not an error.
        self.skip_taken = skip_taken
        self._prepared: dict[str, tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]] = {}

    def _prepare(self, dialect: Dialect) -> tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]:
        placeholder = _placeholder(dialect)
        quote = dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(self.table.name)} ({', '.join(quote(name) for name in self.columns)}) "
            f"VALUES ({', '.join([placeholder] * len(self.columns))})"
        )
        if self.skip_taken is not None:
            sql += f" ON CONFLICT ({quote(self.skip_taken)}) DO NOTHING"
        processors = []
        for i, name in enumerate(self.columns):
            process = self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((i, process))
        prepared = sql, tuple(processors)
        self._prepared[dialect.name] = prepared
        return prepared

    def execute(self, conn: Connection, rows: list[list[Any]]) -> None:
        """Inserts `rows` (each a list of values in `columns` order; converted in place)."""
        dialect = conn.dialect
        conn.exec_driver_sql(self.statement(dialect), [tuple(self.converted(dialect, row)) for row in rows])

    def statement(self, dialect: Dialect) -> str:
        """The INSERT's text for `dialect` (its driver's placeholders, one per column)."""
        return (self._prepared.get(dialect.name) or self._prepare(dialect))[0]

    def converted(self, dialect: Dialect, row: list[Any]) -> list[Any]:
        """`row` (values in `columns` order) converted in place as `execute` converts it, for a statement of
        the caller's own."""
        _, processors = self._prepared.get(dialect.name) or self._prepare(dialect)
        for i, process in processors:
            row[i] = process(row[i])
        return row

    def execute_one(self, conn: Connection, row: list[Any]) -> int:
        """Inserts one row (converted in place); how many rows were inserted (0: its key was taken)."""
        dialect = conn.dialect
        return int(
            conn.exec_driver_sql(self.statement(dialect), tuple(self.converted(dialect, row))).rowcount
        )


_INSERT_CALLS: Final = _BatchInsert(calls_table, (*CALL_FIELDS, "holder_features_f64"))
_INSERT_CALL_IF_NEW: Final = _BatchInsert(calls_table, _INSERT_CALLS.columns, skip_taken="call_id")
_INSERT_SUGGESTIONS: Final = _BatchInsert(
    suggestions_table, ("suggestion_id", "call_id", *SHOWN_COLUMNS, "pair_features_f64")
)


def _call_values(decision: CallDecision) -> list[Any]:
    """The call's CALL_FIELDS as its table's columns hold them (`profile_as_of` a date)."""
    values = {name: getattr(decision, name) for name in CALL_FIELDS}
    values["profile_as_of"] = date.fromisoformat(decision.profile_as_of)
    values["shared_reasons"] = list(decision.shared_reasons)
    return list(values.values())


def insert_decisions(conn: Connection, decisions: Sequence[CallDecision]) -> None:
    """Inserts calls and their suggestions with one executemany per table."""
    _INSERT_CALLS.execute(
        conn,
        [[*_call_values(d), d.holder_features] for d in decisions],
    )
    _insert_suggestions(conn, decisions)


def insert_decision_if_new(conn: Connection, decision: CallDecision) -> bool:
    """Inserts one decision when its call id is free: the call row (ON CONFLICT DO NOTHING: of two
    processes inserting one call id at once, the second waits for the first and inserts nothing, without
    an error), then its suggestions. False, with nothing inserted, when the call id was taken. Raises
    sqlalchemy's IntegrityError when a suggestion id belongs to another call (the transaction is then
    unusable: end it).

    On PostgreSQL one statement does both (`_claim_statement`): a claim is on the request path of every
    call whose id the agent's desktop sends, and each statement is a round trip; on SQLite, two.
    """
    call_row = [*_call_values(decision), decision.holder_features]
    if conn.dialect.name == "postgresql" and decision.suggestions:
        rows = _suggestion_rows([decision])
        params = _INSERT_CALL_IF_NEW.converted(conn.dialect, call_row)
        for row in rows:
            params.extend(_INSERT_SUGGESTIONS.converted(conn.dialect, row))
        inserted = conn.exec_driver_sql(_claim_statement(conn.dialect, len(rows)), tuple(params)).scalar_one()
        return bool(inserted)
    if _INSERT_CALL_IF_NEW.execute_one(conn, call_row) == 0:
        return False
    _insert_suggestions(conn, [decision])
    return True


_CLAIM_STATEMENTS: Final[dict[tuple[str, int], str]] = {}


def _claim_statement(dialect: Dialect, n_suggestions: int) -> str:
    """PostgreSQL: the call row inserted when its id is free and, only then, its `n_suggestions`
    suggestions, in one statement (data-modifying WITH queries, all run to completion; the suggestions'
    foreign key is checked at the statement's end, where the call row is there); it returns how many call
    rows were inserted (0 or 1). Each suggestion value is cast to its column's type, as a VALUES list
    does not take the types from the table it is inserted into."""
    known = _CLAIM_STATEMENTS.get((dialect.name, n_suggestions))
    if known is not None:
        return known
    quote = dialect.identifier_preparer.quote
    call_sql = _INSERT_CALL_IF_NEW.statement(dialect)
    columns = _INSERT_SUGGESTIONS.columns
    casts = ", ".join(
        f"CAST(%s AS {suggestions_table.c[name].type.compile(dialect=dialect)})" for name in columns
    )
    values = ", ".join([f"({casts})"] * n_suggestions)
    statement = _CLAIM_STATEMENTS[(dialect.name, n_suggestions)] = (
        f"WITH new_call AS ({call_sql} RETURNING 1), "
        f"shown AS (INSERT INTO {quote(suggestions_table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT * FROM (VALUES {values}) AS shown_values WHERE EXISTS (SELECT 1 FROM new_call) RETURNING 1) "
        "SELECT count(*) FROM new_call"
    )
    return statement


def _suggestion_rows(decisions: Sequence[CallDecision]) -> list[list[Any]]:
    """The decisions' suggestions as `_INSERT_SUGGESTIONS` rows."""
    return [
        [s.suggestion_id, d.call_id, *s.plain(), s.pair_features] for d in decisions for s in d.suggestions
    ]


def _insert_suggestions(conn: Connection, decisions: Sequence[CallDecision]) -> None:
    rows = _suggestion_rows(decisions)
    if rows:
        _INSERT_SUGGESTIONS.execute(conn, rows)


def suggestion_ids_taken(conn: Connection, decision: CallDecision) -> ConflictError:
    """The error for a decision some of whose suggestion ids belong to another call, naming one."""
    ids = [s.suggestion_id for s in decision.suggestions]
    taken = conn.scalars(
        select(suggestions_table.c.suggestion_id).where(suggestions_table.c.suggestion_id.in_(ids))
    ).all()
    return ConflictError(
        f"call {decision.call_id!r}: suggestion_id {taken[0] if taken else ids!r} already belongs to another call"
    )


def outcome_target(suggestion_id: str) -> Select[Any]:
    """A suggestion's call, benefit, cardholder and the call's times, its call row locked: changes to
    one call's outcomes and its closing happen one at a time."""
    return (
        select(
            suggestions_table.c.call_id,
            suggestions_table.c.benefit_id,
            calls_table.c.cardholder_id,
            calls_table.c.served_at,
            calls_table.c.closed_at,
        )
        .join(calls_table)
        .where(suggestions_table.c.suggestion_id == suggestion_id)
        .with_for_update(of=calls_table)
    )


def keep_as_repeat(conn: Connection, stored: CallDecision, later: CallDecision) -> None:
    """Points the suggestion ids of `later`, served under `stored`'s call id, at `stored`'s suggestions:
    the one of the same benefit, else of the same rank. Nothing for a replay of `stored` itself, nor
    for a decision about another cardholder (its outcomes stay unknown: 404)."""
    if later.cardholder_id != stored.cardholder_id:
        return
    stored_ids = {s.suggestion_id for s in stored.suggestions}
    by_benefit = {s.benefit_id: s.suggestion_id for s in stored.suggestions}
    by_rank = {s.rank: s.suggestion_id for s in stored.suggestions}
    pairs = {
        s.suggestion_id: by_benefit.get(s.benefit_id) or by_rank.get(s.rank)
        for s in later.suggestions
        if s.suggestion_id not in stored_ids
    }
    pairs = {repeat: target for repeat, target in pairs.items() if target is not None}
    if not pairs:
        return
    known = set(
        conn.scalars(
            select(suggestion_repeats_table.c.repeat_id).where(
                suggestion_repeats_table.c.repeat_id.in_(list(pairs))
            )
        )
    )
    rows = [{"repeat_id": r, "suggestion_id": t} for r, t in pairs.items() if r not in known]
    if rows:
        conn.execute(suggestion_repeats_table.insert(), rows)


def read_decision(conn: Connection, call_id: str) -> CallDecision | None:
    call = conn.execute(select(calls_table).where(calls_table.c.call_id == call_id)).one_or_none()
    if call is None:
        return None
    rows = conn.execute(
        select(suggestions_table)
        .where(suggestions_table.c.call_id == call_id)
        .order_by(suggestions_table.c.rank, suggestions_table.c.suggestion_id)
    ).all()
    values = {name: getattr(call, name) for name in CALL_FIELDS}
    values["profile_as_of"] = call.profile_as_of.isoformat()
    values["shared_reasons"] = tuple(call.shared_reasons or ())  # NULL on calls stored before 0006
    return CallDecision(
        **values,
        suggestions=tuple(
            ShownSuggestion.from_plain(row.suggestion_id, shown_columns(row), bytes(row.pair_features_f64))
            for row in rows
        ),
        holder_features=bytes(call.holder_features_f64),
    )


def read_back(decision: CallDecision) -> CallDecision:
    """The decision as the database now holds it (UTC time, floats, suggestions in rank order), without
    a query."""
    return replace(
        decision,
        profile_as_of=date.fromisoformat(decision.profile_as_of).isoformat(),
        served_at=decision.served_at.astimezone(UTC),
        holder_features=bytes(decision.holder_features),
        suggestions=tuple(
            ShownSuggestion.from_plain(s.suggestion_id, s.plain(), bytes(s.pair_features))
            for s in sorted(decision.suggestions, key=lambda s: (s.rank, s.suggestion_id))
        ),
    )


def outcome_record(
    found: Row[Any, Any, Any, Any, Any],
    current: Mapping[Any, Any],
    suggestion_id: str,
    *,
    changed: bool,
    stored: bool,
) -> OutcomeRecord:
    """The OutcomeRecord of suggestion `found` (its call and benefit) whose outcome row holds `current`
    (an outcome row's mapping, or the values just inserted: OUTCOME_COLUMNS); `stored`: this request
    wrote it."""
    return OutcomeRecord(
        suggestion_id=suggestion_id,
        call_id=found.call_id,
        cardholder_id=found.cardholder_id,
        benefit_id=found.benefit_id,
        **{name: current[name] for name in OUTCOME_COLUMNS},
        changed=changed,
        stored=stored,
    )
