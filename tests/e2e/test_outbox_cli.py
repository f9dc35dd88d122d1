"""``flowkeeper outbox list|show|requeue`` against a real ``flowkeeper serve``."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from flowkeeper.records import OutboxRecord, OutboxStatus
from flowkeeper.store import create_store
from tests.e2e.test_remote_cli import cli
from tests.integration.store.conftest import Make

pytestmark = pytest.mark.slow


def seed_dead_events(url: str, count: int) -> list[OutboxRecord]:
    """Dead outbox rows, written straight into the service's database."""

    async def seed() -> list[OutboxRecord]:
        store = create_store(url, min_pool_size=1, max_pool_size=2)
        try:
            make = Make()
            instance = await make.claimed(store)
            records = tuple(
                make.outbox(instance.id, status=OutboxStatus.DEAD, attempts=5, last_error="hook: HTTP 500")
                for _ in range(count)
            )
            await store.checkpoint(make.checkpoint(instance, outbox=records))
            return list(records)
        finally:
            await store.close()

    return asyncio.run(seed())


def test_list_show_and_requeue_dead_events(
    service: tuple[str, subprocess.Popen[bytes]], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = service
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: rich would wrap the cells
    first, second = seed_dead_events(store_url, 2)

    listed = cli(base, "outbox", "list", "--status", "dead", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {i["id"] for i in json.loads(listed.stdout)["items"]} == {first.id, second.id}

    table = cli(base, "outbox", "list", "--status", "dead")
    assert table.returncode == 0, table.stderr
    assert first.id in table.stdout
    assert "hook: HTTP 500" in table.stdout

    shown = cli(base, "outbox", "show", first.id)
    assert shown.returncode == 0, shown.stderr
    event = json.loads(shown.stdout)
    assert event["status"] == "dead"
    assert event["event"] == first.event

    requeued = cli(base, "outbox", "requeue", first.id, "--json")
    assert requeued.returncode == 0, requeued.stderr
    body = json.loads(requeued.stdout)
    assert (body["status"], body["attempts"]) == ("pending", 0)

    still_dead = json.loads(cli(base, "outbox", "list", "--status", "dead", "--json").stdout)
    assert [i["id"] for i in still_dead["items"]] == [second.id]

    again = cli(base, "outbox", "requeue", first.id)
    assert again.returncode == 2  # no longer dead (pending, or delivered by now)
    assert "not dead" in again.stderr


def test_refused_requests_exit_2_with_nothing_on_stdout(service: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, _ = service
    unknown = cli(base, "outbox", "show", "no-such-event")
    assert unknown.returncode == 2
    assert unknown.stdout == ""
    assert "not found" in unknown.stderr

    bad = cli(base, "outbox", "list", "--status", "lost")
    assert bad.returncode == 2
    assert bad.stdout == ""

    empty = cli(base, "outbox", "list", "--json")
    assert empty.returncode == 0
    assert json.loads(empty.stdout) == {"items": [], "nextCursor": None}
