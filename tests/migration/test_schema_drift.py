"""The migrations build exactly the schema of ``flowkeeper.store.tables`` (on both databases).

Two checks: Alembic's own comparison (``compare_metadata``: tables, columns, types,
nullability, indexes, foreign keys) must find nothing to change; and, because Alembic
does not compare everything (partial-index predicates, INCLUDE columns, ON DELETE),
the reflected migrated schema must equal the reflection of ``metadata.create_all``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from flowkeeper.store import SchemaStatus, create_store
from flowkeeper.store.schema import VERSION_TABLE, head_revision
from flowkeeper.store.tables import metadata
from flowkeeper.store.urls import DatabaseUrl

EXPECTED_SCHEMA = "expected"


def _snapshot(conn: Connection, schema: str | None) -> dict[str, Any]:
    """Everything about the tables that a migration could get wrong, normalised."""
    inspector = inspect(conn)
    tables = sorted(t for t in inspector.get_table_names(schema=schema) if t != VERSION_TABLE)
    snapshot: dict[str, Any] = {}
    for table in tables:
        snapshot[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"])
                for c in inspector.get_columns(table, schema=schema)
            ],
            "primary_key": inspector.get_pk_constraint(table, schema=schema),
            "foreign_keys": sorted(
                (fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"], str(fk.get("options")))
                for fk in inspector.get_foreign_keys(table, schema=schema)
            ),
            "indexes": sorted(
                (
                    ix["name"],
                    tuple(ix["column_names"]),
                    bool(ix["unique"]),
                    sorted((k, str(v)) for k, v in ix.get("dialect_options", {}).items()),
                )
                for ix in inspector.get_indexes(table, schema=schema)
            ),
        }
    return snapshot


async def test_schema_status_before_and_after_migrate(store_url: str) -> None:
    store = create_store(store_url, min_pool_size=1, max_pool_size=2)
    try:
        assert await store.schema_status() == SchemaStatus(current=None, head=head_revision())
        await store.migrate()
        status = await store.schema_status()
        assert status.current == head_revision() == "0007_fire_timers_ahead"
        assert status.up_to_date
    finally:
        await store.close()


async def test_migrations_build_exactly_the_declared_schema(store_url: str, tmp_path: Path) -> None:
    store = create_store(store_url, min_pool_size=1, max_pool_size=2)
    try:
        await store.migrate()
    finally:
        await store.close()

    parsed = DatabaseUrl.parse(store_url)
    engine = create_async_engine(parsed.sqlalchemy_url)
    try:
        async with engine.begin() as conn:
            if parsed.backend == "sqlite":
                # SQLite's "schemas" are attached database files.
                expected_file = tmp_path / "expected.db"
                await conn.exec_driver_sql(f"ATTACH DATABASE '{expected_file}' AS {EXPECTED_SCHEMA}")
            else:
                await conn.execute(text(f"CREATE SCHEMA {EXPECTED_SCHEMA}"))
            translated = await conn.execution_options(schema_translate_map={None: EXPECTED_SCHEMA})
            await translated.run_sync(metadata.create_all)

            def compare(sync_conn: Connection) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
                context = MigrationContext.configure(
                    sync_conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
                )
                return (
                    compare_metadata(context, metadata),
                    _snapshot(sync_conn, None),
                    _snapshot(sync_conn, EXPECTED_SCHEMA),
                )

            diffs, migrated, declared = await conn.run_sync(compare)
            await conn.rollback()
    finally:
        await engine.dispose()

    assert diffs == []
    assert set(migrated) == {t.name for t in metadata.sorted_tables}
    for table in metadata.sorted_tables:
        assert {ix["name"] for ix in _index_rows(migrated, table.name)} == {ix.name for ix in table.indexes}
    assert migrated == declared


def _index_rows(snapshot: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [{"name": name} for name, *_ in snapshot[table]["indexes"]]


@pytest.mark.parametrize(
    "name",
    [
        "ix_workflow_instance_status_created_on",
        "ix_workflow_bookmark_processing",
        "ix_workflow_outbox_processing",
    ],
)
def test_the_guides_critical_indexes_are_declared(name: str) -> None:
    assert name in {ix.name for table in metadata.sorted_tables for ix in table.indexes}


async def test_upgrade_from_the_first_revision_keeps_the_data(store_url: str) -> None:
    """A database at 0001 with instances in it upgrades in place, and 0002 goes down again."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import insert

    from flowkeeper.records import EventRecord, InstanceStatus
    from flowkeeper.store import schema
    from flowkeeper.store.tables import workflow_bookmark, workflow_instance

    engine = create_async_engine(DatabaseUrl.parse(store_url).sqlalchemy_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema.upgrade, "0001_initial")
            # The 0001 tables are unchanged at head: the declared ones can write to them.
            then = datetime(2026, 1, 1, tzinfo=UTC)
            await conn.execute(
                insert(workflow_instance).values(
                    id="old",
                    namespace="tests",
                    name="greet",
                    version="1.0.0",
                    status="suspended",
                    row_version=1,
                    fencing_token=0,
                    log_seq=0,
                    created_on=then,
                    updated_on=then,
                )
            )
            await conn.execute(
                insert(workflow_bookmark).values(
                    id="old-b",
                    instance_id="old",
                    activity_id="/do/0/wait",
                    kind="event",
                    is_consumed=False,
                    created_on=then,
                )
            )
    finally:
        await engine.dispose()

    store = create_store(store_url, min_pool_size=1, max_pool_size=2)
    try:
        assert (await store.schema_status()).current == "0001_initial"
        await store.migrate()
        assert (await store.schema_status()).up_to_date
        assert await store.record_event(EventRecord("k", "1", "tests", "com.example.ping", {}))
        assert await store.deliver_event("old-b", "k", {"n": 1})
        assert (await store.get_instance("old")).status is InstanceStatus.RUNNING
    finally:
        await store.close()

    engine = create_async_engine(DatabaseUrl.parse(store_url).sqlalchemy_url)
    try:
        async with engine.begin() as conn:

            def downgrade(sync_conn: Connection) -> list[str]:
                command.downgrade(schema._config(sync_conn), "0001_initial")
                return inspect(sync_conn).get_table_names()

            tables = await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert "workflow_event" not in tables
    assert "workflow_event_delivery" not in tables
    assert "workflow_instance" in tables
