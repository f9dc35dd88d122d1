"""API benchmark: ``flowkeeper serve`` as a real process, driven over HTTP.

- throughput: 32 concurrent clients start the engine benchmark's 3-task workflow
  (set -> call a registered function -> set) over HTTP; completed instances per second;
- event-to-resume latency: 1,000 instances wait on a correlated ``listen``; events are
  posted one at a time; latency = the instance's ``completedOn`` minus the event's
  ``receivedOn`` (both stamped by the service), p50/p99; plus the client-side POST time.

    python bench/api.py [--only sqlite|postgres] [--count N] [--waiting N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from flowkeeper.services.webhook_client import WebhookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import DEFINITION, percentile, postgres_url

LISTENER = """
document: {dsl: '1.0.3', namespace: bench, name: await-payment, version: '1.0.0'}
do:
  - awaitPayment:
      listen:
        to:
          one:
            with: {type: com.example.payment.v1}
            correlate:
              order: {from: .data.orderId, expect: '${ .orderId }'}
  - settle:
      set: {paid: true}
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Service:
    def __init__(self, url: str) -> None:
        self.port = _port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "FLOWKEEPER__DATABASE__URL": url,
                "FLOWKEEPER__SERVER__PORT": str(self.port),
                "FLOWKEEPER__ENGINE__FUNCTION_MODULES": '["functions"]',
                "FLOWKEEPER__LOGGING__LEVEL": "WARNING",
                "PYTHONPATH": str(Path(__file__).resolve().parent),
            }
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowkeeper.cli", "serve", "--migrate"], env=env, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the service did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def throughput(base: str, count: int, clients: int) -> dict[str, float]:
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=clients)
    ) as http:
        await http.post(
            "/api/v1/definitions", content=DEFINITION, headers={"Content-Type": "application/yaml"}
        )
        body = {"definition": {"namespace": "bench", "name": "three-steps", "version": "1.0.0"}}
        ids: list[str] = []
        queue = iter(range(count))
        # The load comes from a lean keep-alive client (the outbox's webhook client): on
        # this 2-core machine httpx alone would take most of a core from the service.
        starter = WebhookClient(f"{base}/api/v1/instances", max_connections=clients)
        headers = {"Content-Type": "application/json"}

        async def client() -> None:
            for i in queue:
                payload = json.dumps(body | {"input": {"order": i, "amount": 10.0}}).encode()
                answer = await starter.post(payload, headers)
                if answer.status != 201:
                    raise RuntimeError(f"start answered {answer.status}: {answer.body[:300]!r}")
                ids.append(json.loads(answer.body)["id"])

        started = time.perf_counter()
        try:
            await asyncio.gather(*(client() for _ in range(clients)))
        finally:
            await starter.aclose()
        # Done when nothing is pending or running any more: two one-row listings per poll,
        # so that watching costs the service next to nothing (a listing of every
        # completed instance per poll would cost it more than the work it measures).
        while True:
            busy = 0
            for status in ("running", "pending"):
                page = (await http.get("/api/v1/instances", params={"status": status, "limit": 1})).json()
                busy += len(page["items"])
            if not busy:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        done = await _count_completed(http, ids)
        if done != count:
            raise RuntimeError(f"{count - done} of {count} instances did not complete")
        latencies = []
        for instance_id in ids[:: max(1, count // 500)]:
            inst = (await http.get(f"/api/v1/instances/{instance_id}")).json()
            latencies.append(_stamp(inst["completedOn"]) - _stamp(inst["createdOn"]))
        return {
            "instances_per_s": count / elapsed,
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
        }


async def _count_completed(http: httpx.AsyncClient, ids: list[str]) -> int:
    done = 0
    cursor: str | None = None
    wanted = set(ids)
    while True:
        params: dict[str, Any] = {"status": "completed", "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get("/api/v1/instances", params=params)).json()
        done += sum(1 for item in page["items"] if item["id"] in wanted)
        cursor = page.get("nextCursor")
        if not cursor:
            return done


async def resume_latency(base: str, waiting: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=32)) as http:
        await http.post("/api/v1/definitions", content=LISTENER, headers={"Content-Type": "application/yaml"})
        gate = asyncio.Semaphore(32)

        async def start(i: int) -> str:
            async with gate:
                response = await http.post(
                    "/api/v1/instances",
                    json={
                        "definition": {"namespace": "bench", "name": "await-payment"},
                        "input": {"orderId": f"o{i}"},
                    },
                )
            return str(response.json()["id"])

        ids = await asyncio.gather(*(start(i) for i in range(waiting)))
        for _ in range(600):  # until the last one waits (a benchmark, not a test)
            if (await http.get(f"/api/v1/instances/{ids[-1]}")).json()["status"] == "suspended":
                break
            await asyncio.sleep(0.05)
        posts: list[float] = []
        for i in range(waiting):
            event = {
                "specversion": "1.0",
                "id": f"e{i}",
                "source": "/bench",
                "type": "com.example.payment.v1",
                "data": {"orderId": f"o{i}"},
            }
            t0 = time.perf_counter()
            await http.post(
                "/api/v1/events", json=event, headers={"Content-Type": "application/cloudevents+json"}
            )
            posts.append(time.perf_counter() - t0)
        received: dict[str, float] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/api/v1/events", params=params)).json()
            for item in page["items"]:
                received[item["id"]] = _stamp(item["receivedOn"])
            cursor = page.get("nextCursor")
            if not cursor:
                break
        latencies = []
        for i, instance_id in enumerate(ids):
            while True:
                inst = (await http.get(f"/api/v1/instances/{instance_id}")).json()
                if inst["status"] == "completed":
                    break
                await asyncio.sleep(0.01)
            latencies.append(_stamp(inst["completedOn"]) - received[f"e{i}"])
        return {
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "post_p50_ms": percentile(posts, 0.5) * 1000,
        }


async def bench(label: str, url: str, count: int, waiting: int) -> None:
    service = Service(url)
    try:
        t = await throughput(service.base, count, 32)
        print(
            f"{label:<9} http throughput, 32 clients  n={count:<5} {t['instances_per_s']:7.1f} inst/s  "
            f"p50 {t['p50_ms']:6.2f} ms  p99 {t['p99_ms']:7.2f} ms",
            flush=True,
        )
        r = await resume_latency(service.base, waiting)
        print(
            f"{label:<9} event-to-resume, {waiting} waiting      "
            f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms"
            f"  (POST /events p50 {r['post_p50_ms']:.2f} ms)",
            flush=True,
        )
    finally:
        service.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--postgres",
        default=os.environ.get("FLOWKEEPER_BENCH_POSTGRES_URL")
        or os.environ.get("FLOWKEEPER_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    args = parser.parse_args()
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            await bench("sqlite", f"sqlite:///{Path(tmp) / 'api.db'}", args.count, args.waiting)
    if args.only in (None, "postgres"):
        await bench("postgres", await postgres_url(args.postgres), args.count, args.waiting)


if __name__ == "__main__":
    asyncio.run(main())
