"""Running the Alembic migrations in code: no ``alembic.ini`` is needed at run time.

Both functions take a synchronous-facing :class:`~sqlalchemy.Connection`; the async
adapters call them through ``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: Our own version table, so a database shared with an application that also uses
#: Alembic (and its ``alembic_version`` table) keeps the two histories apart.
VERSION_TABLE = "flowkeeper_alembic_version"

#: Key of the PostgreSQL advisory lock held while migrating ("flowkeep" in ASCII).
MIGRATION_LOCK_KEY = 0x666C6F776B656570


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The revision the code expects (the single head of the migration scripts)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001_initial
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision recorded in the database, or None for an empty database."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade to ``revision`` inside the caller's transaction (the caller commits)."""
    command.upgrade(_config(connection), revision)


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def in_process_lock() -> asyncio.Lock:
    """The lock serialising migrations run from this process on the running event loop."""
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock
