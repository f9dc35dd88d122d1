"""Claims and leases: owner + expiry + fencing token, SKIP LOCKED between claimers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from flowkeeper.records import InstanceStatus
from flowkeeper.store import Store

MINUTE = timedelta(minutes=1)
EXPIRED = timedelta(seconds=-1)  # a lease that ended a second ago: free to take at once


async def test_claim_sets_the_lease_and_increments_the_fencing_token(store: Store, make) -> None:
    created = await store.create_instance(make.instance())
    before = await store.now()
    [claimed] = await store.claim_instances("w1", MINUTE, 10)
    assert claimed.id == created.id
    assert claimed.lease_owner == "w1"
    assert claimed.fencing_token == created.fencing_token + 1
    assert claimed.lease_expires_at is not None
    assert claimed.lease_expires_at >= before + MINUTE
    assert claimed.row_version == created.row_version  # a claim is not a state change
    assert await store.get_instance(created.id) == claimed


async def test_only_runnable_instances_are_claimed(store: Store, make) -> None:
    runnable = {
        (await store.create_instance(make.instance(status=status))).id
        for status in (InstanceStatus.PENDING, InstanceStatus.RUNNING)
    }
    for status in (
        InstanceStatus.SUSPENDED,
        InstanceStatus.COMPLETED,
        InstanceStatus.FAILED,
        InstanceStatus.CANCELLED,
    ):
        await store.create_instance(make.instance(status=status))
    claimed = await store.claim_instances("w1", MINUTE, 10)
    assert {i.id for i in claimed} == runnable


async def test_claim_respects_the_limit_and_held_leases(store: Store, make) -> None:
    for _ in range(5):
        await store.create_instance(make.instance())
    first = await store.claim_instances("w1", MINUTE, 3)
    second = await store.claim_instances("w2", MINUTE, 3)
    assert len(first) == 3
    assert len(second) == 2
    assert not {i.id for i in first} & {i.id for i in second}
    assert await store.claim_instances("w3", MINUTE, 3) == []
    assert await store.claim_instances("w3", MINUTE, 0) == []


async def test_an_expired_lease_is_claimable_again_with_a_new_token(store: Store, make) -> None:
    await store.create_instance(make.instance())
    [first] = await store.claim_instances("w1", EXPIRED, 1)
    [second] = await store.claim_instances("w2", MINUTE, 1)
    assert second.id == first.id
    assert second.lease_owner == "w2"
    assert second.fencing_token == first.fencing_token + 1
    # The old holder lost it: it can neither renew nor release it.
    assert not await store.renew_lease(first.id, "w1", first.fencing_token, MINUTE)
    await store.release_instance(first.id, "w1", first.fencing_token)
    assert (await store.get_instance(first.id)).lease_owner == "w2"


async def test_claim_one_instance(store: Store, make) -> None:
    created = await store.create_instance(make.instance())
    mine = await store.claim_instance(created.id, "w1", MINUTE)
    assert mine is not None
    assert mine.fencing_token == 1
    assert await store.claim_instance(created.id, "w2", MINUTE) is None  # held by w1
    # Ours already: a run of ours holds it; claiming again would fence that run.
    assert await store.claim_instance(created.id, "w1", MINUTE) is None
    assert (await store.get_instance(created.id)).fencing_token == 1
    assert await store.claim_instance("unknown", "w1", MINUTE) is None
    done = await store.create_instance(make.instance(status=InstanceStatus.COMPLETED))
    assert await store.claim_instance(done.id, "w1", MINUTE) is None


async def test_claim_one_takes_an_expired_lease(store: Store, make) -> None:
    created = await store.create_instance(make.instance())
    assert await store.claim_instance(created.id, "w1", EXPIRED) is not None
    taken = await store.claim_instance(created.id, "w2", MINUTE)
    assert taken is not None
    assert taken.lease_owner == "w2"


async def test_renew_and_release(store: Store, make) -> None:
    await store.create_instance(make.instance())
    [claimed] = await store.claim_instances("w1", MINUTE, 1)
    assert claimed.lease_expires_at is not None
    assert await store.renew_lease(claimed.id, "w1", claimed.fencing_token, timedelta(hours=1))
    renewed = await store.get_instance(claimed.id)
    assert renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > claimed.lease_expires_at
    assert not await store.renew_lease(claimed.id, "w2", claimed.fencing_token, MINUTE)
    assert not await store.renew_lease(claimed.id, "w1", claimed.fencing_token + 1, MINUTE)
    await store.release_instance(claimed.id, "w1", claimed.fencing_token)
    released = await store.get_instance(claimed.id)
    assert released.lease_owner is None
    assert released.lease_expires_at is None
    [reclaimed] = await store.claim_instances("w2", MINUTE, 1)
    assert reclaimed.fencing_token == claimed.fencing_token + 1


async def test_concurrent_claimers_never_share_an_instance(store: Store, store_factory, make) -> None:
    # Two stores = two pools = real concurrent transactions (SKIP LOCKED on PostgreSQL,
    # the writer lock plus the file lock on SQLite).
    other = await store_factory()
    ids = {(await store.create_instance(make.instance())).id for _ in range(40)}

    async def claim_all(s: Store, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await s.claim_instances(owner, MINUTE, 3):
            got += [i.id for i in batch]
        return got

    results = await asyncio.gather(*(claim_all(s, f"w{n}") for n, s in enumerate([store, other] * 2)))
    claimed = [i for result in results for i in result]
    assert len(claimed) == len(set(claimed))  # nobody got an instance twice
    assert set(claimed) == ids  # and together they got them all
