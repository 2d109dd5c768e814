"""Alembic environment: the feedback store's connection (or `sqlalchemy.url`) → its schema at a revision.

`FeedbackStore.migrate` hands in an open connection through `config.attributes["connection"]`; the
`sqlalchemy.url` option is for running Alembic by hand. There is no `alembic.ini` at runtime.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

# Any constant works; it only has to be the same for every process migrating the same database.
_PG_MIGRATION_LOCK = 0x6E62_6131


def _run(connection: Connection) -> None:
    # transactional_ddl: the whole upgrade is one transaction on SQLite too (the store emits BEGIN
    # itself), so a failed migration leaves nothing half done.
    context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two services starting at once: the second waits here, then finds the schema at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set the `sqlalchemy.url` option or pass a connection in config.attributes")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as own:
            _run(own)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
