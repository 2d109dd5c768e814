"""Service command line: `nba serve` and `nba api-keys add` → the API on 127.0.0.1 and the keys it accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError as PydanticValidationError

from nba.errors import DataError

keys_app = typer.Typer(
    help="Create API keys for the service (the token is printed once; only its SHA-256 is stored).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def serve(
    models_dir: Annotated[
        Path | None, typer.Option(help="Models folder; its CURRENT is served. [NBA_MODELS_DIR]")
    ] = None,
    profiles_dir: Annotated[
        Path | None, typer.Option(help="Profile snapshots folder; its CURRENT is served. [NBA_PROFILES_DIR]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory with catalog.yaml. [NBA_DATA_DIR]")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Feedback database (sqlite:///... or postgresql://...). [NBA_DATABASE_URL]"),
    ] = None,
    api_keys_file: Annotated[
        Path | None, typer.Option(help="API keys file (JSON). [NBA_API_KEYS_FILE]")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind. [NBA_HOST, default 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port. [NBA_PORT, default 8000]")] = None,
    production: Annotated[
        bool | None,
        typer.Option("--production/--development", help="Production refuses to start without keys."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes sharing the port. [NBA_WORKERS, default 1]"),
    ] = None,
) -> None:
    """Serve the API and the agent page (flags override the NBA_ environment variables)."""
    from api.main import serve as run
    from api.settings import Settings

    given: dict[str, Any] = {
        "models_dir": models_dir,
        "profiles_dir": profiles_dir,
        "data_dir": data_dir,
        "database_url": database_url,
        "api_keys_file": api_keys_file,
        "host": host,
        "port": port,
        "production": production,
        "workers": workers,
    }
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        raise DataError(f"setting `{'.'.join(map(str, error['loc']))}`: {error['msg']}") from None
    workers_text = f" ({settings.workers} workers)" if settings.workers > 1 else ""
    typer.echo(
        f"nba: serving on http://{settings.host}:{settings.port}{workers_text} — agent panel at /agent",
        err=True,
    )
    run(settings)


@keys_app.command("add")
def add(
    name: Annotated[str, typer.Option(help="Who holds the key (a desk, a team, a person on call).")],
    role: Annotated[
        str, typer.Option(help="agent (suggestions, outcomes, NPS) or admin (also reload, model).")
    ],
    file: Annotated[Path, typer.Option(help="The keys file the service reads (created if missing).")] = Path(
        "var/api_keys.json"
    ),
) -> None:
    """Create a key: prints the token once (give it to the desktop); the file keeps only its SHA-256."""
    from api.keys import add_key

    if role not in ("agent", "admin"):
        raise typer.BadParameter(f"must be agent or admin, got {role!r}", param_hint="--role")
    token = add_key(file, name, "agent" if role == "agent" else "admin")
    typer.echo(token)
    typer.echo(f"added {role} key {name!r} to {file}; the token above is not stored anywhere", err=True)
