"""Errors: everything nba raises on purpose, one tree so callers map it to exits and status codes.

    NbaError
    ├── DataError              input data or configuration is wrong
    │   ├── SchemaError        a table, column or value breaks the data contract
    │   ├── UnknownIdError     a reference to an id that does not exist
    │   └── CatalogError       the benefit catalog or MCC map is malformed
    ├── ModelError             a model artifact is missing, tampered with or incompatible
    ├── NotFoundError          a requested thing (cardholder, model version) is not there
    │   ├── CardholderNotFoundError   a cardholder the profile snapshot does not hold
    │   ├── CallNotFoundError         a call id the feedback store does not hold
    │   └── SuggestionNotFoundError   a suggestion id the feedback store does not hold
    ├── ConflictError          a change that the state no longer allows (an outcome after the call closed)
    ├── UnavailableError       a dependency is down (the feedback database); retrying later may work
    └── ComputeEngineError     `--engine spark` cannot run here (PySpark or Java missing, master unreachable)

Messages are one line that names the file, row, column and value where there is one. A bad parameter
gets one form, from `check_param`: "`top_k` must be an int in [1, 10], got 0".
"""

from __future__ import annotations

from dataclasses import dataclass


class NbaError(Exception):
    """Base of every error nba raises on purpose."""


class DataError(NbaError):
    """Input data or configuration breaks the contract."""


class SchemaError(DataError):
    """A table, column or value breaks the data contract."""


class UnknownIdError(DataError):
    """A row refers to an id that does not exist (product, benefit, cardholder, call)."""


class CatalogError(DataError):
    """The benefit catalog or the MCC map is malformed."""


class ModelError(NbaError):
    """A model artifact is missing, tampered with or does not fit the data."""


class ConflictError(NbaError):
    """A change the current state no longer allows, such as changing an outcome after the call closed."""


class UnavailableError(NbaError):
    """A dependency (the feedback database) is down; the same request may work later."""


class ComputeEngineError(NbaError):
    """The compute engine asked for (`--engine spark`) cannot run here: what is missing and how to fix it."""


class NotFoundError(NbaError):
    """A requested thing does not exist."""


class CardholderNotFoundError(NotFoundError):
    """A cardholder id the profile snapshot in service does not hold."""


class CallNotFoundError(NotFoundError):
    """A call id the feedback store does not hold."""


class SuggestionNotFoundError(NotFoundError):
    """A suggestion id the feedback store does not hold."""


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file: where it is and what is wrong.

    `row` is the 1-based data row (the header is not counted); for CSV files the
    message also gives the line number, which is `row + 1`.
    """

    file: str
    message: str
    row: int | None = None
    column: str | None = None
    value: str | None = None
    line: int | None = None
    # What `column` names: a table's column, or a field of a YAML file such as the catalog.
    column_label: str = "column"

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (line {self.line})" if self.line is not None else ""))
        if self.column is not None:
            where.append(f"{self.column_label} {self.column}")
        head = ", ".join(where)
        shown = "" if self.value is None else f"{_quote(self.value)}: "
        return f"{head}: {shown}{self.message}"


def _quote(value: str) -> str:
    text = value if len(value) <= 60 else value[:57] + "..."
    return repr(text)


class ValidationError(SchemaError):
    """Several problems found at once; `problems` holds the first ones, `total` counts them all."""

    def __init__(self, problems: list[Problem], total: int) -> None:
        self.problems = problems
        self.total = total
        first = str(problems[0]) if problems else "no problems"
        more = f" (and {total - 1} more problem{'s' if total != 2 else ''})" if total > 1 else ""
        super().__init__(first + more)


def check_param(name: str, value: object, ok: bool, rule: str, error: type[Exception] = ValueError) -> None:
    """Raises `error` unless `ok`, with nba's one form of a parameter error: the name, the rule, the value.

    `rule` completes "must be ..."; the value is shown as its repr (a numpy scalar as the plain number).
    The caller computes `ok`, so the rule can be anything a sentence can say:

    >>> check_param("top_k", 0, 1 <= 0 <= 10, "an int in [1, 10]")
    Traceback (most recent call last):
    ValueError: `top_k` must be an int in [1, 10], got 0
    """
    if not ok:
        item = getattr(value, "item", None)
        shown = item() if callable(item) and type(value).__module__ == "numpy" else value
        raise error(f"`{name}` must be {rule}, got {shown!r}")
