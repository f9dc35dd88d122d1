"""Event bookmarks found by their correlation (an index), not by scanning their type."""

from __future__ import annotations

from flowkeeper.store import Store
from tests.integration.store.conftest import Make

FROM = '{"order":".data.orderId"}'
OTHER_FROM = '{"customer":".data.customer"}'
TYPE = "com.example.ping"


async def test_an_event_finds_only_the_bookmarks_of_its_correlation(store: Store, make: Make) -> None:
    owner = await make.claimed(store)
    mine = make.bookmark(owner.id, correlation_from=FROM, correlation_value='{"order":"o-1"}')
    other = make.bookmark(owner.id, correlation_from=FROM, correlation_value='{"order":"o-2"}')
    plain = make.bookmark(owner.id)  # no correlation: always a candidate
    await store.checkpoint(make.checkpoint(owner, new_bookmarks=(mine, other, plain)))

    found, unknown = await store.event_candidates(TYPE, [(FROM, '{"order":"o-1"}')], {FROM})
    assert unknown == set()
    assert {b.id for b in found} == {mine.id, plain.id}
    nothing, _ = await store.event_candidates(TYPE, [(FROM, '{"order":"o-9"}')], {FROM})
    assert [b.id for b in nothing] == [plain.id]
    (stored,) = [b for b in found if b.id == mine.id]
    assert (stored.correlation_from, stored.correlation_value) == (FROM, '{"order":"o-1"}')
    assert await store.event_candidates("com.example.other", [], {FROM}) == ([], set())


async def test_specs_the_caller_does_not_know_are_reported(store: Store, make: Make) -> None:
    owner = await make.claimed(store)
    by_order = [
        make.bookmark(owner.id, correlation_from=FROM, correlation_value=f'{{"order":"o-{n}"}}')
        for n in range(5)
    ]
    by_customer = make.bookmark(owner.id, correlation_from=OTHER_FROM, correlation_value='{"customer":"c"}')
    plain = make.bookmark(owner.id)
    await store.checkpoint(make.checkpoint(owner, new_bookmarks=(*by_order, by_customer, plain)))

    found, unknown = await store.event_candidates(TYPE, [], set())
    assert unknown == {FROM, OTHER_FROM}
    assert [b.id for b in found] == [plain.id]  # nothing of an unknown spec is offered
    found, unknown = await store.event_candidates(TYPE, [(FROM, '{"order":"o-3"}')], {FROM})
    assert unknown == {OTHER_FROM}
    found, unknown = await store.event_candidates(
        TYPE, [(FROM, '{"order":"o-3"}'), (OTHER_FROM, '{"customer":"c"}')], {FROM, OTHER_FROM}
    )
    assert unknown == set()
    assert {b.id for b in found} == {by_order[3].id, by_customer.id, plain.id}


async def test_consumed_bookmarks_leave_the_correlation_index(store: Store, make: Make) -> None:
    owner = await make.claimed(store)
    mine = make.bookmark(owner.id, correlation_from=FROM, correlation_value='{"order":"o-1"}')
    await store.checkpoint(make.checkpoint(owner, new_bookmarks=(mine,)))
    assert await store.resume_bookmark(mine.id, {"data": {"orderId": "o-1"}})
    assert await store.event_candidates(TYPE, [], set()) == ([], set())
    assert await store.event_candidates(TYPE, [(FROM, '{"order":"o-1"}')], {FROM}) == ([], set())
