"""End to end: ``flowkeeper serve`` as a real process, driven over HTTP.

200 instances wait on a correlated ``listen``; 200 events sent over HTTP resume them
all; SIGTERM then shuts the service down cleanly. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import httpx
import pytest

pytestmark = pytest.mark.slow

LISTENER = """
document: {dsl: '1.0.3', namespace: e2e, name: await-payment, version: '1.0.0'}
do:
  - awaitPayment:
      listen:
        to:
          one:
            with:
              type: com.example.payment.received.v1
            correlate:
              order:
                from: .data.orderId
                expect: ${ .orderId }
  - settle:
      set:
        orderId: ${ .[0].orderId }
        paid: ${ .[0].amount }
"""

COUNT = 200


async def _run(base: str) -> list[dict[str, object]]:
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        deployed = await client.post(
            "/api/v1/definitions", content=LISTENER, headers={"Content-Type": "application/yaml"}
        )
        assert deployed.status_code == 201, deployed.text
        gate = asyncio.Semaphore(20)

        async def start(i: int) -> str:
            async with gate:
                response = await client.post(
                    "/api/v1/instances",
                    json={
                        "definition": {"namespace": "e2e", "name": "await-payment"},
                        "input": {"orderId": f"o-{i}"},
                    },
                )
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        ids = await asyncio.gather(*(start(i) for i in range(COUNT)))

        async def pay(i: int) -> int:
            event = {
                "specversion": "1.0",
                "id": f"payment-{i}",
                "source": "/e2e/payments",
                "type": "com.example.payment.received.v1",
                "data": {"orderId": f"o-{i}", "amount": i},
            }
            async with gate:
                response = await client.post(
                    "/api/v1/events", json=event, headers={"Content-Type": "application/cloudevents+json"}
                )
            assert response.status_code == 202, response.text
            return int(response.json()["matched"])

        await asyncio.gather(*(pay(i) for i in range(COUNT)))

        deadline = time.monotonic() + 120
        pending = set(ids)
        results: dict[str, dict[str, object]] = {}
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} instances did not complete"
            for instance_id in list(pending):
                async with gate:
                    body = (await client.get(f"/api/v1/instances/{instance_id}")).json()
                if body["status"] in ("completed", "failed", "cancelled"):
                    results[instance_id] = body
                    pending.discard(instance_id)
            if pending:
                await asyncio.sleep(0.1)
        return [results[i] for i in ids]


def test_two_hundred_instances_resumed_by_two_hundred_events(
    service: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, process = service
    finished = asyncio.run(_run(base))
    assert [f["status"] for f in finished] == ["completed"] * COUNT
    assert [f["output"] for f in finished] == [{"orderId": f"o-{i}", "paid": i} for i in range(COUNT)]
    # Graceful shutdown: SIGTERM stops the service with exit status 0.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
