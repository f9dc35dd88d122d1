"""The background services' figures as Prometheus metrics, read at scrape time (no I/O).

- ``workflow_leases_held``: instance runs this process holds a lease for;
- ``workflow_timers_fired_total``, ``workflow_timers_near``: timers this process fired,
  and due times it holds in memory;
- ``workflow_outbox_deliveries_total{sink,outcome}``, ``workflow_outbox_dead_letters_total``:
  delivery attempts per sink (``delivered`` / ``failed``) and rows dead-lettered here;
- ``workflow_cleanup_removed_total{kind}``: rows removed by retention;
- ``workflow_schedule_starts_total``: instances started by schedules here;
- ``workflow_service_healthy{service}``: 1 Healthy, 0.5 Degraded, 0 Unhealthy.

The database-wide gauges (instances by status, pending outbox events and their lag,
timers due) come from ``observability.metrics``' periodic snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from flowkeeper.services.host import ServiceHost

_HEALTH_VALUE = {"Healthy": 1.0, "Degraded": 0.5, "Unhealthy": 0.0}


class ServiceCollector:
    """A prometheus-client collector over a :class:`ServiceHost`."""

    def __init__(self, host: ServiceHost) -> None:
        self.host = host

    def describe(self) -> Iterable[Metric]:
        return []  # no describe-time collect: the figures change all the time

    def collect(self) -> Iterable[Metric]:
        host = self.host
        timers = host.timers.figures()
        outbox = host.outbox.figures()
        cleanup = host.cleanup.figures()
        deliveries = CounterMetricFamily(
            "workflow_outbox_deliveries",
            "Outbox delivery attempts by sink and outcome",
            labels=["sink", "outcome"],
        )
        for (sink, outcome), count in sorted(outbox.deliveries.items()):
            deliveries.add_metric([sink, outcome], count)
        removed = CounterMetricFamily(
            "workflow_cleanup_removed", "Rows removed by the cleanup service", labels=["kind"]
        )
        for kind, count in (
            ("instances", cleanup.removed.instances),
            ("log_entries", cleanup.removed.log_entries),
            ("outbox_events", cleanup.removed.outbox_events),
            ("received_events", cleanup.removed.received_events),
        ):
            removed.add_metric([kind], count)
        healthy = GaugeMetricFamily(
            "workflow_service_healthy", "Background service health (1 Healthy, 0.5 Degraded, 0 Unhealthy)",
            labels=["service"],
        )  # fmt: skip
        for name, health in host.health().items():
            healthy.add_metric([name], _HEALTH_VALUE.get(health.status, 0.0))
        return [
            GaugeMetricFamily(
                "workflow_leases_held", "Instance runs this process holds a lease for",
                value=host.dispatcher.leases_held(),
            ),
            CounterMetricFamily("workflow_timers_fired", "Timers fired by this process", value=timers.fired),
            GaugeMetricFamily("workflow_timers_near", "Timer due times held in memory", value=timers.near),
            deliveries,
            CounterMetricFamily(
                "workflow_outbox_dead_letters", "Outbox events dead-lettered by this process",
                value=outbox.dead_letters,
            ),
            removed,
            CounterMetricFamily(
                "workflow_schedule_starts", "Instances started by workflow schedules in this process",
                value=host.scheduler.figures().started,
            ),
            healthy,
        ]  # fmt: skip
