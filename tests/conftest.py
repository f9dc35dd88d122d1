"""Shared fixtures: databases for the store, on SQLite and PostgreSQL.

- ``store_url``: the URL of a fresh, empty database, parametrized ``sqlite`` (a file under
  ``tmp_path``) and ``postgres`` (marked ``postgres``). PostgreSQL comes from
  ``FLOWKEEPER_TEST_POSTGRES_URL`` (an admin URL such as
  ``postgresql://postgres@127.0.0.1:5432/postgres``); without it the postgres cases are
  skipped, unless ``CI=true``, where they fail.
- ``store``: a ``Store`` on ``store_url``, opened and migrated, closed afterwards.
- ``store_factory``: opens more stores on the same database (other "replicas"), all
  closed afterwards.

Isolation under pytest-xdist: each worker process creates its own PostgreSQL database
(``fk_<worker>_<random>``, dropped ``WITH (FORCE)`` at the end of the session) and each
test gets it back empty: no schema at all for ``store_url`` alone; for ``store``, the
schema at head with every table emptied (a few milliseconds, where re-migrating costs
~130 ms and ``CREATE DATABASE`` per test more). SQLite tests get a new file under
``tmp_path`` (for ``store``, a copy of a file migrated once per worker).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.store import Store, create_store
from flowkeeper.store.schema import VERSION_TABLE, head_revision
from flowkeeper.store.tables import metadata
from flowkeeper.store.urls import DatabaseUrl

POSTGRES_URL_ENV = "FLOWKEEPER_TEST_POSTGRES_URL"

#: Small pools: many xdist workers share one server (max_connections is often 100).
TEST_POOL = {"min_pool_size": 1, "max_pool_size": 10}


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    message = (
        f"{POSTGRES_URL_ENV} is not set, so the PostgreSQL cases cannot run "
        f"(e.g. {POSTGRES_URL_ENV}=postgresql://postgres@127.0.0.1:5432/postgres)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; in CI they must run, not be skipped", pytrace=False)
    pytest.skip(message)


def _libpq_url(url: str, database: str | None = None) -> str:
    """``url`` as plain ``postgresql://`` for asyncpg itself, optionally for another database."""
    parsed = DatabaseUrl.parse(url).url.set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _execute(url: str, *statements: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_libpq_url(url), timeout=30)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _reset_postgres(url: str, *, migrated: bool) -> None:
    """Empty the worker's database: no schema at all, or (``migrated``) empty tables at head."""
    import asyncpg

    connection = await asyncpg.connect(_libpq_url(url), timeout=30)
    try:
        # A store a test forgot to close may still hold a lock: fail fast, end those
        # sessions, and try once more rather than hang.
        await connection.execute("SET lock_timeout = '5s'")
        for attempt in range(2):
            try:
                if migrated and await _at_head(connection):
                    # Deleting a handful of rows is far cheaper than re-creating the schema.
                    await connection.execute(
                        "; ".join(f"DELETE FROM {t.name}" for t in reversed(metadata.sorted_tables))
                    )
                else:
                    await connection.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
                return
            except asyncpg.exceptions.LockNotAvailableError:
                if attempt:
                    raise
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
    finally:
        await connection.close()


async def _at_head(connection: Any) -> bool:
    exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{VERSION_TABLE}")
    if not exists:
        return False
    return bool(await connection.fetchval(f"SELECT version_num FROM {VERSION_TABLE}") == head_revision())


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """This worker's PostgreSQL database (created on first use, dropped at the end)."""
    admin = _postgres_admin_url()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"fk_{worker}_{secrets.token_hex(4)}"
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield _libpq_url(admin, name)
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def _sqlite_migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per worker; copying it beats migrating per test."""
    path = tmp_path_factory.mktemp("template") / "flowkeeper.db"

    async def migrate() -> None:
        store = create_store(f"sqlite:///{path}")
        try:
            await store.migrate()
        finally:
            await store.close()  # the last connection closing folds the WAL into the file

    asyncio.run(migrate())
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database with no data: a SQLite file, or this worker's PostgreSQL database.

    It is empty (no schema) unless the test also uses ``store``, which migrates it
    anyway; then it is prepared at head with empty tables, which is much faster.
    """
    migrated = "store" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "flowkeeper.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("_sqlite_migrated_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_reset_postgres(url, migrated=migrated))
    return url


StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture
async def store_factory(store_url: str) -> AsyncIterator[StoreFactory]:
    """``await store_factory()`` opens another store on ``store_url`` (closed at teardown)."""
    opened: list[Store] = []

    async def open_store() -> Store:
        store = create_store(store_url, **TEST_POOL)
        await store.open()
        opened.append(store)
        return store

    try:
        yield open_store
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    """A store on ``store_url``, opened and migrated to head."""
    store = await store_factory()
    await store.migrate()
    return store


def _dump_tasks(signum: int, frame: Any) -> None:
    """``kill -USR1 <pytest worker>``: the running event loop's tasks and their stacks go
    to ``/tmp/flowkeeper-tasks-<pid>.txt`` (for a test stuck in an event loop, where a
    thread dump shows only ``select``)."""
    import io

    try:
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:
        tasks = set()
    out = io.StringIO()
    out.write(f"{len(tasks)} task(s); test: {os.environ.get('PYTEST_CURRENT_TEST')}\n")
    for task in tasks:
        out.write(f"\n{task!r}\n")
        task.print_stack(file=out)
    Path(f"/tmp/flowkeeper-tasks-{os.getpid()}.txt").write_text(out.getvalue(), encoding="utf-8")


def pytest_configure(config: pytest.Config) -> None:
    import signal

    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _dump_tasks)
