"""Prometheus metrics with the guide's names, fed by runtime hooks and a periodic store snapshot.

Counters and histograms are updated by :class:`MetricsInterceptor` as things happen:

- ``workflow_instances_started_total{definition}``: an instance's first step committed
  (its workflow-level ``started`` log row), whoever ran it: this process, a worker that
  claimed it ``pending``, or a parent that started it as a child;
- ``workflow_instances_completed_total{definition,status}``: ended ``completed``,
  ``failed`` or ``cancelled``;
- ``workflow_activities_executed_total{definition,activity_type}`` and
  ``workflow_activities_failed_total{definition,activity_type}``: tasks that completed or
  faulted (a fault counts in both), ``activity_type`` the task type (``set``, ``call`` …);
- ``workflow_activity_execution_duration{definition,activity_type}`` (seconds): each
  outside effect, ``activity_type`` its kind (``http``, ``openapi``, ``function``, ``process``);
- ``workflow_execution_duration{definition,status}`` (seconds): started to ended.

Gauges are read from a snapshot that ``await metrics.refresh(store)`` takes (the services
host calls it every few seconds); a scrape only reads the snapshot, it never touches the
database: ``workflow_instances_active`` (pending + running + suspended) and its alias
``workflow_active_instances``, ``workflow_instances{status}``,
``workflow_outbox_events_pending``, ``workflow_outbox_processing_lag_seconds`` (age of the
oldest pending outbox row, 0 if none), ``workflow_timers_due`` (due, not yet fired) and
``workflow_database_connection_pool_active`` (from the ``pool_active`` callable, read at
scrape time).

``definition`` is ``namespace/name``: neither the version nor the instance id is a label.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from flowkeeper.observability.labels import definition_label, effect_kind, instance_label
from flowkeeper.records import InstanceRecord, InstanceStatus, LogEntry, LogEvent, OutboxStatus
from flowkeeper.runtime.hooks import ActivityInput, Interceptor
from flowkeeper.store.port import Store

JSON = Any

#: Every metric name this module exposes (as they appear in the exposition).
METRIC_NAMES = (
    "workflow_instances_started_total",
    "workflow_instances_completed_total",
    "workflow_activities_executed_total",
    "workflow_activities_failed_total",
    "workflow_activity_execution_duration",
    "workflow_execution_duration",
    "workflow_instances_active",
    "workflow_active_instances",
    "workflow_instances",
    "workflow_outbox_events_pending",
    "workflow_outbox_processing_lag_seconds",
    "workflow_database_connection_pool_active",
    "workflow_timers_due",
)

ACTIVITY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
EXECUTION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
                     86400.0, 604800.0)  # fmt: skip
_ACTIVE = (InstanceStatus.PENDING, InstanceStatus.RUNNING, InstanceStatus.SUSPENDED)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the last ``refresh`` read from the store."""

    instances: Mapping[InstanceStatus, int] = field(default_factory=dict)
    outbox_pending: int = 0
    outbox_lag_seconds: float = 0.0
    timers_due: int = 0

    @property
    def active(self) -> int:
        return sum(self.instances.get(status, 0) for status in _ACTIVE)


class Metrics:
    """The engine's metrics in their own registry (serve it at ``/metrics``).

    ``pool_active`` returns how many database connections are checked out (read at
    scrape time, so it must be cheap and must not block); 0 without one.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        pool_active: Callable[[], int] | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.pool_active = pool_active
        self.snapshot = Snapshot()
        r = self.registry
        self.instances_started = Counter(
            "workflow_instances_started", "Workflow instances started", ["definition"], registry=r
        )
        self.instances_completed = Counter(
            "workflow_instances_completed",
            "Workflow instances ended, by final status (completed, failed, cancelled)",
            ["definition", "status"],
            registry=r,
        )
        self.activities_executed = Counter(
            "workflow_activities_executed",
            "Activities (tasks) that completed or faulted",
            ["definition", "activity_type"],
            registry=r,
        )
        self.activities_failed = Counter(
            "workflow_activities_failed", "Activities (tasks) that faulted", ["definition", "activity_type"],
            registry=r,
        )  # fmt: skip
        self.activity_duration = Histogram(
            "workflow_activity_execution_duration",
            "Duration of outside effects (http, openapi, function, process) in seconds",
            ["definition", "activity_type"],
            buckets=ACTIVITY_BUCKETS,
            registry=r,
        )
        self.execution_duration = Histogram(
            "workflow_execution_duration",
            "Duration of workflow instances from start to end in seconds",
            ["definition", "status"],
            buckets=EXECUTION_BUCKETS,
            registry=r,
        )
        r.register(_SnapshotCollector(self))

    def interceptor(self) -> MetricsInterceptor:
        """A runtime interceptor feeding these metrics."""
        return MetricsInterceptor(self)

    async def refresh(self, store: Store) -> Snapshot:
        """Read instance counts and the outbox backlog from ``store`` into the snapshot."""
        counts = await store.count_instances()
        pending, oldest = await self._outbox(store)
        now = await store.now()
        lag = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        self.snapshot = Snapshot(dict(counts), pending, lag, await store.count_due_timers())
        return self.snapshot

    async def _outbox(self, store: Store) -> tuple[int, datetime | None]:
        oldest_rows = await store.list_outbox(OutboxStatus.PENDING, limit=1)
        oldest = oldest_rows[0].created_on if oldest_rows else None
        counts = await store.count_outbox()
        return int(counts.get(OutboxStatus.PENDING, 0)), oldest

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of a Prometheus scrape."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SnapshotCollector:
    """Gauges from the last snapshot; ``collect`` does no I/O."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families(Snapshot(), 0)

    def collect(self) -> Iterable[Metric]:
        pool = self.metrics.pool_active
        return self._families(self.metrics.snapshot, pool() if pool is not None else 0)

    @staticmethod
    def _families(snapshot: Snapshot, pool_active: int) -> list[Metric]:
        by_status = GaugeMetricFamily("workflow_instances", "Workflow instances by status", labels=["status"])
        for status in InstanceStatus:
            by_status.add_metric([status.value], snapshot.instances.get(status, 0))
        active_help = "Workflow instances pending, running or suspended"
        return [
            GaugeMetricFamily("workflow_instances_active", active_help, value=snapshot.active),
            GaugeMetricFamily("workflow_active_instances", f"{active_help} (alias)", value=snapshot.active),
            by_status,
            GaugeMetricFamily(
                "workflow_outbox_events_pending", "Outbox events waiting for delivery",
                value=snapshot.outbox_pending,
            ),
            GaugeMetricFamily(
                "workflow_outbox_processing_lag_seconds", "Age of the oldest pending outbox event in seconds",
                value=snapshot.outbox_lag_seconds,
            ),
            GaugeMetricFamily(
                "workflow_database_connection_pool_active", "Database connections in use",
                value=pool_active,
            ),
            GaugeMetricFamily(
                "workflow_timers_due", "Timers due and not fired yet (a backlog when it stays above 0)",
                value=snapshot.timers_due,
            ),
        ]  # fmt: skip


class MetricsInterceptor(Interceptor):
    """Feeds :class:`Metrics` from the runtime hooks."""

    def __init__(self, metrics: Metrics, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.metrics = metrics
        self.clock = clock

    async def execute_activity(
        self, input: ActivityInput, next: Callable[[ActivityInput], Awaitable[JSON]]
    ) -> JSON:
        started = self.clock()
        cancelled = False
        try:
            return await next(input)
        except asyncio.CancelledError:
            cancelled = True  # dropped (a task timeout, the instance cancelled): not a duration
            raise
        finally:
            if not cancelled:
                self.metrics.activity_duration.labels(
                    definition_label(input.definition), effect_kind(input.effect)
                ).observe(max(self.clock() - started, 0.0))

    def log_written(self, instance: InstanceRecord, entries: Sequence[LogEntry]) -> None:
        m = self.metrics
        definition = instance_label(instance)
        for entry in entries:
            if entry.reference == "/":
                if entry.event == LogEvent.STARTED:
                    m.instances_started.labels(definition).inc()
                continue
            if entry.event not in (LogEvent.COMPLETED, LogEvent.FAULTED):
                continue
            activity_type = entry.task_type or "unknown"
            m.activities_executed.labels(definition, activity_type).inc()
            if entry.event == LogEvent.FAULTED:
                m.activities_failed.labels(definition, activity_type).inc()

    def instance_finished(self, instance: InstanceRecord) -> None:
        if not instance.status.is_terminal:
            return
        m = self.metrics
        labels = (instance_label(instance), instance.status.value)
        m.instances_completed.labels(*labels).inc()
        if instance.started_on is not None and instance.completed_on is not None:
            seconds = (instance.completed_on - instance.started_on).total_seconds()
            m.execution_duration.labels(*labels).observe(max(seconds, 0.0))
