"""Metrics: the guide's names and labels, fed by a real engine and a store snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest

from flowkeeper.observability import Metrics
from flowkeeper.observability.metrics import METRIC_NAMES
from flowkeeper.records import InstanceStatus, OutboxRecord, OutboxStatus
from flowkeeper.store import Store
from tests.unit.observability.conftest import FAILING_WORKFLOW, OK_WORKFLOW, EngineFactory, deploy_all, finish

#: Every metric name the operations guide mentions (its PromQL and alert rules).
GUIDE_NAMES = (
    "workflow_instances_started_total",
    "workflow_instances_completed_total",
    "workflow_execution_duration_bucket",
    "workflow_outbox_events_pending",
    "workflow_outbox_processing_lag_seconds",
    "workflow_activities_failed_total",
    "workflow_activities_executed_total",
    "workflow_active_instances",
    "workflow_instances_active",
    "workflow_database_connection_pool_active",
    "workflow_activity_execution_duration",
)

WAITING_WORKFLOW = """
do:
  - pause:
      wait: PT1H
"""


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def drive(engines: EngineFactory, metrics: Metrics) -> tuple[str, str]:
    engine = engines([metrics.interceptor()])
    await deploy_all(engine, ok=OK_WORKFLOW, failing=FAILING_WORKFLOW, waiting=WAITING_WORKFLOW)
    for n in (1, 2):
        done = await finish(engine, "ok", {"n": n})
        assert done.status == InstanceStatus.COMPLETED
    failed = await finish(engine, "failing", {"password": "x"})
    assert failed.status == InstanceStatus.FAILED
    waiting = await engine.start("tests", "waiting", None, {})
    await engine.drain()
    cancelled = await engine.cancel(waiting.id)
    assert cancelled.status == InstanceStatus.CANCELLED
    return failed.id, waiting.id


async def test_counters_follow_instances_and_activities(engines: EngineFactory) -> None:
    metrics = Metrics()
    await drive(engines, metrics)
    ok, failing, waiting = (
        {"definition": "tests/ok"},
        {"definition": "tests/failing"},
        {"definition": "tests/waiting"},
    )
    assert value(metrics, "workflow_instances_started_total", **ok) == 2
    assert value(metrics, "workflow_instances_started_total", **failing) == 1
    assert value(metrics, "workflow_instances_started_total", **waiting) == 1
    assert value(metrics, "workflow_instances_completed_total", **ok, status="completed") == 2
    assert value(metrics, "workflow_instances_completed_total", **failing, status="failed") == 1
    assert value(metrics, "workflow_instances_completed_total", **waiting, status="cancelled") == 1
    assert value(metrics, "workflow_instances_completed_total", **ok, status="failed") is None
    # ok: set, call, set per instance; failing: set completed, call faulted.
    assert value(metrics, "workflow_activities_executed_total", **ok, activity_type="set") == 4
    assert value(metrics, "workflow_activities_executed_total", **ok, activity_type="call") == 2
    assert value(metrics, "workflow_activities_failed_total", **ok, activity_type="call") is None
    assert value(metrics, "workflow_activities_executed_total", **failing, activity_type="set") == 1
    assert value(metrics, "workflow_activities_executed_total", **failing, activity_type="call") == 1
    assert value(metrics, "workflow_activities_failed_total", **failing, activity_type="call") == 1
    # Workflow-level rows ("/") are not activities.
    assert value(metrics, "workflow_activities_executed_total", **ok, activity_type="workflow") is None


async def test_histograms_time_outside_effects_and_whole_executions(engines: EngineFactory) -> None:
    metrics = Metrics()
    await drive(engines, metrics)
    name = "workflow_activity_execution_duration"
    assert value(metrics, f"{name}_count", definition="tests/ok", activity_type="function") == 2
    assert value(metrics, f"{name}_count", definition="tests/failing", activity_type="function") == 1
    assert (value(metrics, f"{name}_sum", definition="tests/ok", activity_type="function") or 0) >= 0
    name = "workflow_execution_duration"
    assert value(metrics, f"{name}_count", definition="tests/ok", status="completed") == 2
    assert value(metrics, f"{name}_count", definition="tests/failing", status="failed") == 1
    assert value(metrics, f"{name}_count", definition="tests/waiting", status="cancelled") == 1
    assert value(metrics, f"{name}_bucket", definition="tests/ok", status="completed", le="+Inf") == 2


async def test_labels_are_bounded_namespace_name_never_version_or_instance(engines: EngineFactory) -> None:
    metrics = Metrics()
    failed_id, waiting_id = await drive(engines, metrics)
    allowed = {"definition", "status", "activity_type", "le"}
    for family in metrics.registry.collect():
        for sample in family.samples:
            assert set(sample.labels) <= allowed, sample
            definition = sample.labels.get("definition")
            if definition is not None:
                assert definition in ("tests/ok", "tests/failing", "tests/waiting"), sample
    exposition = generate_latest(metrics.registry).decode()
    assert failed_id not in exposition and waiting_id not in exposition
    assert "1.0.0" not in exposition


async def test_the_exposition_names_every_metric_of_the_guide(engines: EngineFactory) -> None:
    metrics = Metrics()
    await drive(engines, metrics)
    body, content_type = metrics.exposition()
    text = body.decode()
    for name in (*GUIDE_NAMES, *METRIC_NAMES):
        assert f"\n{name}" in text or text.startswith(name), name
    assert content_type.startswith("text/plain")


async def test_a_fresh_registry_already_exposes_every_gauge_at_zero() -> None:
    metrics = Metrics()
    gauges = (
        "workflow_instances_active",
        "workflow_active_instances",
        "workflow_outbox_events_pending",
        "workflow_outbox_processing_lag_seconds",
        "workflow_database_connection_pool_active",
    )
    for name in gauges:
        assert value(metrics, name) == 0, name
    assert value(metrics, "workflow_instances", status="running") == 0


@dataclass
class SnapshotStore:
    """Just what ``Metrics.refresh`` reads; counts every call so a scrape can be seen not to read."""

    counts: dict[InstanceStatus, int]
    outbox: list[OutboxRecord]
    clock: datetime
    due_timers: int = 0
    calls: list[str] = field(default_factory=list)

    async def count_instances(self) -> dict[InstanceStatus, int]:
        self.calls.append("count_instances")
        return dict(self.counts)

    async def list_outbox(self, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxRecord]:
        self.calls.append("list_outbox")
        return [r for r in self.outbox if status in (None, r.status)][:limit]

    async def now(self) -> datetime:
        self.calls.append("now")
        return self.clock

    async def count_due_timers(self) -> int:
        self.calls.append("count_due_timers")
        return self.due_timers

    async def count_outbox(self) -> dict[OutboxStatus, int]:
        self.calls.append("count_outbox")
        counts: dict[OutboxStatus, int] = {}
        for r in self.outbox:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts


def outbox_rows(now: datetime) -> list[OutboxRecord]:
    def row(i: int, age: int, status: OutboxStatus = OutboxStatus.PENDING) -> OutboxRecord:
        return OutboxRecord(
            f"o{i}", "i", "/do/0/e", {}, status=status, created_on=now - timedelta(seconds=age)
        )

    return [row(1, 600, OutboxStatus.DELIVERED), row(2, 90), row(3, 30), row(4, 5, OutboxStatus.PROCESSING)]


async def test_gauges_come_from_the_refreshed_snapshot_and_a_scrape_reads_no_store() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    counts = {InstanceStatus.PENDING: 1, InstanceStatus.RUNNING: 2, InstanceStatus.SUSPENDED: 3,
              InstanceStatus.COMPLETED: 40, InstanceStatus.FAILED: 5}  # fmt: skip
    store = SnapshotStore(counts, outbox_rows(now), now, due_timers=4)
    in_use = [7]
    metrics = Metrics(pool_active=lambda: in_use[0])
    snapshot = await metrics.refresh(store)
    assert (snapshot.active, snapshot.outbox_pending, snapshot.outbox_lag_seconds) == (6, 2, 90.0)
    calls = len(store.calls)
    generate_latest(metrics.registry)
    assert value(metrics, "workflow_instances_active") == 6
    assert value(metrics, "workflow_active_instances") == 6
    assert value(metrics, "workflow_instances", status="completed") == 40
    assert value(metrics, "workflow_instances", status="cancelled") == 0
    assert value(metrics, "workflow_outbox_events_pending") == 2
    assert value(metrics, "workflow_outbox_processing_lag_seconds") == 90.0
    assert value(metrics, "workflow_timers_due") == 4
    assert value(metrics, "workflow_database_connection_pool_active") == 7
    in_use[0] = 3  # the pool is read at scrape time
    assert value(metrics, "workflow_database_connection_pool_active") == 3
    assert len(store.calls) == calls


async def test_an_empty_database_reads_as_zeros() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    empty = await Metrics().refresh(SnapshotStore({}, [], now))
    assert (empty.active, empty.outbox_pending, empty.outbox_lag_seconds, empty.timers_due) == (0, 0, 0.0, 0)


EMITTING_WORKFLOW = """
do:
  - announce:
      emit:
        event:
          with:
            source: https://tests
            type: com.example.done
"""


async def test_refresh_reads_a_real_store(engines: EngineFactory, store: Store) -> None:
    metrics = Metrics()
    engine = engines([metrics.interceptor()])
    await deploy_all(engine, waiting=WAITING_WORKFLOW, emitting=EMITTING_WORKFLOW)
    await engine.start("tests", "waiting", None, {})
    await finish(engine, "emitting", {})
    await engine.drain()
    snapshot = await metrics.refresh(store)
    assert snapshot.instances.get(InstanceStatus.SUSPENDED) == 1
    assert snapshot.instances.get(InstanceStatus.COMPLETED) == 1
    assert snapshot.active == 1
    assert snapshot.outbox_pending == 1  # no outbox processor runs here
    assert snapshot.outbox_lag_seconds >= 0.0
    assert value(metrics, "workflow_instances", status="suspended") == 1
    assert value(metrics, "workflow_outbox_events_pending") == 1
