"""Store life cycle: URLs, open/close, migrations status, clock, ping, error wrapping."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

import pytest

from flowkeeper.errors import ConfigurationError, StoreError, StoreUnavailable
from flowkeeper.store import Store, create_store
from flowkeeper.store.postgres import PostgresStore
from flowkeeper.store.sqlite import SqliteStore


@pytest.mark.parametrize(
    ("url", "adapter"),
    [
        ("sqlite:///flowkeeper.db", SqliteStore),
        ("sqlite+aiosqlite:///flowkeeper.db", SqliteStore),
        ("sqlite://", SqliteStore),
        ("postgresql://u@h/db", PostgresStore),
        ("postgres://u@h/db", PostgresStore),
        ("postgresql+asyncpg://u@h/db", PostgresStore),
    ],
)
def test_create_store_picks_the_adapter_from_the_url(url: str, adapter: type) -> None:
    assert isinstance(create_store(url), adapter)


def test_create_store_rejects_other_schemes_without_echoing_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        create_store("mysql://user:s3cret@host/db")
    assert "mysql" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_store_url_attribute_masks_the_password() -> None:
    store = create_store("postgresql://user:s3cret@localhost/db")
    assert "s3cret" not in store.url
    assert "user" in store.url


async def test_unreachable_postgres_is_store_unavailable_without_password() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    store = create_store("postgresql://user:s3cret@127.0.0.1:1/db", connect_timeout=5)
    with pytest.raises(StoreUnavailable) as info:
        await store.open()
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is not None
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()


async def test_unopenable_sqlite_file_is_store_unavailable(tmp_path) -> None:
    store = create_store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with pytest.raises(StoreUnavailable):
        await store.open()


async def test_open_twice_close_and_reopen(store: Store) -> None:
    await store.open()
    await store.ping()
    await store.close()
    await store.close()
    await store.open()
    await store.ping()


async def test_now_is_aware_utc_and_moves_forward(store: Store) -> None:
    first = await store.now()
    second = await store.now()
    assert first.tzinfo is not None
    assert first.utcoffset() == timedelta(0)
    assert first.tzinfo == UTC
    assert second >= first


async def test_concurrent_migrations_are_serialised(store_url: str, store_factory) -> None:
    stores = [await store_factory() for _ in range(3)]
    await asyncio.gather(*(s.migrate() for s in stores))
    assert (await stores[0].schema_status()).up_to_date


async def test_driver_errors_are_wrapped_with_their_cause(store: Store, make) -> None:
    # A naive datetime is refused by the column type; the caller sees a StoreError.
    from datetime import datetime

    record = make.instance(created_on=datetime(2024, 1, 1))
    with pytest.raises((StoreError, ValueError)):
        await store.create_instance(record)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
async def test_in_memory_sqlite_store_works_end_to_end(url: str, make) -> None:
    store = create_store(url)
    try:
        await store.migrate()
        created = await store.create_instance(make.instance())
        [claimed] = await store.claim_instances("w1", timedelta(minutes=1), 5)
        assert claimed.id == created.id
        await store.checkpoint(make.checkpoint(claimed, log=make.log(claimed.id, "/a")))
        assert [e.seq for e in await store.get_log(created.id)] == [1]
        results = await asyncio.gather(*(store.get_instance(created.id) for _ in range(5)))
        assert {r.row_version for r in results} == {2}
    finally:
        await store.close()


def test_libpq_sslmode_is_passed_to_asyncpg_as_ssl() -> None:
    from flowkeeper.store.urls import DatabaseUrl

    parsed = DatabaseUrl.parse("postgres://u:pw@h:5433/db?sslmode=require")
    assert parsed.backend == "postgresql"
    assert parsed.url.drivername == "postgresql+asyncpg"
    assert dict(parsed.url.query) == {"ssl": "require"}
    assert "pw" not in parsed.safe
    assert parsed.password == "pw"
