"""Activities: the performers of effects, the only layer that talks to the outside world.

The runtime hands an outside effect (:data:`~flowkeeper.engine.effects.OUTSIDE_EFFECTS`)
to :meth:`Activities.perform` and checkpoints what comes back: the activity's raw
output (a JSON value), or a :class:`~flowkeeper.errors.WorkflowError` carrying the
DSL error that ``try``/``catch`` sees. Expressions and URI templates were evaluated
by the interpreter before the effect was built; activities only perform it.

One module per family: :mod:`.http` (``call: http``), :mod:`.openapi`
(``call: openapi``), :mod:`.functions` (registered Python functions),
:mod:`.processes` (``run: shell`` / ``run: script``); :mod:`.auth` turns
authentication policies into credentials; :mod:`.options` holds the settings.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from flowkeeper.activities import functions as _functions
from flowkeeper.activities.auth import Authenticator
from flowkeeper.activities.functions import FunctionRegistry, default_registry, function
from flowkeeper.activities.http import HttpActivity, HttpClient
from flowkeeper.activities.openapi import OpenApiActivity
from flowkeeper.activities.options import ActivityOptions
from flowkeeper.activities.processes import ProcessActivity
from flowkeeper.engine.effects import Effect, FunctionCall, HttpCall, OpenApiCall, ProcessRun

__all__ = ["Activities", "ActivityOptions", "FunctionRegistry", "default_registry", "function"]


class Activities:
    """Performs outside effects with one shared HTTP connection pool.

    One instance per process: it owns the pooled HTTP client (opened on the first
    call), the OAuth2 token cache and the OpenAPI document cache. Close it with
    :meth:`aclose` (or ``async with``).
    """

    def __init__(
        self, options: ActivityOptions | None = None, functions: FunctionRegistry | None = None
    ) -> None:
        self.options = options if options is not None else ActivityOptions()
        # Looked up now, not at import, so the registry in use is the module's current one.
        self.functions = functions if functions is not None else _functions.default_registry
        self._client = HttpClient(self.options)
        self._http = HttpActivity(self._client, Authenticator(), self.options)
        self._openapi = OpenApiActivity(self._http, self.options)
        self._processes = ProcessActivity(self.options)

    async def perform(self, effect: Effect) -> Any:
        """Perform ``effect``; return its raw output or raise the DSL error (``WorkflowError``).

        ``TypeError`` for an effect that is not an outside effect (a runtime bug).
        """
        if isinstance(effect, HttpCall):
            return await self._http.perform(effect)
        if isinstance(effect, OpenApiCall):
            return await self._openapi.perform(effect)
        if isinstance(effect, FunctionCall):
            return await self.functions.call(effect.function, effect.arguments)
        if isinstance(effect, ProcessRun):
            return await self._processes.perform(effect)
        raise TypeError(f"{type(effect).__name__} is not performed by activities")

    async def aclose(self) -> None:
        """Close the connection pool and kill detached processes."""
        await self._processes.aclose()
        await self._client.aclose()

    async def __aenter__(self) -> Activities:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
