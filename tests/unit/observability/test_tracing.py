"""Tracing: ExecuteActivity spans around outside effects, sampling, lazy import."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from flowkeeper.errors import ERROR_TYPE_BASE
from flowkeeper.observability import TracingInterceptor, configure_tracing
from flowkeeper.observability.tracing import traces_url
from flowkeeper.records import InstanceStatus
from tests.unit.observability.conftest import (
    FAILING_WORKFLOW,
    OK_WORKFLOW,
    SECRET,
    EngineFactory,
    deploy_all,
    finish,
)


def provider_with_exporter(ratio: float) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = configure_tracing("flowkeeper-tests", sampler_ratio=ratio, set_global=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, exporter = provider_with_exporter(1.0)
    yield provider, exporter
    provider.shutdown()


async def test_each_outside_effect_gets_an_execute_activity_span(
    engines: EngineFactory, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    engine = engines([TracingInterceptor(provider)])
    await deploy_all(engine, ok=OK_WORKFLOW)
    done = await finish(engine, "ok", {"n": 1})
    assert done.status == InstanceStatus.COMPLETED
    [span] = exporter.get_finished_spans()  # the two `set` tasks are not outside effects
    assert span.name == "ExecuteActivity"
    assert span.kind == SpanKind.INTERNAL
    assert dict(span.attributes or {}) == {
        "workflow.id": done.id,
        "workflow.definition": "tests/ok/1.0.0",
        "activity.id": "/do/1/compute",
        "activity.type": "function",
    }
    assert span.status.status_code == StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "flowkeeper-tests"
    assert span.instrumentation_scope is not None and span.instrumentation_scope.name == "flowkeeper"


async def test_a_failed_effect_marks_its_span_with_the_dsl_error_and_no_payload(
    engines: EngineFactory, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    engine = engines([TracingInterceptor(provider)])
    await deploy_all(engine, failing=FAILING_WORKFLOW)
    done = await finish(engine, "failing", {"password": SECRET})
    [span] = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "503 Service Unavailable"
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == ERROR_TYPE_BASE + "communication"
    assert attributes["workflow.error.status"] == 503
    assert attributes["workflow.id"] == done.id
    assert attributes["activity.id"] == "/do/1/fetch"
    assert list(span.events) == []  # no exception event: its message carries the detail
    assert SECRET not in repr(attributes) and SECRET not in str(span.status.description)


async def test_nothing_is_recorded_when_the_sampler_drops_the_trace(engines: EngineFactory) -> None:
    provider, exporter = provider_with_exporter(0.0)
    engine = engines([TracingInterceptor(provider)])
    await deploy_all(engine, ok=OK_WORKFLOW)
    await finish(engine, "ok", {"n": 1})
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_the_default_sampler_keeps_ten_percent_of_new_traces_and_follows_parents() -> None:
    provider = configure_tracing("flowkeeper", set_global=False)
    description = provider.sampler.get_description()
    assert description.startswith("ParentBased{root:TraceIdRatioBased{0.1}")
    provider.shutdown()


def test_an_otlp_endpoint_adds_an_exporter_and_none_adds_nothing() -> None:
    with_endpoint = configure_tracing("svc", otlp_endpoint="http://127.0.0.1:4318", set_global=False)
    without = configure_tracing("svc", set_global=False)
    # The SDK keeps its processors on the active multi-processor.
    assert len(with_endpoint._active_span_processor._span_processors) == 1
    assert len(without._active_span_processor._span_processors) == 0
    with_endpoint.shutdown()  # nothing was recorded: nothing is sent
    without.shutdown()


def test_the_traces_path_is_added_to_a_bare_collector_url() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert (
        traces_url("https://otel.example.com/custom/v1/traces") == "https://otel.example.com/custom/v1/traces"
    )


def test_a_sampler_ratio_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="sampler_ratio"):
        configure_tracing("svc", sampler_ratio=1.5, set_global=False)


def test_importing_observability_and_the_runtime_loads_neither_opentelemetry_nor_prometheus() -> None:
    code = (
        "import sys, flowkeeper.runtime, flowkeeper.observability as o\n"
        "from flowkeeper.config import LoggingSettings\n"
        "o.configure_logging(LoggingSettings())\n"
        "o.default_interceptors(LoggingSettings())\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'opentelemetry', 'prometheus_client'})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
