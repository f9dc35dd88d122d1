"""Several ``flowkeeper serve`` replicas on one PostgreSQL database, as real processes.

A :class:`Cluster` migrates the database once (in this process), then starts each
replica with ``python -m flowkeeper.cli serve --config FILE`` on its own port, with the
settings of :data:`REPLICA_SETTINGS` as ``FLOWKEEPER__`` variables (a 2 s lease, so a
dead or frozen replica's instances are taken over quickly) and its own worker id
(``replica-<n>``, which is what ``workflow_instance.lease_owner`` then says). Each
replica's stdout and stderr go to ``replica-<n>.log`` in the cluster's directory.

The cluster also speaks for the test: :meth:`Cluster.request` sends an API request to a
random replica that is running (not killed, not stopped) and tries another one when
the answer is a 5xx or the connection fails, so a client outlives the faults the tests
inject; :meth:`Cluster.sql` reads the database directly; :meth:`Cluster.kill`,
:meth:`Cluster.freeze` and :meth:`Cluster.thaw` send SIGKILL, SIGSTOP and SIGCONT.

No pytest in here: the benchmark (``bench/scale.py``) uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.scale.recorder import die_with_parent, free_port

REPO = Path(__file__).resolve().parents[2]

#: Every replica runs with these (the test may add or override some).
REPLICA_SETTINGS: dict[str, str] = {
    # A short lease: a killed or frozen replica's instances are claimable 2 s later.
    "FLOWKEEPER__ENGINE__LEASE_DURATION": "2s",
    "FLOWKEEPER__ENGINE__POLL_INTERVAL": "200ms",
    # Small pools: three replicas per test and several tests at once share one server
    # whose max_connections is often 100.
    "FLOWKEEPER__DATABASE__MIN_POOL_SIZE": "1",
    "FLOWKEEPER__DATABASE__MAX_POOL_SIZE": "6",
    "FLOWKEEPER__SERVER__SHUTDOWN_GRACE_PERIOD": "5s",
    # WARNING: the per-activity INFO lines cost CPU the load needs; lease losses and
    # concurrency conflicts (what the tests look for) are warnings.
    "FLOWKEEPER__LOGGING__LEVEL": "WARNING",
}

#: Answers that mean "this replica could not do it now": try again, maybe elsewhere.
RETRYABLE = frozenset({500, 502, 503, 504})


class RequestFailed(AssertionError):
    """An API request kept failing on every replica until its guard ran out."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (from ``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


@dataclass
class Replica:
    """One ``flowkeeper serve`` process."""

    index: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    #: SIGSTOPped and not yet SIGCONTed: requests to it would hang, so none are sent.
    frozen: bool = False

    @property
    def name(self) -> str:
        """Its worker id, as ``workflow_instance.lease_owner`` shows it."""
        return f"replica-{self.index}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def usable(self) -> bool:
        """Running and not frozen: requests may go here."""
        return self.alive and not self.frozen

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def describe(self, tail: int = 60) -> str:
        """Name, pid, state and the end of its log: for failure messages."""
        state = "frozen" if self.frozen else "running" if self.alive else f"exited {self.process.returncode}"
        lines = self.log().splitlines()[-tail:]
        return f"--- {self.name} (pid {self.pid}, port {self.port}, {state}) ---\n" + "\n".join(lines)


@dataclass
class Cluster:
    """N replicas on one database; see the module docstring."""

    database_url: str
    directory: Path
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)
    #: Why the settings refused the outbox sinks the test asked for (None: accepted or none asked).
    sinks_refused: str | None = None
    #: Only turns a hang into a failure; nothing is expected to come near it.
    guard: float = 120.0

    def __post_init__(self) -> None:
        self.config_path = self.directory / "flowkeeper.yaml"
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64))
        self._db: Any = None
        #: Every failed attempt of :meth:`request` that was tried again: (label, failure).
        self.retried: list[tuple[str, str]] = []
        # One connection for the test's own queries, which several tasks make at once
        # (the event poster, a wait's condition): asyncpg runs one query at a time.
        self._db_lock = asyncio.Lock()

    # -- processes -------------------------------------------------------------------------

    async def start(self, count: int) -> None:
        """Migrate the database, then start ``count`` replicas and wait until each is ready."""
        await migrate(self.database_url)
        self.config_path.write_text(yaml.safe_dump(self.config or {}), encoding="utf-8")
        for _ in range(count):
            self.spawn()
        await asyncio.gather(*(self.until_ready(r) for r in self.replicas))

    def spawn(self) -> Replica:
        """Start one more replica (not waiting for it)."""
        index = len(self.replicas)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWKEEPER")}
        env.update(REPLICA_SETTINGS)
        env.update(self.env)
        env.update(
            {
                "FLOWKEEPER__DATABASE__URL": self.database_url,
                "FLOWKEEPER__SERVER__PORT": str(port),
                "FLOWKEEPER__ENGINE__WORKER_ID": f"replica-{index}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        log_path = self.directory / f"replica-{index}.log"
        with log_path.open("wb") as log:  # a file, never a pipe: a chatty child never blocks
            process = subprocess.Popen(
                [sys.executable, "-m", "flowkeeper.cli", "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=REPO,
                preexec_fn=die_with_parent,
            )
        replica = Replica(index, port, log_path, process)
        self.replicas.append(replica)
        return replica

    async def until_ready(self, replica: Replica) -> None:
        """Wait until ``/health/ready`` answers 200; fail if the process exits first."""

        async def ready() -> bool:
            if not replica.alive:
                raise AssertionError(f"{replica.name} exited at start\n{replica.describe(200)}")
            try:
                response = await self.http.get(f"{replica.base_url}/health/ready", timeout=2)
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await self.wait_until(ready, f"{replica.name} to become ready", poll=0.05)

    def kill(self, replica: Replica) -> None:
        """SIGKILL: no shutdown of any kind, its leases just stop being renewed."""
        with contextlib.suppress(ProcessLookupError):
            replica.process.send_signal(signal.SIGKILL)
        replica.process.wait()

    def freeze(self, replica: Replica) -> None:
        """SIGSTOP: the process keeps its sockets and leases but does nothing at all."""
        replica.frozen = True
        replica.process.send_signal(signal.SIGSTOP)

    def thaw(self, replica: Replica) -> None:
        """SIGCONT a frozen replica."""
        replica.process.send_signal(signal.SIGCONT)
        replica.frozen = False

    def usable(self) -> list[Replica]:
        """The replicas requests may go to."""
        return [r for r in self.replicas if r.usable]

    async def close(self) -> None:
        """SIGTERM every replica (SIGCONT first if frozen), SIGKILL what is left after 15 s."""
        for replica in self.replicas:
            if replica.alive:
                if replica.frozen:
                    self.thaw(replica)
                replica.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for replica in self.replicas:
            try:
                await asyncio.to_thread(replica.process.wait, max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.kill(replica)
        await self.http.aclose()
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._db.close()

    def describe(self, tail: int = 60) -> str:
        """Every replica's state and log tail."""
        return "\n".join(r.describe(tail) for r in self.replicas)

    # -- the API -------------------------------------------------------------------------------

    def pick(self) -> Replica:
        usable = self.usable()
        if not usable:
            raise AssertionError(f"no replica is running\n{self.describe()}")
        return random.choice(usable)

    async def request(
        self,
        method: str,
        path: str,
        *,
        replica: Replica | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``method path`` on ``replica`` (else a random usable one); on a 5xx or a connection
        failure, try again on a random usable replica until the guard runs out. Each failed
        attempt is noted in :attr:`retried` under ``label`` (default ``method path``).

        Only for requests that are safe to repeat: starts with a client-chosen id,
        events with their own id, reads.
        """
        deadline = time.monotonic() + self.guard
        delay = 0.02
        target = replica if replica is not None and replica.usable else self.pick()
        while True:
            try:
                response = await self.http.request(method, target.base_url + path, **kwargs)
                if response.status_code not in RETRYABLE:
                    return response
                failure = f"{response.status_code} from {target.name}: {response.text[:500]}"
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__} from {target.name}: {exc}"
            self.retried.append((label or f"{method} {path}", failure))
            if time.monotonic() > deadline:
                raise RequestFailed(f"{method} {path} kept failing; last: {failure}\n{self.describe()}")
            # A back-off between attempts, not a synchronisation: the next try goes wherever.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            target = self.pick()

    async def json(self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kwargs: Any) -> Any:
        """:meth:`request`, checking the status; the decoded JSON body."""
        response = await self.request(method, path, **kwargs)
        wanted = (expect,) if isinstance(expect, int) else expect
        if response.status_code not in wanted:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:1000]}")
        return response.json() if response.content else None

    async def deploy(self, document: str) -> None:
        """Deploy a YAML definition (201, or 200/409 if it is already there unchanged)."""
        await self.json(
            "POST",
            "/api/v1/definitions",
            expect=(200, 201),
            content=document,
            headers={"Content-Type": "application/yaml"},
        )

    async def start_instance(
        self,
        namespace: str,
        name: str,
        data: Any,
        instance_id: str,
        *,
        replica: Replica | None = None,
    ) -> dict[str, Any]:
        """Start an instance with a client-chosen id (so a retry elsewhere cannot start it twice)."""
        body = {"definition": {"namespace": namespace, "name": name}, "input": data, "id": instance_id}
        result: dict[str, Any] = await self.json(
            "POST",
            "/api/v1/instances",
            expect=(200, 201),
            json=body,
            replica=replica,
            label=f"start {instance_id}",
        )
        return result

    async def post_event(self, event: Mapping[str, Any], *, replica: Replica | None = None) -> dict[str, Any]:
        """POST one structured CloudEvent; the 202 answer (``matched``, ...)."""
        result: dict[str, Any] = await self.json(
            "POST",
            "/api/v1/events",
            expect=202,
            json=dict(event),
            headers={"Content-Type": "application/cloudevents+json"},
            replica=replica,
            label=f"event {event['id']}",
        )
        return result

    async def instances(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every instance (with ``status``), following the cursor."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        if status is not None:
            params["status"] = status
        while True:
            page = await self.json("GET", "/api/v1/instances", params=params)
            found.extend(page["items"])
            if not page.get("nextCursor"):
                return found
            params["cursor"] = page["nextCursor"]

    async def instance(self, instance_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.json("GET", f"/api/v1/instances/{instance_id}")
        return result

    async def log(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's execution log entries."""
        result: dict[str, Any] = await self.json("GET", f"/api/v1/instances/{instance_id}/log")
        return list(result["items"])

    # -- the database ----------------------------------------------------------------------------

    async def sql(self, query: str, *args: Any) -> list[Any]:
        """Rows of ``query`` on the cluster's database (one connection of the test's own)."""
        import asyncpg

        async with self._db_lock:
            if self._db is None or self._db.is_closed():
                self._db = await asyncpg.connect(self.database_url, timeout=30)
            return list(await self._db.fetch(query, *args))

    async def terminate_backends(self) -> int:
        """``pg_terminate_backend`` every other session on the database; how many were ended."""
        rows = await self.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return sum(1 for row in rows if row[0])

    # -- waiting -------------------------------------------------------------------------------

    async def wait_until(
        self,
        condition: Callable[[], Awaitable[bool]],
        what: str,
        *,
        poll: float = 0.1,
        progress: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        """Poll ``condition`` until it holds; the guard only turns a hang into a failure."""
        deadline = time.monotonic() + self.guard
        while not await condition():
            if time.monotonic() > deadline:
                state = await progress() if progress is not None else ""
                raise AssertionError(
                    f"gave up waiting for {what} after {self.guard:.0f} s {state}\n{self.describe()}"
                )
            await asyncio.sleep(poll)


async def migrate(url: str) -> None:
    """Bring the database to the head revision, once, before any replica starts."""
    from flowkeeper.store import create_store

    store = create_store(url, min_pool_size=1, max_pool_size=2)
    await store.open()
    try:
        await store.migrate()
    finally:
        await store.close()
