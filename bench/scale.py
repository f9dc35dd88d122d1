"""Scale benchmark: ``flowkeeper serve`` replicas on one PostgreSQL database.

1. throughput: the engine benchmark's workflow (set -> call the registered function
   ``add_tax`` -> set, see ``bench/engine.py``) with 1, 2 and 3 replicas. Concurrent
   clients start instances over HTTP, round-robin over the replicas; completed
   instances per second from the first start to the last completion, start-to-end
   latency (the service's own ``created_on``/``completed_on``), CPU seconds each
   replica and the PostgreSQL server used meanwhile (``/proc/<pid>/stat``), and the
   ratio to one replica.
2. timer lateness: N instances ``wait`` until absolute times spread evenly over one
   second (``--timer-spread``; their input says when, the duration is computed at the
   wait). Two latenesses, p50/p99/max: resumed = the wait's ``completed`` in the
   execution log minus its due time (read from ``workflow_timer`` before any is due):
   when the workflow went on, the figure to compare with a durable sleep elsewhere;
   "early" counts waits that completed before their due time (it must be 0).
   fired = when the timer's row was deleted by the timer service (a bench-only trigger
   records the server's clock) minus its due time: negative by design, as the service
   fires timers up to ``services.timers.AHEAD`` (20 ms) early and holds their runs in
   memory until due.
3. outbox deliveries per second to one loopback webhook: ``measure_outbox`` of
   ``bench/outbox.py`` (one processor alone, rows inserted beforehand), and end to end
   through ``serve``: instances emit events in bursts (a ``for`` over ``emit``) to a
   webhook sink on the recorder (``tests/scale/recorder.py``), deliveries per second
   from the first to the last delivery it received.

Each measurement gets a fresh database (``flowkeeper_bench_scale`` on the server of
``--postgres``, dropped and created again). Replicas run with a 30 s lease, WARNING
logs and pools of up to 20 connections; when a measurement fails, the end of each
replica's log is printed.

    python bench/scale.py [--only throughput|timers|outbox] [--replicas 1,2,3] [--count N]
                          [--clients C] [--timers N] [--timer-replicas 1,3] [--timer-lead S] [--events N]
                          [--outbox processor|serve|both] [--json]

With ``--json`` the figures go to stdout as one JSON document and the report to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]  # the shared cluster helpers; engine.py's workflow

from engine import DEFINITION, percentile  # noqa: E402
from tests.scale.cluster import Cluster, cpu_seconds  # noqa: E402
from tests.scale.recorder import Recorder  # noqa: E402

from flowkeeper.services.webhook_client import WebhookClient  # noqa: E402

DATABASE = "flowkeeper_bench_scale"

#: Replica settings for measuring, not for provoking takeovers as the tests do.
BENCH_ENV = {
    "FLOWKEEPER__ENGINE__LEASE_DURATION": "30s",
    "FLOWKEEPER__DATABASE__MIN_POOL_SIZE": "10",
    "FLOWKEEPER__DATABASE__MAX_POOL_SIZE": "20",
    "FLOWKEEPER__LOGGING__LEVEL": "WARNING",
    # bench/functions.py registers add_tax, the function the throughput workflow calls.
    "FLOWKEEPER__ENGINE__FUNCTION_MODULES": '["functions"]',
    "PYTHONPATH": str(BENCH),
}

DUE_TOGETHER = """
document: {dsl: '1.0.3', namespace: bench, name: due-together, version: '1.0.0'}
do:
  - pause:
      wait: '${ {milliseconds: ([(.dueAt - now) * 1000, 0] | max)} }'
  - done:
      set: {woke: true}
"""
PAUSE = "/do/0/pause"

BURST = """
document: {dsl: '1.0.3', namespace: bench, name: burst, version: '1.0.0'}
do:
  - burst:
      for:
        in: '${ [range(0; .n)] }'
      do:
        - announce:
            emit:
              event:
                with:
                  source: https://flowkeeper.bench/scale
                  type: bench.tick.v1
                  data: {i: '${ $item }'}
  - done:
      set: {emitted: true}
"""

report_stream: TextIO = sys.stdout


def say(line: str = "") -> None:
    print(line, file=report_stream, flush=True)


# -- plumbing -----------------------------------------------------------------------------------------


async def fresh_database(admin: str) -> str:
    """Drop and create the benchmark database; its URL."""
    import asyncpg

    dsn = admin.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await connection.close()
    return f"{dsn.rpartition('/')[0]}/{DATABASE}"


@asynccontextmanager
async def cluster_of(
    admin: str, replicas: int, workdir: Path, label: str, config: dict[str, Any] | None = None
) -> AsyncIterator[Cluster]:
    """``replicas`` serve processes on a fresh database; stopped afterwards."""
    directory = workdir / label
    directory.mkdir()
    cluster = Cluster(await fresh_database(admin), directory, config=config or {}, env=BENCH_ENV, guard=600)
    try:
        await cluster.start(replicas)
        yield cluster
    finally:
        await cluster.close()


def postgres_pids() -> list[int]:
    """Every process named ``postgres`` on this host (the server and its backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return pids


def cpu_snapshot(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            found[pid] = cpu_seconds(pid)
        except (OSError, ValueError):  # gone meanwhile
            continue
    return found


def postgres_cpu(before: dict[int, float]) -> float:
    """CPU seconds the PostgreSQL processes used since ``before`` (new backends from zero)."""
    after = cpu_snapshot(postgres_pids())
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


async def start_many(cluster: Cluster, definition: str, inputs: list[Any], clients: int) -> None:
    """POST ``/api/v1/instances`` once per input, ``clients`` at a time, round-robin over replicas.

    The load comes from a lean keep-alive client (the outbox's webhook client): on this
    2-core machine httpx alone would take most of a core from the replicas.
    """
    starters = [
        WebhookClient(f"{replica.base_url}/api/v1/instances", max_connections=clients)
        for replica in cluster.replicas
    ]
    turn = iter(range(len(inputs) * 2))
    queue = iter(inputs)
    body = {"definition": {"namespace": "bench", "name": definition}}
    headers = {"Content-Type": "application/json"}

    async def client() -> None:
        for data in queue:
            starter = starters[next(turn) % len(starters)]
            answer = await starter.post(json.dumps(body | {"input": data}).encode(), headers)
            if answer.status != 201:
                raise RuntimeError(f"start answered {answer.status}: {answer.body[:300]!r}")

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        for starter in starters:
            await starter.aclose()


async def until_completed(cluster: Cluster, name: str, count: int) -> None:
    async def done() -> bool:
        rows = await cluster.sql(
            "SELECT count(*) FROM workflow_instance WHERE name = $1 AND status = 'completed'", name
        )
        return int(rows[0][0]) >= count

    await cluster.wait_until(done, f"{count} {name} instances to complete", poll=0.02)


# -- 1. throughput ----------------------------------------------------------------------------------


async def throughput(admin: str, replicas: int, count: int, clients: int, workdir: Path) -> dict[str, Any]:
    async with cluster_of(admin, replicas, workdir, f"throughput-{replicas}") as cluster:
        await cluster.deploy(DEFINITION)
        # Warm up every replica (imports, connections, caches) outside the measurement.
        warmup = 20 * replicas
        await start_many(cluster, "three-steps", [{"order": -1, "amount": 1.0}] * warmup, clients)
        await until_completed(cluster, "three-steps", warmup)

        replica_cpu = {r.name: cpu_seconds(r.pid) for r in cluster.replicas}
        pg_before = cpu_snapshot(postgres_pids())
        client_before, machine_before = time.process_time(), machine_busy()
        started = time.perf_counter()
        await start_many(
            cluster, "three-steps", [{"order": i, "amount": 10.0} for i in range(count)], clients
        )
        await until_completed(cluster, "three-steps", warmup + count)
        elapsed = time.perf_counter() - started
        used = {r.name: cpu_seconds(r.pid) - replica_cpu[r.name] for r in cluster.replicas}
        pg_used = postgres_cpu(pg_before)
        client_used = time.process_time() - client_before
        machine_after = machine_busy()
        busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1]) * 100

        rows = await cluster.sql(
            "SELECT extract(epoch FROM completed_on - created_on) FROM workflow_instance "
            "WHERE name = 'three-steps' AND (input->>'order')::int >= 0"
        )
        latencies = [float(r[0]) for r in rows]
    return {
        "replicas": replicas,
        "instances": count,
        "clients": clients,
        "seconds": elapsed,
        "completed_per_s": count / elapsed,
        "latency_p50_ms": percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "replica_cpu_s": used,
        "replica_cpu_percent": {name: s / elapsed * 100 for name, s in used.items()},
        "postgres_cpu_s": pg_used,
        "client_cpu_s": client_used,
        # Everything else the machine ran meanwhile, this benchmark's processes included.
        "machine_busy_percent": busy,
        "cpu_ms_per_instance": (sum(used.values()) + pg_used) / count * 1000,
    }


# -- 2. timer lateness -------------------------------------------------------------------------------

FIRED_AT_SQL = (
    "CREATE TABLE bench_timer_fired (timer_id text, due_at timestamptz, fired_at timestamptz)",
    """CREATE FUNCTION bench_timer_fired() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO bench_timer_fired VALUES (OLD.id, OLD.due_at, clock_timestamp());
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER bench_timer_fired AFTER DELETE ON workflow_timer "
    "FOR EACH ROW EXECUTE FUNCTION bench_timer_fired()",
)


async def timer_lateness(
    admin: str, replicas: int, count: int, lead: float, clients: int, workdir: Path, spread: float = 1.0
) -> dict[str, Any]:
    async with cluster_of(admin, replicas, workdir, f"timers-{replicas}") as cluster:
        await cluster.deploy(DUE_TOGETHER)
        # Bench-only instrumentation: when each timer row is deleted (fired), by the
        # server's real-time clock, so that firing lateness is seen apart from resuming.
        for statement in FIRED_AT_SQL:
            await cluster.sql(statement)
        due = time.time() + lead
        # Due within the same ``spread`` seconds, evenly (0: all at the same instant).
        inputs = [{"dueAt": due + spread * n / count} for n in range(count)]
        await start_many(cluster, "due-together", inputs, clients)
        if time.time() >= due - 0.2:
            raise RuntimeError(
                f"starting {count} instances took more than the {lead:.0f} s lead; raise --timer-lead"
            )

        async def all_waiting() -> bool:
            rows = await cluster.sql("SELECT count(*) FROM workflow_timer")
            return int(rows[0][0]) >= count

        await cluster.wait_until(all_waiting, f"{count} timers", poll=0.02)
        # The due times, read before any is due (a fired timer's row is gone).
        due_at = {
            r[0]: r[1].timestamp()
            for r in await cluster.sql("SELECT instance_id, due_at FROM workflow_timer")
        }
        await until_completed(cluster, "due-together", count)
        rows = await cluster.sql(
            "SELECT instance_id, at FROM workflow_execution_log WHERE reference = $1 AND event = 'completed'",
            PAUSE,
        )
        fired = await cluster.sql("SELECT due_at, fired_at FROM bench_timer_fired")
    lateness = [r[1].timestamp() - due_at[r[0]] for r in rows if r[0] in due_at]
    firing = [(f - d).total_seconds() for d, f in fired]
    return {
        "fire_p50_ms": percentile(firing, 0.50) * 1000,
        "fire_p99_ms": percentile(firing, 0.99) * 1000,
        "fire_max_ms": max(firing) * 1000,
        "replicas": replicas,
        "instances": count,
        "due_spread_ms": (max(due_at.values()) - min(due_at.values())) * 1000,
        "lateness_p50_ms": percentile(lateness, 0.50) * 1000,
        "lateness_p99_ms": percentile(lateness, 0.99) * 1000,
        "lateness_max_ms": max(lateness) * 1000,
        "early": sum(1 for x in lateness if x < 0),
    }


# -- 3. outbox ---------------------------------------------------------------------------------------


async def outbox_end_to_end(admin: str, replicas: int, events: int, workdir: Path) -> dict[str, Any]:
    per_instance = 50
    instances = max(1, events // per_instance)
    total = instances * per_instance
    recorder = await Recorder.start(workdir)
    sink = {"name": "bench", "type": "webhook", "url": recorder.url("/outbox/bench"), "secret": "bench"}
    config = {"outbox_processor": {"sinks": [sink], "processing_interval": "200ms"}}
    try:
        async with cluster_of(admin, replicas, workdir, "outbox", config) as cluster:
            await cluster.deploy(BURST)
            started = time.time()
            await start_many(cluster, "burst", [{"n": per_instance}] * instances, min(instances, 16))

            async def all_delivered() -> bool:
                return await recorder.count("/outbox/bench") >= total

            await cluster.wait_until(all_delivered, f"{total} deliveries", poll=0.05)
            received = await recorder.records("/outbox/bench")
    finally:
        await recorder.close()
    times = sorted(r["at"] for r in received)
    distinct = len({json.loads(r["body"])["id"] for r in received})
    return {
        "source": "end to end through serve",
        "replicas": replicas,
        "events": total,
        "deliveries": len(received),
        "distinct_events": distinct,
        "deliveries_per_s": len(received) / max(times[-1] - times[0], 1e-9),
        "end_to_end_per_s": total / (times[-1] - started),
    }


async def outbox_processor_alone(admin: str, events: int) -> dict[str, Any] | None:
    """``measure_outbox`` of ``bench/outbox.py`` (one processor in this process, rows inserted
    beforehand, its own receiver process); None when that module is not there."""
    try:
        from outbox import measure_outbox
    except ImportError:
        return None
    figures: dict[str, Any] = await measure_outbox(await fresh_database(admin), events)
    return figures


# -- the report --------------------------------------------------------------------------------------


def show_throughput(rows: list[dict[str, Any]]) -> None:
    say("throughput: set -> function -> set, started over HTTP round-robin")
    base = rows[0]["completed_per_s"] if rows and rows[0]["replicas"] == 1 else None
    for row in rows:
        cpu = "  ".join(f"{name} {pct:5.1f}%" for name, pct in row["replica_cpu_percent"].items())
        ratio = f"x{row['completed_per_s'] / base:.2f}" if base else "-"
        say(
            f"  {row['replicas']} replica(s)  n={row['instances']:<5} "
            f"{row['completed_per_s']:7.1f} completed/s ({ratio} vs 1)  "
            f"p50 {row['latency_p50_ms']:6.1f} ms  p99 {row['latency_p99_ms']:7.1f} ms"
        )
        seconds = row["seconds"]
        say(
            f"      CPU of one core: {cpu}  postgres {row['postgres_cpu_s'] / seconds * 100:5.1f}%  "
            f"client {row['client_cpu_s'] / seconds * 100:5.1f}%  "
            f"({row['cpu_ms_per_instance']:.2f} CPU ms/instance, replicas + postgres)"
        )
        say(f"      all CPUs of the machine busy: {row['machine_busy_percent']:5.1f}%")


def show_timers(row: dict[str, Any]) -> None:
    say(
        f"timer lateness: {row['instances']} waits due together "
        f"(due times within {row['due_spread_ms']:.0f} ms), {row['replicas']} replica(s)"
    )
    say(
        f"  fired:   p50 {row['fire_p50_ms']:7.1f} ms  p99 {row['fire_p99_ms']:7.1f} ms  "
        f"max {row['fire_max_ms']:7.1f} ms  (timer row deleted, server clock; up to 20 ms early by design)"
    )
    say(
        f"  resumed: p50 {row['lateness_p50_ms']:7.1f} ms  p99 {row['lateness_p99_ms']:7.1f} ms  "
        f"max {row['lateness_max_ms']:7.1f} ms  (the wait's completed log entry)  fired early: {row['early']}"
    )


def show_outbox(results: dict[str, Any]) -> None:
    say("outbox deliveries to one loopback webhook")
    alone = results.get("processor")
    if alone is not None:
        say(
            f"  one processor alone (bench/outbox.py, rows inserted first, batch {alone['batch_size']}): "
            f"{alone['count']} rows  {alone['deliveries_per_s']:7.1f} deliveries/s"
        )
    elif "processor" in results:
        say("  one processor alone: bench/outbox.py is not there")
    row = results.get("serve")
    if row is not None:
        say(
            f"  end to end through serve ({row['replicas']} replica(s), default outbox settings): "
            f"{row['events']} events emitted in bursts of 50, {row['deliveries']} deliveries "
            f"({row['distinct_events']} distinct)"
        )
        say(
            f"      {row['deliveries_per_s']:7.1f} deliveries/s first to last delivery, "
            f"{row['end_to_end_per_s']:7.1f} events/s from the first start"
        )


def show_logs(workdir: Path) -> None:
    """The end of every replica's and recorder's log: what went wrong, when something did."""
    for log in sorted(workdir.rglob("*.log")):
        say(f"--- {log} (last lines) ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))


async def main() -> int:
    global report_stream
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["throughput", "timers", "outbox"])
    parser.add_argument("--replicas", default="1,2,3", help="replica counts for the throughput run")
    parser.add_argument("--count", type=int, default=2000, help="instances per throughput run")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--timers", type=int, default=1000, help="instances waiting for the same time")
    parser.add_argument("--timer-replicas", default="1,3", help="replica counts for the timer run")
    parser.add_argument(
        "--timer-lead", type=float, default=15.0, help="seconds from the first start to the due time"
    )
    parser.add_argument(
        "--timer-spread", type=float, default=1.0, help="the due times spread evenly over this many seconds"
    )
    parser.add_argument("--events", type=int, default=5000, help="events emitted for the outbox run")
    parser.add_argument("--outbox-replicas", type=int, default=1)
    parser.add_argument(
        "--outbox",
        choices=["processor", "serve", "both"],
        default="both",
        help="the processor alone (bench/outbox.py), end to end through serve, or both",
    )
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout, report on stderr")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("FLOWKEEPER_BENCH_POSTGRES_URL")
        or os.environ.get("FLOWKEEPER_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    args = parser.parse_args()
    if args.json:
        report_stream = sys.stderr
    # Other work on the machine skews every figure: say how busy it was.
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    say(
        f"flowkeeper serve replicas on one PostgreSQL; {os.cpu_count()} CPU(s), "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    with tempfile.TemporaryDirectory(prefix="flowkeeper-bench-scale-") as tmp:
        workdir = Path(tmp)
        try:
            if args.only in (None, "throughput"):
                rows = []
                for n in (int(x) for x in args.replicas.split(",")):
                    rows.append(await throughput(args.postgres, n, args.count, args.clients, workdir))
                results["throughput"] = rows
                show_throughput(rows)
            if args.only in (None, "timers"):
                results["timers"] = []
                for n in (int(x) for x in str(args.timer_replicas).split(",")):
                    row = await timer_lateness(
                        args.postgres,
                        n,
                        args.timers,
                        args.timer_lead,
                        args.clients,
                        workdir,
                        args.timer_spread,
                    )
                    results["timers"].append(row)
                    show_timers(row)
            if args.only in (None, "outbox"):
                figures: dict[str, Any] = {}
                if args.outbox in ("processor", "both"):
                    figures["processor"] = await outbox_processor_alone(args.postgres, args.events)
                if args.outbox in ("serve", "both"):
                    figures["serve"] = await outbox_end_to_end(
                        args.postgres, args.outbox_replicas, args.events, workdir
                    )
                results["outbox"] = figures
                show_outbox(figures)
        except Exception:
            show_logs(workdir)
            raise
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
