"""Database command line: `nba db upgrade` → the feedback database's schema at the newest revision."""

from __future__ import annotations

from typing import Annotated

import typer

db_app = typer.Typer(
    help="The feedback database: migrate it before a fleet of replicas starts.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@db_app.command("upgrade")
def upgrade(
    database_url: Annotated[
        str,
        typer.Option(
            "--database-url",
            envvar="NBA_DATABASE_URL",
            help="Feedback database URL: sqlite:///path/feedback.db or postgresql://user@host:5432/db.",
        ),
    ],
) -> None:
    """Bring the feedback database's schema to the newest revision (a no-op when it is there).

    The service migrates at start-up too, under a lock; with many replicas, run this once before them.
    """
    from nba.feedback import FeedbackStore

    store = FeedbackStore(database_url)
    try:
        store.migrate()
        revision = store.revision()
    finally:
        store.dispose()
    typer.echo(f"feedback database {store.shown_url}: at revision {revision}")
