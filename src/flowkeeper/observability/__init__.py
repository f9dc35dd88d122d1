"""Logging, metrics and tracing, attached to the runtime through its hooks (interceptors).

Typical wiring (the services host)::

    configure_logging(settings.logging, secret_values=secrets.values())
    metrics = Metrics(pool_active=...)
    engine = Engine(store, activities, interceptors=default_interceptors(settings, metrics, tracing=True))
    ...  every few seconds: await metrics.refresh(store)

``Metrics``/``MetricsInterceptor`` (prometheus-client) and ``TracingInterceptor``/
``configure_tracing`` (OpenTelemetry) are imported on first use, so importing this
package stays cheap for ``flowkeeper run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkeeper.config import LoggingSettings, Settings
from flowkeeper.observability.events_log import LoggingInterceptor
from flowkeeper.observability.logging import configure_logging, reset_logging
from flowkeeper.observability.redaction import Redactor, mask_text, mask_value
from flowkeeper.runtime.hooks import Interceptor

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from flowkeeper.observability.metrics import Metrics, MetricsInterceptor
    from flowkeeper.observability.tracing import TracingInterceptor, configure_tracing

__all__ = [
    "LoggingInterceptor",
    "Metrics",
    "MetricsInterceptor",
    "Redactor",
    "TracingInterceptor",
    "configure_logging",
    "configure_tracing",
    "default_interceptors",
    "mask_text",
    "mask_value",
    "reset_logging",
]

_LAZY = {
    "Metrics": "flowkeeper.observability.metrics",
    "MetricsInterceptor": "flowkeeper.observability.metrics",
    "TracingInterceptor": "flowkeeper.observability.tracing",
    "configure_tracing": "flowkeeper.observability.tracing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def default_interceptors(
    settings: Settings | LoggingSettings,
    metrics: Metrics | None = None,
    tracing: bool | TracerProvider = False,
) -> list[Interceptor]:
    """The interceptors to give an ``Engine``, outermost first.

    Tracing (when ``tracing`` is true: the global provider, or the provider given)
    comes first so that the other hooks run inside the ``ExecuteActivity`` span (log
    lines then carry its ``trace_id``); then metrics (when given); then logging, with
    the debug-mode flags of ``settings`` (the whole settings or their ``logging`` part).
    """
    logging_settings = settings.logging if isinstance(settings, Settings) else settings
    interceptors: list[Interceptor] = []
    if tracing is not False:
        from flowkeeper.observability.tracing import TracingInterceptor

        interceptors.append(TracingInterceptor(None if tracing is True else tracing))
    if metrics is not None:
        interceptors.append(metrics.interceptor())
    interceptors.append(LoggingInterceptor(logging_settings))
    return interceptors
