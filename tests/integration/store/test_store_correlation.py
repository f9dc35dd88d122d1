"""Event bookmarks found by their correlation (an index), not by scanning their type."""

from __future__ import annotations

from flowkeeper.store import Store
from tests.integration.store.conftest import Make

FROM = '{"order":".data.orderId"}'


async def test_an_event_finds_only_the_bookmarks_of_its_correlation(store: Store, make: Make) -> None:
    owner = await make.claimed(store)
    mine = make.bookmark(owner.id, correlation_from=FROM, correlation_value='{"order":"o-1"}')
    other = make.bookmark(owner.id, correlation_from=FROM, correlation_value='{"order":"o-2"}')
    plain = make.bookmark(owner.id)  # no correlation: always a candidate
    await store.checkpoint(make.checkpoint(owner, new_bookmarks=(mine, other, plain)))

    assert await store.correlation_specs("com.example.ping") == [FROM]
    found = await store.find_event_bookmarks("com.example.ping", [(FROM, '{"order":"o-1"}')])
    assert {b.id for b in found} == {mine.id, plain.id}
    unknown = await store.find_event_bookmarks("com.example.ping", [(FROM, '{"order":"o-9"}')])
    assert {b.id for b in unknown} == {plain.id}
    everything = await store.find_event_bookmarks("com.example.ping")
    assert {b.id for b in everything} == {mine.id, other.id, plain.id}
    (stored,) = [b for b in found if b.id == mine.id]
    assert (stored.correlation_from, stored.correlation_value) == (FROM, '{"order":"o-1"}')


async def test_consumed_bookmarks_leave_the_correlation_index(store: Store, make: Make) -> None:
    owner = await make.claimed(store)
    mine = make.bookmark(owner.id, correlation_from=FROM, correlation_value='{"order":"o-1"}')
    await store.checkpoint(make.checkpoint(owner, new_bookmarks=(mine,)))
    assert await store.resume_bookmark(mine.id, {"data": {"orderId": "o-1"}})
    assert await store.correlation_specs("com.example.ping") == []
    assert await store.find_event_bookmarks("com.example.ping", [(FROM, '{"order":"o-1"}')]) == []
