"""Command line: `nba ...` → the project's jobs, each with one clear line and a non-zero exit on bad input."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys

# Before LightGBM's OpenMP runtime loads: threads that wait at a barrier sleep at once instead of
# spinning, so on a busy machine a lagging thread gets the core (bench/bench_train_busy.py measured it;
# an earlier short spin, GOMP_SPINCOUNT=10000, still let a 5 s fit take 150 s). Either variable set by
# the caller wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "passive"
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main

from nba.contract import DEFAULT_MAX_PROBLEMS, DataSummary, usable_cpus, validate_data
from nba.decision import PUBLIC_FIELD_NAMES, ArbitrationConfig, EngineConfig
from nba.errors import NbaError, ValidationError
from nba.vocab import (
    DEFAULT_OBJECTIVE,
    DEFAULT_VALUE_FLOOR_USD,
    INSIGHTS_MIN_AGENT_CALLS,
    MAX_DETRACTOR_WEIGHT,
    MAX_SUGGESTIONS,
    MAX_VALUE_FLOOR_USD,
)
from training.cli_options import (
    DEFAULT_MONTHS,
    MAX_MONTHS,
    MAX_TRAIN_BACKTEST_MONTHS,
    TRAIN_BACKTEST_MONTHS,
    AsOf,
    CatalogFile,
    ComputeEngine,
    FeaturesConfig,
    Quiet,
    Seed,
    SparkConfFile,
    SparkMaster,
    Threads,
    parse_date,
    parse_engine,
)
from training.db_cli import db_app
from training.models_cli import models_app
from training.profiles_cli import profiles_app
from training.serve_cli import keys_app, serve

if TYPE_CHECKING:
    from training.synth import WorldSummary

app = typer.Typer(
    name="nba",
    help="Next-best-conversation engine: talking points about benefits a cardholder's card already includes.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

app.add_typer(models_app, name="models", help="List, promote and roll back model versions.")
app.add_typer(profiles_app, name="profiles", help="Build, list and promote profile snapshots.")
app.add_typer(keys_app, name="api-keys", help="Create API keys for the service.")
app.add_typer(db_app, name="db", help="Migrate the feedback database (nba db upgrade).")
app.command("serve")(serve)


@app.command()
def validate(
    data_dir: Annotated[Path, typer.Argument(help="Data directory with the contract's tables.")],
    as_of: AsOf = None,
    catalog: Annotated[
        Path | None, typer.Option(help="Benefit catalog (default: DIR/catalog.yaml, else the shipped one).")
    ] = None,
    max_problems: Annotated[
        int, typer.Option(min=1, max=100_000, help="List at most this many problems.")
    ] = (DEFAULT_MAX_PROBLEMS),
    engine: ComputeEngine = "duckdb",
    spark_master: SparkMaster = None,
    spark_conf: SparkConfFile = None,
) -> None:
    """Check a data directory against the data contract: a summary and exit 0, or every problem and exit 1.

    With --engine spark the checks run as Spark queries: each kind of problem with its count and first
    examples (the Parquet row; for CSV the record itself).
    """
    if parse_engine(engine) == "spark":
        _validate_on_spark(data_dir, parse_date(as_of), catalog, max_problems, spark_master, spark_conf)
        return
    report = validate_data(data_dir, as_of=parse_date(as_of), catalog_path=catalog, max_problems=max_problems)
    if not report.ok:
        for problem in report.problems:
            typer.echo(str(problem), err=True)
        typer.echo(_problems_found(data_dir, report.total, len(report.problems)), err=True)
        raise typer.Exit(1)
    assert report.summary is not None
    typer.echo(format_summary(data_dir, report.summary))


def _problems_found(data_dir: Path, total: int, listed: int) -> str:
    """`nba validate`'s last line for invalid data, the same for both engines."""
    more = f" (the first {listed} are listed)" if total > listed else ""
    return f"{data_dir}: {total} problem{'s' if total != 1 else ''} found{more}"


def _validate_on_spark(
    data_dir: Path,
    as_of: date | None,
    catalog: Path | None,
    max_problems: int,
    master: str | None,
    conf: Path | None,
) -> None:
    from training.spark_session import running_spark, spark_settings, start_spark
    from training.spark_validate import validate_on_spark

    ours = running_spark() is None
    session = start_spark(spark_settings(master, conf))
    try:
        result = validate_on_spark(session, data_dir, as_of, catalog, max_problems)
    finally:
        if ours:
            session.stop()
    if not result.ok:
        for kind in result.kinds:
            if kind.listed:
                typer.echo(str(kind), err=True)
        typer.echo(_problems_found(data_dir, result.total, result.listed), err=True)
        raise typer.Exit(1)
    typer.echo(f"{data_dir}: valid (Spark)")
    for file, rows in result.rows.items():
        typer.echo(f"  {file:<24} {rows:>12,} rows")


def format_summary(data_dir: Path, summary: DataSummary) -> str:
    """The summary `nba validate` prints for valid data."""
    lines = [f"{data_dir}: valid"]
    for table in summary.tables:
        extra = f"  (extra columns: {', '.join(table.extra_columns)})" if table.extra_columns else ""
        lines.append(f"  {table.file:<24} {table.rows:>12,} rows{extra}")
    span = f"{summary.first_date} to {summary.last_date}" if summary.first_date else "no transactions"
    lines.append(f"  transactions dated      {span}")
    lines.append(f"  as-of                   {summary.as_of or 'n/a (no dated rows)'}")
    lines.append(f"  cardholders             {summary.cardholders:,}")
    lines.append(f"  net card spend          ${summary.net_spend_usd:,.2f}")
    share = "n/a" if summary.other_spend_share is None else f"{summary.other_spend_share:.1%}"
    lines.append(f"  spend mapped to other   {share}")
    if summary.rows_after_as_of:
        later = ", ".join(f"{file} {rows:,}" for file, rows in summary.rows_after_as_of)
        lines.append(f"  on or after the as-of   {later} rows (not checked: nothing uses them as of it)")
    return "\n".join(lines)


@app.command()
def generate(
    cardholders: Annotated[int, typer.Option(min=1, max=20_000_000, help="How many cardholders.")],
    out: Annotated[Path, typer.Option(help="Data directory to write (created if missing).")],
    seed: Annotated[int, typer.Option(min=0, help="Random seed: the same seed gives the same rows.")] = 0,
    file_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "parquet",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The world's as-of (YYYY-MM-DD): every row is dated strictly before it. Default: 2026-10-01.",
        ),
    ] = None,
    oracle: Annotated[
        Path | None, typer.Option(help="Where to write the oracle (default: beside DIR, never inside it).")
    ] = None,
    catalog: Annotated[Path | None, typer.Option(help="Benefit catalog (default: the shipped one).")] = None,
    regime_shift: Annotated[
        str | None,
        typer.Option(
            "--regime-shift",
            help=(
                "From this day (YYYY-MM-DD) the world changes: travel spend collapses and recovers, the "
                "income effect on take-up flips, a new benefit is launched, callers change; the oracle "
                "then holds the truth as of every month's first day from the shift on (column as_of)."
            ),
        ),
    ] = None,
    uplift_mix: Annotated[
        str | None,
        typer.Option(
            "--uplift-mix",
            help=(
                "A counterfactual world: SURE:PERSUADABLE:BETWEEN weights (e.g. 1:1:1) split the catalog's "
                "benefits into ones people take up on their own, ones they take up only when told, and in "
                "between; pitches on the wrong call lower NPS; the oracle gains p_natural and uplift_class."
            ),
        ),
    ] = None,
    exploration_rate: Annotated[
        float | None,
        typer.Option(
            "--exploration-rate",
            help="Share of calls on which the logging policy shows eligible benefits in a random order (default 0.3).",
        ),
    ] = None,
    call_truth: Annotated[
        bool,
        typer.Option(
            "--call-truth",
            help=(
                "Also write <oracle>.calls.parquet: per logged call and eligible benefit, the expected adoptions "
                "were it shown at rank 1, 2, 3 (the true value of any policy on the logged calls)."
            ),
        ),
    ] = False,
) -> None:
    """Generate a synthetic world in the data contract, with its hidden truth written as an oracle file."""
    from training.synth import DEFAULT_AS_OF, LEGACY_EPSILON, generate_world

    if file_format not in ("csv", "parquet"):
        raise typer.BadParameter(f"must be csv or parquet, got {file_format!r}", param_hint="--format")
    summary = generate_world(
        cardholders,
        seed,
        out,
        fmt="csv" if file_format == "csv" else "parquet",
        as_of=parse_date(as_of) or DEFAULT_AS_OF,
        oracle_path=oracle,
        catalog_path=catalog,
        regime_shift=parse_date(regime_shift),
        uplift_mix=uplift_mix,
        exploration_rate=LEGACY_EPSILON if exploration_rate is None else exploration_rate,
        call_truth=call_truth,
    )
    typer.echo(format_world(summary))


def format_world(summary: WorldSummary) -> str:
    """What `nba generate` wrote, for a person: the folder, rows per table, the oracle, the time."""
    shift = f", changing from {summary.regime_shift}" if summary.regime_shift else ""
    shift += f", uplift mix {summary.uplift_mix}" if summary.uplift_mix else ""
    lines = [
        f"{summary.out_dir}: a synthetic world as of {summary.as_of} (seed {summary.seed}, "
        f"{summary.fmt}{shift}) in {summary.seconds:.1f} s"
    ]
    for table, rows in summary.rows_by_table.items():
        lines.append(f"  {table:<24} {rows:>12,} rows")
    lines.append(f"  oracle (hidden truth)    {summary.oracle_rows:>12,} rows in {summary.oracle_path}")
    if summary.call_truth_path is not None:
        lines.append(f"  call truth               {summary.call_truth_path}")
    return "\n".join(lines)


ModelsDir = Annotated[
    Path, typer.Option("--out", "--models", help="Models folder (one subfolder per version).")
]
DataDir = Annotated[Path, typer.Option("--data", help="Data directory with the contract's tables.")]
OracleFile = Annotated[
    Path | None, typer.Option(help="Oracle file from `nba generate`, to report the oracle ratio.")
]


ValueFloor = Annotated[
    float,
    typer.Option(
        "--value-floor",
        min=0,
        max=MAX_VALUE_FLOOR_USD,
        help="Leave out a benefit worth less than this many dollars a year to the cardholder (benefits "
        f"with no dollar estimate: the catalog's nominal value); 0: no floor. Default {DEFAULT_VALUE_FLOOR_USD:g}.",
    ),
]


EvaluationFloor = Annotated[
    float,
    typer.Option(
        "--value-floor",
        min=0,
        max=MAX_VALUE_FLOOR_USD,
        help="Evaluate the policies as shown with this value floor (dollars a year to the cardholder; "
        f"default 0: their rankings as they are; the service shows at least {DEFAULT_VALUE_FLOOR_USD:g}).",
    ),
]


DetractorWeight = Annotated[
    float,
    typer.Option(
        "--detractor-weight",
        min=0,
        max=MAX_DETRACTOR_WEIGHT,
        help="The NPS term: rank by score − this × the detractor chance a pitch adds to its call (the model "
        "folder's detractor model), and leave out a pitch not worth it; this is the adoptions given up per "
        "detractor avoided. 0, the default: off, nothing scored.",
    ),
]


@app.command()
def features(
    data: DataDir,
    out: Annotated[Path, typer.Option(help="Output file, .parquet or .csv.")],
    as_of: AsOf = None,
    config: Annotated[
        Path | None, typer.Option(help="Features config (YAML/JSON): extra columns to include or exclude.")
    ] = None,
    engine: ComputeEngine = "duckdb",
    spark_master: SparkMaster = None,
    spark_conf: SparkConfFile = None,
    quiet: Quiet = False,
) -> None:
    """Compute every cardholder's features as of a date (data strictly before it) and write them to a file."""
    from training.features_job import run_features
    from training.progress import cli_reporter
    from training.spark_data import open_engine

    with (
        open_engine(parse_engine(engine), data, spark_master, spark_conf) as spark,
        cli_reporter(quiet) as progress,
    ):
        result = run_features(data, parse_date(as_of), out, config, progress=progress, spark=spark)
    taken = ", ".join(result.extra_columns.taken) or "none"
    typer.echo(
        f"{result.out}: {result.rows:,} cardholders × {result.columns} columns as of {result.as_of} "
        f"in {result.seconds:.1f} s (extra columns taken: {taken})"
    )


@app.command()
def train(
    data: DataDir,
    out: ModelsDir = Path("models"),
    as_of: AsOf = None,
    oracle: OracleFile = None,
    promote: Annotated[
        bool,
        typer.Option(
            help="Put the new model in service if its held-out AUC and IPS adoptions are above the best "
            "baseline's and the current model's on the same held-out rows."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option(help="With --promote: promote past that check (recorded as forced in HISTORY).")
    ] = False,
    config: FeaturesConfig = None,
    catalog: CatalogFile = None,
    seed: Seed = 0,
    threads: Threads = None,
    value_floor: EvaluationFloor = 0.0,
    detractor_weight: DetractorWeight = 0.0,
    backtest_months: Annotated[
        int,
        typer.Option(
            min=0,
            max=MAX_TRAIN_BACKTEST_MONTHS,
            help="How many of the latest months to backtest within the run (each refit on the rows "
            "labelled before it; 0: none). `nba backtest` fits everything per month.",
        ),
    ] = TRAIN_BACKTEST_MONTHS,
    engine: ComputeEngine = "duckdb",
    spark_master: SparkMaster = None,
    spark_conf: SparkConfFile = None,
    objective: Annotated[
        str,
        typer.Option(
            help="What the model ranks by: adoption (the chance a cardholder starts using a benefit after "
            "a conversation) or uplift (the adoptions the conversation adds beyond what happens without it: "
            "a DR-learner beside the adoption model; needs controls). Saved in the manifest; the service "
            "ranks by it.",
        ),
    ] = DEFAULT_OBJECTIVE,
    quiet: Quiet = False,
) -> None:
    """Train a model version: features, training set, spend estimator, LightGBM model, evaluation, report."""
    from training.progress import cli_reporter
    from training.spark_data import open_engine
    from training.summary import print_train_summary
    from training.train_job import train_model
    from training.training_run import TrainOptions

    options = TrainOptions(
        as_of=parse_date(as_of),
        feature_config=config,
        catalog_path=catalog,
        oracle=oracle,
        promote=promote,
        force=force,
        seed=seed,
        threads=threads or usable_cpus(),
        backtest_months=backtest_months,
        arbitration=ArbitrationConfig(value_floor_usd=value_floor, detractor_weight=detractor_weight),
        objective=objective,
    )
    with (
        open_engine(parse_engine(engine), data, spark_master, spark_conf) as spark,
        cli_reporter(quiet) as progress,
    ):
        if spark is not None:
            options = dataclasses.replace(options, spark=spark)
        result = train_model(data, out, options, progress)
    print_train_summary(result)


@app.command()
def backtest(
    data: DataDir,
    months: Annotated[
        int,
        typer.Option(min=1, max=MAX_MONTHS, help="How many of the latest months to test, one model each."),
    ] = DEFAULT_MONTHS,
    as_of: AsOf = None,
    oracle: OracleFile = None,
    out: Annotated[
        Path, typer.Option(help="Folder for backtest.csv, backtest.json and backtest.png.")
    ] = Path("var/backtest"),
    config: FeaturesConfig = None,
    catalog: CatalogFile = None,
    seed: Seed = 0,
    feature_check: Annotated[
        bool,
        typer.Option(
            help="Look for the bank's own columns whose relation to adoption broke by the newest month "
            "(shuffled, then refit without): one more fit."
        ),
    ] = True,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Backtest over time: for each of the last N months, fit on the rows before it, test on it."""
    from training.backtest_job import run_backtest
    from training.progress import cli_reporter
    from training.summary import print_backtest
    from training.training_run import TrainOptions

    options = TrainOptions(
        as_of=parse_date(as_of),
        feature_config=config,
        catalog_path=catalog,
        oracle=oracle,
        seed=seed,
        threads=threads or usable_cpus(),
    )
    with cli_reporter(quiet) as progress:
        result = run_backtest(data, options, months, out, progress, feature_check)
    print_backtest(result)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="Model folder (models/<version>).")],
    data: DataDir,
    oracle: OracleFile = None,
    as_of: AsOf = None,
    value_floor: EvaluationFloor = 0.0,
    detractor_weight: DetractorWeight = 0.0,
    call_truth: Annotated[
        Path | None,
        typer.Option(
            "--call-truth",
            help="The generator's call truth (nba generate --call-truth): each policy's true adoptions per logged call.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate a stored model on a data directory's held-out period, beside the baselines."""
    from training.progress import cli_reporter
    from training.summary import print_evaluation
    from training.train_job import evaluate_model
    from training.training_run import TrainOptions

    with cli_reporter(quiet) as progress:
        evaluation = evaluate_model(
            model,
            data,
            TrainOptions(
                as_of=parse_date(as_of),
                oracle=oracle,
                call_truth=call_truth,
                arbitration=ArbitrationConfig(value_floor_usd=value_floor, detractor_weight=detractor_weight),
            ),
            progress,
        )
    print_evaluation(evaluation)


ModelOption = Annotated[
    Path, typer.Option("--model", help="Model folder, or a models folder (its CURRENT version is used).")
]
CallReason = Annotated[
    str, typer.Option(help="Why the cardholder called: general, payment, travel_notice, ...")
]
TopK = Annotated[
    int | None,
    typer.Option(
        "--top",
        min=1,
        max=MAX_SUGGESTIONS,
        help=f"How many suggestions (1-{MAX_SUGGESTIONS}; default: the arbitration's top_k, 3).",
    ),
]
ProfilesOption = Annotated[
    Path | None,
    typer.Option(
        "--profiles",
        help="Profile snapshot folder, or a profiles folder (its CURRENT snapshot), instead of computing "
        "profiles from --data (which still gives the catalog).",
    ),
]


def _floor_config(value_floor_usd: float, detractor_weight: float = 0.0) -> EngineConfig:
    return EngineConfig(
        arbitration=ArbitrationConfig(value_floor_usd=value_floor_usd, detractor_weight=detractor_weight)
    )


@app.command()
def recommend(
    cardholder_id: Annotated[str, typer.Argument(help="The cardholder on the call.")],
    data: DataDir,
    model: ModelOption = Path("models"),
    call_reason: CallReason = "general",
    top: TopK = None,
    as_of: AsOf = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    profiles: ProfilesOption = None,
    value_floor: ValueFloor = DEFAULT_VALUE_FLOOR_USD,
    detractor_weight: DetractorWeight = 0.0,
) -> None:
    """Show the talking points the engine would give the agent for one cardholder's call."""
    import json

    from training.engine_job import format_decision, load_engine

    config = _floor_config(value_floor, detractor_weight)
    engine = load_engine(model, data, parse_date(as_of), config, profiles=profiles)
    decision = engine.decide(cardholder_id, call_reason, top)
    if as_json:
        body = dataclasses.asdict(decision)
        # The engine's priority is the `score` of the public outputs (API, score files, feedback store).
        body["suggestions"] = [
            {
                PUBLIC_FIELD_NAMES.get(name, name): value
                for name, value in suggestion.items()
                if name != "features"
            }
            for suggestion in body["suggestions"]
        ]
        body["scorer"] = engine.scorer.name
        typer.echo(json.dumps(body, indent=2))
    else:
        typer.echo(format_decision(decision))


@app.command()
def score(
    data: DataDir,
    out: Annotated[Path, typer.Option(help="Output file, .csv or .parquet.")],
    model: ModelOption = Path("models"),
    as_of: AsOf = None,
    top: TopK = None,
    call_reason: CallReason = "general",
    profiles: ProfilesOption = None,
    value_floor: ValueFloor = DEFAULT_VALUE_FLOOR_USD,
    detractor_weight: DetractorWeight = 0.0,
    engine: ComputeEngine = "duckdb",
    spark_master: SparkMaster = None,
    spark_conf: SparkConfFile = None,
) -> None:
    """Batch-score every cardholder: cardholder_id, rank, benefit_id, score, diversity for the top K of each.

    Only benefits worth the value floor to the cardholder are ranked (--value-floor): a cardholder may get
    fewer than K rows, or none.

    score is the arbitration priority. Ranks follow it, except that the diversity rule puts a suggestion
    that shares a spend category with one ranked above it after the others: such a row ranks below a
    lower score and has diversity true.

    With --engine spark the cardholders are scored on Spark (mapInArrow), each partition by the same
    engine, from the --profiles snapshot or from the feature SQL run on Spark; the file written is the same.
    """
    from nba.vocab import CALL_REASONS
    from training.engine_job import load_engine, score_all

    if call_reason not in CALL_REASONS:
        raise typer.BadParameter(
            f"must be one of {', '.join(CALL_REASONS)}, got {call_reason!r}", param_hint="--call-reason"
        )
    if out.suffix not in (".csv", ".parquet"):
        raise typer.BadParameter(f"must end in .csv or .parquet, got {out.name!r}", param_hint="--out")
    if parse_engine(engine) == "spark":
        from training.spark_score import score_on_spark

        config = _floor_config(value_floor, detractor_weight)
        day = parse_date(as_of)
        result = score_on_spark(
            spark_master, spark_conf, model, data, profiles, config, top, call_reason, out, day
        )
    else:
        config = _floor_config(value_floor, detractor_weight)
        scorer = load_engine(model, data, parse_date(as_of), config, profiles=profiles)
        result = score_all(scorer, top, call_reason, out)
    typer.echo(
        f"{result.out}: {result.rows:,} rows for {result.cardholders:,} cardholders in {result.seconds:.1f} s"
    )


@app.command()
def drift(
    model: ModelOption,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Data directory: its newest days of presentations are compared with the model's training "
            "rows (merge exported feedback into it to see observed adoption beside p_adopt).",
        ),
    ] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(
            "--profiles",
            help="Profile snapshot folder, or a profiles folder (its CURRENT): compared with the training data.",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the report to this file (Markdown).")] = None,
    as_of: AsOf = None,
    window_days: Annotated[
        int, typer.Option(min=1, max=366, help="How many of the newest days are 'now' (default 30).")
    ] = 30,
    top: Annotated[
        int, typer.Option(min=1, max=1000, help="How many of the most shifted features to list.")
    ] = 15,
    catalog: Annotated[
        Path | None, typer.Option(help="Benefit catalog (default: DIR/catalog.yaml, else the shipped one).")
    ] = None,
    quiet: Quiet = False,
) -> None:
    """What shifted since the model was trained: PSI per feature, outcome rates per benefit, scores."""
    from training.drift_job import run_drift
    from training.engine_job import resolve_model_dir
    from training.progress import cli_reporter

    with cli_reporter(quiet) as progress:
        result = run_drift(
            resolve_model_dir(model),
            data,
            profiles=profiles,
            as_of=parse_date(as_of),
            window_days=window_days,
            catalog_path=catalog,
            progress=progress,
        )
    text = result.render(top)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    typer.echo(text)


@app.command()
def insights(
    out: Annotated[
        Path, typer.Option(help="Folder for insights.html and one CSV per table (created if missing).")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Data directory: its calls, conversations, nps and cardholders (for product)."
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Feedback database URL (sqlite:///path/feedback.db or postgresql://...): its calls, outcomes and "
            "NPS, read through export-feedback's export; with --data too, the two are joined and calls they "
            "disagree on are listed and left out.",
        ),
    ] = None,
    min_agent_calls: Annotated[
        int,
        typer.Option(
            min=1, max=1_000_000, help="Agents are listed from this many answered calls up (default 30)."
        ),
    ] = INSIGHTS_MIN_AGENT_CALLS,
    quiet: Quiet = False,
) -> None:
    """NPS by what happened to the suggestions, benefit, call reason, product, agent and week, with intervals."""
    from training.insights_job import run_insights
    from training.progress import cli_reporter

    with cli_reporter(quiet) as progress:
        result = run_insights(data, db, out, min_agent_calls=min_agent_calls, progress=progress)
    typer.echo(str(result))


@app.command("export-feedback")
def export_feedback(
    db: Annotated[
        str,
        typer.Option(
            "--db",
            envvar="NBA_DATABASE_URL",
            help="Feedback database URL: sqlite:///path/feedback.db or postgresql://user@host:5432/db.",
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Data directory for calls, conversations and nps (created if missing).")
    ],
    file_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Export the logged calls, conversations (with their current outcomes) and NPS answers for training."""
    from training.export_job import export_feedback as run_export

    if file_format not in ("csv", "parquet"):
        raise typer.BadParameter(f"must be csv or parquet, got {file_format!r}", param_hint="--format")
    typer.echo(str(run_export(db, out, "csv" if file_format == "csv" else "parquet")))


@functools.cache
def _command() -> Callable[..., Any]:
    # Calling `app` builds click's command tree from every command's signature (~20 ms of CPU) each time:
    # built once per process instead (a process of the test suite runs `main` some seventy times).
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs a command; bad input is one line on stderr and a non-zero exit, never a traceback."""
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        result = _command()(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        return int(exc.exit_code)
    except ValidationError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        if exc.total > len(exc.problems):
            typer.echo(f"error: {exc.total - len(exc.problems)} more problems not listed", err=True)
        return 1
    except NbaError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except Exception as exc:
        # A bug, not bad input: still one line, with the traceback one variable away.
        if os.environ.get("NBA_DEBUG"):
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (set NBA_DEBUG=1 for the traceback)", err=True
        )
        return 70
    return result if isinstance(result, int) else 0


def main_entry() -> None:
    """The `nba` console script."""
    sys.exit(main())


if __name__ == "__main__":
    main_entry()
