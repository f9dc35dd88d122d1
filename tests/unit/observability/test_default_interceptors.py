"""default_interceptors: what the services host attaches to its Engine, outermost first."""

from __future__ import annotations

import io
import re

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flowkeeper.observability as observability
from flowkeeper.config import LoggingSettings, Settings
from flowkeeper.observability import (
    LoggingInterceptor,
    Metrics,
    MetricsInterceptor,
    TracingInterceptor,
    configure_logging,
    configure_tracing,
    default_interceptors,
)
from flowkeeper.records import InstanceStatus
from tests.unit.observability.conftest import OK_WORKFLOW, EngineFactory, deploy_all, finish


def test_logging_only_by_default_with_the_debug_flags_of_the_settings() -> None:
    settings = Settings(logging=LoggingSettings(log_state_transitions=True))
    [only] = default_interceptors(settings)
    assert isinstance(only, LoggingInterceptor)
    assert only.state_transitions and not only.activity_input_output
    [from_section] = default_interceptors(LoggingSettings(log_activity_input_output=True))
    assert isinstance(from_section, LoggingInterceptor) and from_section.activity_input_output


def test_tracing_then_metrics_then_logging() -> None:
    metrics = Metrics()
    provider = configure_tracing("svc", sampler_ratio=1.0, set_global=False)
    chain = default_interceptors(Settings(), metrics, tracing=provider)
    assert [type(i) for i in chain] == [TracingInterceptor, MetricsInterceptor, LoggingInterceptor]
    assert [type(i) for i in default_interceptors(Settings(), tracing=True)] == [
        TracingInterceptor,
        LoggingInterceptor,
    ]
    provider.shutdown()


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = observability.NoSuchThing


async def test_the_whole_chain_on_an_engine_logs_inside_the_span(
    engines: EngineFactory, log_stream: io.StringIO
) -> None:
    configure_logging(LoggingSettings(format="json"), stream=log_stream)
    provider = configure_tracing("svc", sampler_ratio=1.0, set_global=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = Metrics()
    engine = engines(default_interceptors(Settings(), metrics, tracing=provider))
    await deploy_all(engine, ok=OK_WORKFLOW)
    done = await finish(engine, "ok", {"n": 1})
    assert done.status == InstanceStatus.COMPLETED
    [span] = exporter.get_finished_spans()
    assert span.context is not None
    trace_id = format(span.context.trace_id, "032x")
    [line] = [line for line in log_stream.getvalue().splitlines() if "Successfully completed" in line]
    assert re.search(rf'"trace_id": "{trace_id}"', line)
    assert (
        metrics.registry.get_sample_value(
            "workflow_instances_completed_total", {"definition": "tests/ok", "status": "completed"}
        )
        == 1
    )
    provider.shutdown()
