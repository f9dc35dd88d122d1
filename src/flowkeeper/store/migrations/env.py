"""Alembic environment.

At run time :mod:`flowkeeper.store.schema` passes an open (sync-facing) connection in
``config.attributes["connection"]``; the upgrade then joins the caller's transaction.
From the ``alembic`` command line (developers writing a revision) the URL is read from
``FLOWKEEPER_DATABASE_URL`` and an async engine is used, as the store does.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from flowkeeper.store.schema import MIGRATION_LOCK_KEY, VERSION_TABLE
from flowkeeper.store.tables import metadata
from flowkeeper.store.urls import DatabaseUrl


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together must not migrate concurrently: the second one
            # waits here, then finds the version table already at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(DatabaseUrl.parse(url).sqlalchemy_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("FLOWKEEPER_DATABASE_URL")
    if not url:
        raise RuntimeError("set FLOWKEEPER_DATABASE_URL to run Alembic from the command line")
    asyncio.run(_run_from_url(url))


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; use `flowkeeper db upgrade`")
_main()
