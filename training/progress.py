"""Progress: a job's steps, fits and DuckDB statements → live bars on stderr (rich), or nothing at all.

The jobs take a `Reporter`. Library callers and tests get `SILENT`: nothing drawn, no thread, the DuckDB
connection left as it is. The `nba` commands draw with `RichReporter` on stderr: on a terminal, one line
per step with a spinner and the time so far, under it a bar per fit (boosting rounds, categories) or
DuckDB statement (DuckDB's own estimate, polled from a background thread), all gone when done; what
stays is one line per finished step (`  features: 0.7 s`), which is also all that is written when stderr
is a file or a pipe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from types import TracebackType
from typing import Final, Protocol

import duckdb
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TimeElapsedColumn,
)
from rich.table import Column
from rich.text import Text

from nba.progress import Bar, NoProgress, ProgressHook

# DuckDB refreshes its estimate as pipeline tasks finish; reading it twice a frame keeps the bar current.
POLL_INTERVAL_S: Final = 0.25
_STEP, _COUNT, _PERCENT = "step", "count", "percent"


class Reporter(ProgressHook, Protocol):
    """What a job reports to: the step it is on, lines that stay, and (from ProgressHook) bars and queries."""

    def step(self, description: str) -> None:
        """The job moves on to `description`; it shows until the next step."""
        ...

    def log(self, line: str) -> None:
        """A line that stays (a finished step and its time)."""
        ...


class SilentReporter(NoProgress):
    """The reporter for library callers and tests: every call returns at once and nothing is written."""

    def step(self, description: str) -> None:
        pass

    def log(self, line: str) -> None:
        pass


SILENT: Final = SilentReporter()


@contextmanager
def watch_query(
    con: duckdb.DuckDBPyConnection,
    on_progress: Callable[[float], None],
    interval_s: float = POLL_INTERVAL_S,
) -> Iterator[None]:
    """Polls `con.query_progress()` from a background thread while the block runs statements on `con`.

    `on_progress` gets DuckDB's estimate for the running statement, 0-100, or -1 when it has none (no
    statement running, or a plan it cannot estimate). The thread reads an atomic in DuckDB's client
    context and takes no connection lock, so it does not wait for the statement; it stops, and is
    joined, when the block ends, also when a statement raises. DuckDB estimates only with its progress
    bar enabled, so the block runs with `enable_progress_bar` on and DuckDB's own printing off, and both
    settings are put back afterwards.

    Example:
        >>> with watch_query(con, lambda p: print(f"{p:.0f}%")):
        ...     table = con.sql(long_query).to_arrow_table()
    """
    settings = ("enable_progress_bar", "enable_progress_bar_print")
    # fetchall: a result left half-read would make DuckDB refuse the block's own statements.
    (before,) = con.execute(f"SELECT {', '.join(f'current_setting({s!r})' for s in settings)}").fetchall()
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval_s):
            try:
                value = con.query_progress()
            except duckdb.Error:
                return  # the connection went away: nothing left to watch
            on_progress(value)

    thread = threading.Thread(target=poll, name="nba-query-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        # A connection the block closed has nothing to put back, and that must not hide the block's error.
        with suppress(duckdb.Error):
            for name, value in zip(settings, before, strict=True):
                con.execute(f"SET {name} = {'true' if value else 'false'}")


class _Description(ProgressColumn):
    """The task's description as plain text (a path with brackets is not rich markup), indented by depth."""

    def render(self, task: Task) -> Text:
        return Text("  " * int(task.fields.get("depth", 0)) + task.description)


class _Only(ProgressColumn):
    """`column` for the tasks of the given kinds, an empty cell for the others (no bar on a step's line)."""

    def __init__(self, column: ProgressColumn, *kinds: str) -> None:
        super().__init__()
        self._column = column
        self._kinds = kinds

    def render(self, task: Task) -> RenderableType:
        return self._column.render(task) if task.fields.get("kind") in self._kinds else Text("")


class _Amount(ProgressColumn):
    """`412/2000` for a count, `43%` for DuckDB's estimate, nothing while unknown."""

    def render(self, task: Task) -> Text:
        kind = task.fields.get("kind")
        if task.total is None or kind == _STEP:
            return Text("")
        if kind == _PERCENT:
            return Text(f"{task.completed:>3.0f}%", style="progress.percentage")
        return Text(f"{task.completed:,.0f}/{task.total:,.0f}", style="progress.download")


class RichBar:
    """A bar of `RichReporter`: `advance` moves it; ending early (early stopping) makes where it stopped the total."""

    def __init__(self, progress: Progress, task: TaskID, total: int) -> None:
        self._progress = progress
        self._task = task
        self.total = total
        self.completed = 0

    def advance(self, steps: int = 1) -> None:
        self.completed += steps
        self._progress.update(self._task, completed=self.completed)

    def finish(self) -> None:
        self.total = min(self.total, self.completed)
        self._progress.update(self._task, total=self.total, completed=self.completed)


class RichReporter:
    """Draws a job's progress with rich on `console` (stderr for the `nba` commands); use it as a context.

    On a terminal the bars are live and transient. Anywhere else rich draws nothing live, DuckDB is not
    polled, and only `log` lines are written, one per line, without colour or cursor movement.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            _Only(SpinnerColumn(), _STEP),
            _Description(table_column=Column(no_wrap=True, overflow="ellipsis")),
            _Only(BarColumn(bar_width=32), _COUNT, _PERCENT),
            _Amount(),
            TimeElapsedColumn(),
            console=console,
            # A frame takes 1.5-3 ms to draw, and a LightGBM fit beside it loses more than that on 2 cores:
            # at 5 frames a second a fit took 5% longer (best of 12 runs), at 2 no measurable time.
            refresh_per_second=2,
            transient=True,
            # Off the terminal rich would draw nothing live anyway, but would end with a blank line.
            disable=not console.is_interactive,
        )
        self._step: TaskID | None = None
        self._depth = 0

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def step(self, description: str) -> None:
        if self._step is not None:
            self._progress.remove_task(self._step)
        self._step = self._progress.add_task(description, total=None, kind=_STEP, depth=0)

    def log(self, line: str) -> None:
        # Redrawn first: rich prints the line above its last frame, which may still hold finished bars.
        self._progress.refresh()
        self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)

    @contextmanager
    def _task(self, description: str, total: int | None, kind: str) -> Iterator[TaskID]:
        self._depth += 1
        task = self._progress.add_task(description, total=total, kind=kind, depth=self._depth)
        try:
            yield task
        finally:
            self._depth -= 1
            self._progress.remove_task(task)

    @contextmanager
    def _track(self, description: str, total: int) -> Iterator[Bar]:
        with self._task(description, total, _COUNT) as task:
            bar = RichBar(self._progress, task, total)
            try:
                yield bar
            finally:
                bar.finish()

    def track(self, description: str, total: int) -> AbstractContextManager[Bar]:
        return self._track(description, total)

    @contextmanager
    def _query(self, con: duckdb.DuckDBPyConnection, description: str) -> Iterator[None]:
        with self._task(description, None, _PERCENT) as task:

            def show(percent: float) -> None:
                # 0 as well as -1 means no estimate: a plan with a source DuckDB cannot measure (a
                # registered Arrow table) stays at 0 until it ends. The bar pulses until a real number.
                if percent > 0:
                    self._progress.update(task, total=100, completed=min(percent, 100.0))

            with watch_query(con, show):
                yield

    def query(self, con: duckdb.DuckDBPyConnection, description: str) -> AbstractContextManager[None]:
        if not self.console.is_interactive:
            return nullcontext()
        return self._query(con, description)


def cli_reporter(quiet: bool) -> AbstractContextManager[Reporter]:
    """The reporter an `nba` command runs its job with: rich on stderr, or silent with `--quiet`."""
    if quiet:
        return nullcontext(SILENT)
    return RichReporter(Console(stderr=True))
