"""Persistence: the :class:`Store` port and its SQLite and PostgreSQL adapters.

``create_store(url)`` picks the adapter from the URL scheme::

    store = create_store("sqlite:///flowkeeper.db")            # or sqlite+aiosqlite://
    store = create_store("postgresql://user@host/flowkeeper")  # or postgres://, postgresql+asyncpg://
    await store.open()
    await store.migrate()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkeeper.store.port import InstancePage, SchemaStatus, Store
from flowkeeper.store.urls import DatabaseUrl

if TYPE_CHECKING:
    from flowkeeper.store.base import SqlStore

__all__ = ["InstancePage", "SchemaStatus", "Store", "create_store"]


def create_store(
    url: str,
    *,
    min_pool_size: int = 10,
    max_pool_size: int = 100,
    connect_timeout: float = 30,
    command_timeout: float = 60,
    echo: bool = False,
) -> Store:
    """A store for ``url`` (not yet connected: call ``open()``, or let the first call do it).

    Pool sizes and timeouts follow the operations guide's connection-string defaults
    (``Min Pool Size=10;Max Pool Size=100;Connection Timeout=30;Command Timeout=60``):
    ``open()`` makes ``min_pool_size`` connections, the pool grows on demand to
    ``max_pool_size`` and keeps what it opened (no churn under load),
    ``connect_timeout`` bounds connecting and waiting for a pooled connection,
    ``command_timeout`` each statement. On SQLite there is one writer
    connection, readers are capped at 8 (each connection is a thread) and
    ``command_timeout`` is the busy timeout. ``ConfigurationError`` for an unsupported URL.
    """
    parsed = DatabaseUrl.parse(url)
    # Imported here so that importing the port does not import the adapters' drivers.
    store_class: type[SqlStore]
    if parsed.backend == "sqlite":
        from flowkeeper.store.sqlite import SqliteStore

        store_class = SqliteStore
    else:
        from flowkeeper.store.postgres import PostgresStore

        store_class = PostgresStore
    return store_class(
        parsed,
        min_pool_size=min_pool_size,
        max_pool_size=max_pool_size,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        echo=echo,
    )
