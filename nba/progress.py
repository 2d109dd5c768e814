"""Progress hooks: a long fit or query in `nba/` → whoever watches it (nobody by default; `nba train` draws bars).

`nba/` only calls the hook; what is drawn, and where, is the caller's business (`training/progress.py`
draws rich bars on stderr). The default, `NO_PROGRESS`, starts no thread, writes nothing and leaves the
DuckDB connection as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    import duckdb
    import lightgbm as lgb


class Bar(Protocol):
    """One bar with a known total, advanced by what was just done."""

    def advance(self, steps: int = 1) -> None: ...


class ProgressHook(Protocol):
    """What a long job in `nba/` reports to.

    `track(description, total)` opens a bar of `total` steps for the block it guards; the block may end
    before the total (early stopping), which finishes the bar there. `query(con, description)` guards
    DuckDB statements run on `con`, whose own progress the watcher may read.
    """

    def track(self, description: str, total: int) -> AbstractContextManager[Bar]: ...

    def query(self, con: duckdb.DuckDBPyConnection, description: str) -> AbstractContextManager[None]: ...


class _NoBar:
    def advance(self, steps: int = 1) -> None:
        pass


class NoProgress:
    """The hook for when nobody watches: one shared bar that ignores `advance`, no thread, no output."""

    _bar: Final = contextlib.nullcontext(_NoBar())
    _query: Final = contextlib.nullcontext()

    def track(self, description: str, total: int) -> AbstractContextManager[Bar]:
        return self._bar

    def query(self, con: duckdb.DuckDBPyConnection, description: str) -> AbstractContextManager[None]:
        return self._query


NO_PROGRESS: Final = NoProgress()


def advance_each_round(bar: Bar) -> Callable[[lgb.callback.CallbackEnv], None]:
    """A LightGBM callback that advances `bar` by one per boosting round.

    A plain function gets a negative `order` from `lightgbm.train`, so it runs before early stopping
    checks the round: the round that triggers the stop is counted too.
    """

    def advance(env: lgb.callback.CallbackEnv) -> None:
        bar.advance()

    return advance
