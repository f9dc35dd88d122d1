"""Definitions: immutable versions, idempotent re-deploys, latest by semantic version."""

from __future__ import annotations

import pytest

from flowkeeper.errors import DefinitionConflict, DefinitionNotFound
from flowkeeper.store import Store


async def test_put_then_get(store: Store, make) -> None:
    record = make.definition("1.0.0")
    stored, created = await store.put_definition(record)
    assert created
    assert stored.document == record.document
    assert stored.created_on is not None
    assert stored.created_on.tzinfo is not None
    assert await store.get_definition("tests", "greet", "1.0.0") == stored


async def test_same_content_again_returns_the_existing_record(store: Store, make) -> None:
    first, _ = await store.put_definition(make.definition("1.0.0"))
    again, created = await store.put_definition(make.definition("1.0.0"))
    assert not created
    assert again == first


async def test_same_version_with_other_content_conflicts(store: Store, make) -> None:
    await store.put_definition(make.definition("1.0.0"))
    with pytest.raises(DefinitionConflict):
        await store.put_definition(make.definition("1.0.0", content_hash="other", source="changed"))
    assert (await store.get_definition("tests", "greet", "1.0.0")).content_hash == "hash-1.0.0"


async def test_latest_is_the_highest_semantic_version(store: Store, make) -> None:
    for version in ("1.2.0", "1.10.0", "1.9.3", "0.9.0"):
        await store.put_definition(make.definition(version))
    assert (await store.get_definition("tests", "greet")).version == "1.10.0"  # not string order
    # SemVer precedence: pre-releases rank above older releases, below their own release.
    await store.put_definition(make.definition("2.0.0-alpha"))
    await store.put_definition(make.definition("2.0.0-rc.1"))
    assert (await store.get_definition("tests", "greet")).version == "2.0.0-rc.1"
    await store.put_definition(make.definition("2.0.0"))
    assert (await store.get_definition("tests", "greet")).version == "2.0.0"


async def test_not_found(store: Store, make) -> None:
    with pytest.raises(DefinitionNotFound):
        await store.get_definition("tests", "greet")
    await store.put_definition(make.definition("1.0.0"))
    with pytest.raises(DefinitionNotFound):
        await store.get_definition("tests", "greet", "9.9.9")
    with pytest.raises(DefinitionNotFound):
        await store.get_definition("other", "greet")


async def test_list_orders_by_namespace_name_and_version(store: Store, make) -> None:
    await store.put_definition(make.definition("1.10.0"))
    await store.put_definition(make.definition("1.9.0"))
    await store.put_definition(make.definition("1.0.0", name="alpha"))
    await store.put_definition(make.definition("1.0.0", namespace="aaa"))
    listed = [(d.namespace, d.name, d.version) for d in await store.list_definitions()]
    assert listed == [
        ("aaa", "greet", "1.0.0"),
        ("tests", "alpha", "1.0.0"),
        ("tests", "greet", "1.9.0"),
        ("tests", "greet", "1.10.0"),
    ]
    assert [d.namespace for d in await store.list_definitions("aaa")] == ["aaa"]
