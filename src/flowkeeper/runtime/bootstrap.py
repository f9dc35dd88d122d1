"""Builds an :class:`Engine` from the settings: store, activities, secrets, identity."""

from __future__ import annotations

import importlib

from flowkeeper import version
from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.config import Settings
from flowkeeper.errors import ConfigurationError
from flowkeeper.runtime.engine import Engine
from flowkeeper.runtime.hooks import Interceptor
from flowkeeper.store import Store, create_store


def activity_options(settings: Settings) -> ActivityOptions:
    """Map the ``http`` and ``processes`` sections onto the activities' options."""
    http = settings.http
    return ActivityOptions(
        timeout=settings.outbound_timeout.total_seconds(),
        connect_timeout=http.connect_timeout.total_seconds(),
        max_redirects=http.max_redirects,
        verify_tls=http.verify_tls,
        is_destination_allowed=http.is_destination_allowed,
        shell_enabled=settings.processes.shell_enabled,
        script_enabled=settings.processes.script_enabled,
        process_timeout=settings.processes.timeout.total_seconds(),
        python_executable=settings.processes.python_executable,
        node_executable=settings.processes.resolve_node_executable(),
    )


def open_store(settings: Settings, url: str | None = None) -> Store:
    """The store of ``database.url`` (or ``url``), not yet opened."""
    db = settings.database
    return create_store(
        url or db.url,
        min_pool_size=db.min_pool_size,
        max_pool_size=db.max_pool_size,
        connect_timeout=db.connect_timeout.total_seconds(),
        command_timeout=db.command_timeout.total_seconds(),
        echo=db.echo,
    )


def build_engine(
    settings: Settings,
    store: Store,
    *,
    functions: FunctionRegistry | None = None,
    interceptors: list[Interceptor] | None = None,
) -> Engine:
    """An engine over an opened store, configured from ``settings``.

    ``engine.function_modules`` are imported first: their ``@function`` decorators
    register into the default function registry.
    """
    for module in settings.engine.function_modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"engine.function_modules: cannot import {module!r}: {exc}") from exc
    return Engine(
        store,
        Activities(activity_options(settings), functions),
        secrets=settings.secrets.load(),
        owner=settings.engine.effective_worker_id(),
        lease=settings.engine.lease_duration,
        interceptors=interceptors or [],
        runtime={"name": settings.engine.runtime_name, "version": version(), "metadata": {}},
        definition_cache_size=settings.cache.definition_cache_size,
        event_retention=settings.events.retention,
    )
