"""Models command line: `nba models list|promote|rollback` → the registry's model folders and the one in service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from nba.errors import ModelError, NotFoundError
from nba.model import (
    CURRENT_FILE,
    DEFAULT_PROMOTION_METRIC,
    ModelInfo,
    ModelManifest,
    gate_promotion,
    is_version,
    list_models,
    load_model_dir,
    read_current,
    rollback,
    set_current,
)

MAX_METRIC_COLUMNS: Final = 3
_UNBOUNDED_WIDTH: Final = 1000

models_app = typer.Typer(
    help="List trained models, put one in service, or roll back to the previous one.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ModelsDir = Annotated[
    Path, typer.Option("--models", help="Folder holding one folder per model version and CURRENT.")
]


def headline_metrics(infos: list[ModelInfo], chosen: list[str] | None) -> list[str]:
    """The metric columns to show: the chosen ones, else the promotion metric first, then others by name."""
    if chosen:
        return chosen
    names = sorted({name for info in infos for name in info.metrics})
    if DEFAULT_PROMOTION_METRIC in names:
        names.remove(DEFAULT_PROMOTION_METRIC)
        names.insert(0, DEFAULT_PROMOTION_METRIC)
    return names[:MAX_METRIC_COLUMNS]


def render_models_table(infos: list[ModelInfo], metrics: list[str]) -> Table:
    """One row per model: a star for the one in service, version, time, whether it checks out, metrics."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("check", no_wrap=True)
    for name in metrics:
        table.add_column(name, justify="right", no_wrap=True)
    for info in infos:
        table.add_row(
            "*" if info.is_current else "",
            info.version,
            info.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            Text("ok") if info.ok else Text("FAILED", style="bold red"),
            *(f"{info.metrics[name]:.4g}" if name in info.metrics else "" for name in metrics),
        )
    return table


@models_app.command("list")
def list_command(
    models: ModelsDir = Path("models"),
    metric: Annotated[
        list[str] | None,
        typer.Option(
            help="Metric to show as a column (repeatable). Default: the promotion metric and a few more."
        ),
    ] = None,
) -> None:
    """List model versions, newest first: metrics, the one in service (*), and any that fail their checks."""
    infos = list_models(models)
    if not infos:
        typer.echo(f"{models}: no models yet")
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=_UNBOUNDED_WIDTH)  # piped: never cut a column to 80 characters
    console.print(render_models_table(infos, headline_metrics(infos, metric)))
    for info in infos:
        if info.problem is not None:
            # Problems are long: one plain line each, under the table, so no column squeezes them.
            typer.echo(f"{info.version}: {info.problem}")
    # A broken or dangling CURRENT is listed after the table, which is still worth seeing.
    current = read_current(models)
    if current is not None and current not in {info.version for info in infos}:
        raise ModelError(f"{models / CURRENT_FILE}: names {current}, which is not in {models}")


@models_app.command("promote")
def promote_command(
    version: Annotated[
        str, typer.Argument(help="The version to put in service, e.g. 20261123T120501Z-3f9a2c1.")
    ],
    models: ModelsDir = Path("models"),
    force: Annotated[
        bool,
        typer.Option(
            help="Put it in service even if its held-out numbers are not above the baselines' and the "
            "current model's (recorded as forced in HISTORY)."
        ),
    ] = False,
) -> None:
    """Put a model version in service after checking every file of its folder and the promotion gate."""
    # An unknown or malformed version gets set_current's one-line error below.
    challenger = (
        load_model_dir(models / version) if is_version(version) and (models / version).is_dir() else None
    )
    current = _current_or_none(models)
    if current == version:
        typer.echo(f"{version} is already in service")
        return
    forced = False
    if challenger is not None:
        decision = gate_promotion(challenger, _champion_manifest(models, current), force=force)
        if not decision.promote:
            raise ModelError(decision.reason)
        if decision.warning:
            typer.echo(decision.warning, err=True)
        forced = decision.forced
    previous = set_current(models, version, forced=forced)
    typer.echo(f"promoted {version} (was {previous or 'none'}){' — forced past the gate' if forced else ''}")


def _current_or_none(models: Path) -> str | None:
    try:
        return read_current(models) if models.is_dir() else None
    except ModelError:
        return None  # a broken CURRENT is what promoting a good version repairs


def _champion_manifest(models: Path, current: str | None) -> ModelManifest | None:
    if current is None:
        return None
    try:
        return load_model_dir(models / current)
    except (ModelError, NotFoundError):
        return None  # a broken model in service is no reason to refuse a good one


@models_app.command("rollback")
def rollback_command(models: ModelsDir = Path("models")) -> None:
    """Put back the version that was in service before the present one."""
    current = read_current(models)
    target = rollback(models)
    typer.echo(f"rolled back to {target} (was {current})")
