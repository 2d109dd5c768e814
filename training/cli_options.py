"""Command-line options: the words every `nba` command shares (a date, `--as-of`, `--quiet`) → typer options."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Final

import typer

# `nba backtest --months`: how many of the latest months to test, one model each.
DEFAULT_MONTHS: Final = 6
MAX_MONTHS: Final = 36
# `nba train --backtest-months`: the latest months backtested within a training run (each a refit). A month
# costs one LightGBM fit of fixed rounds and the month's evaluation: with the refit on every row, 2 months
# keep `nba train` within 2x a run without either (1.70x at 20,000 cardholders, bench/bench_train_cost.py).
TRAIN_BACKTEST_MONTHS: Final = 2
MAX_TRAIN_BACKTEST_MONTHS: Final = 12

AS_OF_HELP = (
    "Use only data dated strictly before this day (YYYY-MM-DD); between the day after the data's first date "
    "and the day after its last date. Default: the day after the latest date."
)

AsOf = Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress on stderr: no bars, no line per step (errors still print)."
    ),
]

FeaturesConfig = Annotated[Path | None, typer.Option("--config", help="Features config (YAML/JSON).")]
CatalogFile = Annotated[
    Path | None, typer.Option("--catalog", help="Benefit catalog (default: DATA/catalog.yaml).")
]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Random seed of the model (each model of a run).")]


def parse_date(value: str | None) -> date | None:
    """A YYYY-MM-DD option as a date (None stays None); typer.BadParameter naming the value otherwise."""
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"must be a date in YYYY-MM-DD form, got {value!r}") from None


Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        max=256,
        help="LightGBM's threads. Default: the CPUs this process may use (its affinity mask).",
    ),
]

# --- the compute engine: DuckDB in process (default) or Spark (`pip install 'nba[spark]'`, Java 17) ---------

ENGINES: Final = ("duckdb", "spark")
DEFAULT_SPARK_MASTER: Final = "local[*]"

ComputeEngine = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where the feature SQL runs: duckdb (in this process, the default) or spark "
        "(PySpark: pip install 'nba[spark]', and Java 17).",
    ),
]
SparkMaster = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        help="With --engine spark: the Spark master (local[*], local[2], spark://HOST:7077, yarn, k8s://...). "
        f"Default: spark.master from --spark-conf or NBA_SPARK_MASTER, else {DEFAULT_SPARK_MASTER}.",
    ),
]
SparkConfFile = Annotated[
    Path | None,
    typer.Option(
        "--spark-conf",
        help="With --engine spark: Spark settings, `key=value` (or `key value`) lines, or a YAML mapping "
        "(.yaml/.yml). NBA_SPARK_* variables override them: NBA_SPARK_EXECUTOR_MEMORY=4g is "
        "spark.executor.memory=4g.",
    ),
]


def parse_engine(value: str) -> str:
    """`--engine` checked against ENGINES; typer.BadParameter naming the value otherwise."""
    if value not in ENGINES:
        raise typer.BadParameter(f"must be one of {', '.join(ENGINES)}, got {value!r}", param_hint="--engine")
    return value
