"""Profiles command line: `nba profiles build|list|promote` → profile snapshot folders and the one in service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nba.errors import DataError
from nba.profiles import (
    CURRENT_FILE,
    SnapshotInfo,
    list_snapshots,
    pull_snapshot,
    read_current_snapshot,
    set_current_snapshot,
)
from training.cli_options import (
    AsOf,
    ComputeEngine,
    Quiet,
    SparkConfFile,
    SparkMaster,
    parse_date,
    parse_engine,
)

profiles_app = typer.Typer(
    help="Build profile snapshots, list them, or put one in service.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ProfilesDir = Annotated[
    Path,
    typer.Option(
        "--dir", help="Folder holding one folder per snapshot (named by its as-of date) and CURRENT."
    ),
]


@profiles_app.command("build")
def build_command(
    data: Annotated[Path, typer.Option("--data", help="Data directory with the contract's tables.")],
    model: Annotated[
        Path,
        typer.Option(help="Model folder, or a models folder (its CURRENT version): gives the extra columns."),
    ],
    out: Annotated[Path, typer.Option(help="Profiles folder to write the snapshot into.")] = Path("profiles"),
    as_of: AsOf = None,
    promote: Annotated[bool, typer.Option(help="Put the new snapshot in service (CURRENT).")] = False,
    engine: ComputeEngine = "duckdb",
    spark_master: SparkMaster = None,
    spark_conf: SparkConfFile = None,
    quiet: Quiet = False,
) -> None:
    """Compute every cardholder's features as of a date and write them as a checked snapshot folder."""
    from training.engine_job import build_snapshot
    from training.progress import cli_reporter
    from training.spark_data import open_engine

    with (
        open_engine(parse_engine(engine), data, spark_master, spark_conf) as spark,
        cli_reporter(quiet) as progress,
    ):
        result = build_snapshot(data, model, out, parse_date(as_of), promote, progress, spark)
    m = result.manifest
    typer.echo(
        f"{result.folder}: {m.cardholders:,} cardholders × {len(m.feature_names)} features as of {m.as_of} "
        f"in {result.seconds:.1f} s (spend estimates of model {', '.join(m.estimates) or 'none'})"
    )
    if result.promoted:
        typer.echo(f"promoted {m.as_of} (was {result.previous or 'none'})")


def format_snapshot(info: SnapshotInfo) -> str:
    """One line per snapshot: a star for the one in service, as-of date, when written, cardholders or its problem."""
    star = "*" if info.is_current else " "
    if info.problem is not None:
        return f"{star} {info.as_of}  FAILED  {info.problem}"
    created = info.created_at.strftime("%Y-%m-%d %H:%M:%S") if info.created_at else "?"
    return f"{star} {info.as_of}  ok      created {created} UTC  {info.cardholders or 0:>12,} cardholders"


@profiles_app.command("list")
def list_command(profiles: ProfilesDir = Path("profiles")) -> None:
    """List snapshots, newest first: the one in service (*), and any that fail their checks."""
    infos = list_snapshots(profiles)
    if not infos:
        typer.echo(f"{profiles}: no snapshots yet")
        return
    for info in infos:
        typer.echo(format_snapshot(info))
    current = read_current_snapshot(profiles)
    if current is not None and current not in {info.as_of.isoformat() for info in infos}:
        raise DataError(f"{profiles / CURRENT_FILE}: names {current}, which is not in {profiles}")


@profiles_app.command("pull")
def pull_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A snapshot folder written elsewhere (named by its as-of date), e.g. copied down from the "
            "lake or on a mounted share."
        ),
    ],
    profiles: ProfilesDir = Path("profiles"),
    promote: Annotated[
        bool, typer.Option(help="Put the snapshot in service (CURRENT) once it arrived.")
    ] = False,
) -> None:
    """Copy a snapshot folder into the profiles folder, checking every file's SHA-256 on arrival."""
    manifest = pull_snapshot(source, profiles)
    typer.echo(
        f"{profiles / manifest.as_of.isoformat()}: {manifest.cardholders:,} cardholders as of {manifest.as_of}, "
        f"{len(manifest.files)} files checked"
    )
    if promote:
        previous = set_current_snapshot(profiles, manifest.as_of)
        typer.echo(f"promoted {manifest.as_of} (was {previous or 'none'})")


@profiles_app.command("promote")
def promote_command(
    as_of: Annotated[
        str, typer.Argument(help="The snapshot to put in service: its as-of date, e.g. 2026-10-01.")
    ],
    profiles: ProfilesDir = Path("profiles"),
) -> None:
    """Put a snapshot in service after checking every file of its folder."""
    previous = set_current_snapshot(profiles, as_of)
    if previous == as_of:
        typer.echo(f"{as_of} is already in service")
    else:
        typer.echo(f"promoted {as_of} (was {previous or 'none'})")
