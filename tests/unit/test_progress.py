"""Progress: DuckDB's estimate polled off the main thread, bars that end where the work ended, a silent default."""

from __future__ import annotations

import io
import threading
import timeit

import duckdb
import pytest
from rich.console import Console

from training.progress import SILENT, RichBar, RichReporter, watch_query

# Long enough (about a second on a busy 2-core machine) for DuckDB to report several estimates.
SLOW_SQL = "SELECT sum(range * (range % 7)) FROM range(40000000)"
# Fails part of the way through, once DuckDB has estimated some of it.
FAILING_SQL = "SELECT sum(CASE WHEN range = 30000000 THEN error('boom') ELSE range END) FROM range(40000000)"


def _pollers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nba-query-progress"]


def _progress_settings(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute(
        "SELECT current_setting('enable_progress_bar'), current_setting('enable_progress_bar_print')"
    ).fetchall()


def test_watch_query_sees_duckdb_progress_and_stops_its_thread() -> None:
    con = duckdb.connect()
    before = _progress_settings(con)
    seen: list[float] = []
    with watch_query(con, seen.append, interval_s=0.01):
        assert len(_pollers()) == 1
        con.sql(SLOW_SQL).fetchall()
    assert _pollers() == []
    estimates = [p for p in seen if p >= 0]
    assert any(0 < p <= 100 for p in estimates), seen
    # One statement: DuckDB's estimate only grows while it runs.
    assert estimates == sorted(estimates)
    assert _progress_settings(con) == before


def test_watch_query_stops_its_thread_when_the_statement_raises() -> None:
    con = duckdb.connect()
    before = _progress_settings(con)
    seen: list[float] = []
    with pytest.raises(duckdb.InvalidInputException, match="boom"), watch_query(con, seen.append, 0.01):
        con.sql(FAILING_SQL).fetchall()
    assert _pollers() == []
    assert _progress_settings(con) == before
    # The connection is still usable, and nothing polls it any more.
    count = len(seen)
    assert con.sql("SELECT 42").fetchall() == [(42,)]
    assert len(seen) == count


def test_silent_reporter_costs_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    con = duckdb.connect()
    before = _progress_settings(con)
    with SILENT.query(con, "features SQL"):
        assert _pollers() == []
        con.sql("SELECT 1").fetchall()
    assert _progress_settings(con) == before
    SILENT.step("a step")
    SILENT.log("a line")
    # One shared bar for every fit: nothing is allocated per call, and advancing it costs a bare call.
    with SILENT.track("rounds", 2000) as bar, SILENT.track("categories", 16) as other:
        assert bar is other

        def nothing() -> None:
            pass

        silent = min(timeit.repeat(bar.advance, number=100_000, repeat=5))
        bare = min(timeit.repeat(nothing, number=100_000, repeat=5))
    assert silent < 3 * bare + 0.005, (silent, bare)
    assert capfd.readouterr() == ("", "")


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, force_interactive=True, width=100)


def test_a_bar_ends_at_its_total_or_where_the_work_stopped() -> None:
    with RichReporter(_terminal()) as reporter:
        with reporter.track("rounds", 10) as full:
            for _ in range(10):
                full.advance()
        with reporter.track("rounds until early stopping", 10) as stopped:
            for _ in range(4):
                stopped.advance()
    assert isinstance(full, RichBar) and isinstance(stopped, RichBar)
    assert (full.completed, full.total) == (10, 10)
    assert (stopped.completed, stopped.total) == (4, 4)


def test_the_rich_reporter_polls_duckdb_on_a_terminal_only() -> None:
    con = duckdb.connect()
    with RichReporter(_terminal()) as terminal, terminal.query(con, "features SQL"):
        assert len(_pollers()) == 1
        con.sql("SELECT 1").fetchall()
    assert _pollers() == []
    piped = Console(file=io.StringIO(), force_terminal=False)
    with RichReporter(piped) as reporter, reporter.query(con, "features SQL"):
        assert _pollers() == []
        con.sql("SELECT 1").fetchall()


def test_off_a_terminal_only_the_lines_are_written() -> None:
    out = io.StringIO()
    with RichReporter(Console(file=out, force_terminal=False, width=40)) as reporter:
        reporter.step("features: each presentation's snapshot")
        with reporter.track("rounds", 3) as bar:
            bar.advance(3)
        reporter.log("  features: 0.7 s (1,488 snapshots, a line longer than the console is wide)")
        reporter.log("  [model fit]: 1.5 s")
    assert out.getvalue() == (
        "  features: 0.7 s (1,488 snapshots, a line longer than the console is wide)\n  [model fit]: 1.5 s\n"
    )
