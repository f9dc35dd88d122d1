"""OpenTelemetry tracing: an ``ExecuteActivity`` span around every outside effect.

Span attributes: ``workflow.id``, ``workflow.definition`` (``namespace/name/version``),
``activity.id`` (the task reference), ``activity.type`` (``http``, ``openapi``,
``function``, ``process``). A failed effect sets the span's status to ERROR with
``{status} {title}`` and the attributes ``error.type`` (the DSL error type) and
``workflow.error.status``; no payload, header or exception message is ever recorded.

OpenTelemetry is imported only when tracing is used (``configure_tracing`` or a
``TracingInterceptor``), so ``flowkeeper run`` does not pay for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flowkeeper import version
from flowkeeper.observability.labels import effect_kind, error_parts
from flowkeeper.runtime.hooks import ActivityInput, Interceptor

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import TracerProvider

JSON = Any

#: Instrumentation scope name of Flowkeeper's spans.
TRACER_NAME = "flowkeeper"
SPAN_NAME = "ExecuteActivity"


def configure_tracing(
    service_name: str = "flowkeeper",
    sampler_ratio: float = 0.1,
    otlp_endpoint: str | None = None,
    *,
    set_global: bool = True,
) -> SdkTracerProvider:
    """A tracer provider sampling ``sampler_ratio`` of new traces (the guide's 10%).

    The sampler is ``ParentBased(TraceIdRatioBased(sampler_ratio))``: a root span is kept
    with that probability and a child follows its parent's decision, so a trace is never
    cut in half. With ``otlp_endpoint`` (``http://collector:4318``; ``/v1/traces`` is
    added when the URL has no path) spans are batched to it over OTLP/HTTP; without,
    nothing is exported. ``set_global`` installs it as the process's provider (possible
    once per process); call ``shutdown()`` on it at exit to flush.
    """
    if not 0.0 <= sampler_ratio <= 1.0:
        raise ValueError(f"sampler_ratio must be between 0 and 1 (got {sampler_ratio})")
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = SdkTracerProvider(
        sampler=ParentBased(root=TraceIdRatioBased(sampler_ratio)),
        resource=Resource.create({"service.name": service_name, "service.version": version()}),
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(otlp_endpoint))))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (``/v1/traces`` added to a bare host)."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


class TracingInterceptor(Interceptor):
    """Wraps each outside effect in an ``ExecuteActivity`` span.

    ``tracer_provider`` defaults to the global one (see ``configure_tracing``); with the
    API's default no-op provider the spans cost next to nothing.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._tracer = trace.get_tracer(TRACER_NAME, version(), tracer_provider=tracer_provider)
        self._kind = SpanKind.INTERNAL
        self._status = Status
        self._error = StatusCode.ERROR

    async def execute_activity(
        self, input: ActivityInput, next: Callable[[ActivityInput], Awaitable[JSON]]
    ) -> JSON:
        effect = input.effect
        attributes = {
            "workflow.id": input.instance_id,
            "workflow.definition": input.definition,
            "activity.id": effect.activity_id,
            "activity.type": effect_kind(effect),
        }
        with self._tracer.start_as_current_span(
            SPAN_NAME,
            kind=self._kind,
            attributes=attributes,
            record_exception=False,  # exception messages may carry payloads
            set_status_on_exception=False,
        ) as span:
            try:
                return await next(input)
            except asyncio.CancelledError:
                span.set_attribute("activity.cancelled", True)
                raise
            except Exception as exc:
                error_type, status, title = error_parts(exc)
                span.set_attribute("error.type", error_type)
                if status != "-":
                    span.set_attribute("workflow.error.status", int(status))
                span.set_status(self._status(self._error, f"{status} {title}"))
                raise
