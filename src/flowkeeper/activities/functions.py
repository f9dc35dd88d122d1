"""Custom functions: Python callables that workflows call by name.

Functions come from two places: explicit registration (:meth:`FunctionRegistry.register`
or the :func:`function` decorator, which fills :data:`default_registry`) and entry
points of the group ``flowkeeper.functions`` (``name = "module:callable"``), discovered
on first lookup and each imported when first called.

A function receives the call's arguments as keyword arguments and may be sync or
async. Sync functions run in a worker thread, so a slow one cannot stall the event
loop, unless registered ``inline=True`` (for cheap pure functions, where the thread
hop would cost more than the call). Its return value must be JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from flowkeeper.errors import WorkflowError, standard_error

#: Entry point group scanned for functions.
ENTRY_POINT_GROUP = "flowkeeper.functions"
#: Attribute the decorator sets so an entry point keeps its ``inline`` choice.
_INLINE_ATTRIBUTE = "__flowkeeper_inline__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RegisteredFunction:
    """A function known by ``name``; ``inline`` sync functions run on the event loop."""

    name: str
    fn: Callable[..., Any]
    inline: bool = False


class FunctionRegistry:
    """Name -> function, explicit registrations first, then entry points (lazily)."""

    def __init__(self, *, entry_point_group: str | None = ENTRY_POINT_GROUP) -> None:
        """``entry_point_group=None`` disables entry point discovery (tests, embedding)."""
        self._functions: dict[str, RegisteredFunction] = {}
        self._group = entry_point_group
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None

    def register(self, name: str, fn: Callable[..., Any], *, inline: bool = False) -> None:
        """Make ``fn`` callable as ``name``; another function under a taken name is an error."""
        if not callable(fn):
            raise TypeError(f"function {name!r} is not callable")
        existing = self._functions.get(name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"a different function is already registered as {name!r}")
        self._functions[name] = RegisteredFunction(name, fn, inline)

    def names(self) -> list[str]:
        """Every known name, registered and discovered (discovered ones are not imported)."""
        return sorted({*self._functions, *self._discover()})

    def get(self, name: str) -> RegisteredFunction | None:
        """The function called ``name``, importing its entry point on first use."""
        found = self._functions.get(name)
        if found is not None:
            return found
        entry_point = self._discover().get(name)
        if entry_point is None:
            return None
        try:
            fn = entry_point.load()
        except Exception as exc:
            raise standard_error(
                "configuration",
                f"function {name} ({entry_point.value}) could not be loaded: {type(exc).__name__}: {exc}",
                status=400,
            ) from exc
        if not callable(fn):
            raise standard_error(
                "configuration",
                f"entry point {entry_point.value} of function {name} is not callable",
                status=400,
            )
        found = RegisteredFunction(name, fn, bool(getattr(fn, _INLINE_ATTRIBUTE, False)))
        self._functions[name] = found
        return found

    async def call(self, name: str, arguments: Mapping[str, Any]) -> Any:
        """Call ``name`` with ``arguments`` as keywords; return its (JSON) result.

        Raises the DSL configuration error for an unknown name, the validation error
        when the arguments do not fit the signature, and the runtime error (500) for
        anything the function raises, except a :class:`WorkflowError`, which passes as is.
        """
        entry = self.get(name)
        if entry is None:
            raise standard_error("configuration", f"no function named {name} is registered", status=400)
        fn = entry.fn
        _check_arguments(name, fn, arguments)
        try:
            if _is_async(fn):
                result = await fn(**arguments)
            elif entry.inline:
                result = fn(**arguments)
            else:
                result = await asyncio.to_thread(fn, **arguments)
            if inspect.isawaitable(result):  # e.g. a sync wrapper returning a coroutine
                result = await result
        except WorkflowError:
            raise
        except Exception as exc:
            raise standard_error("runtime", f"{type(exc).__name__}: {exc}", status=500) from exc
        return _as_json(name, result)

    def _discover(self) -> dict[str, importlib.metadata.EntryPoint]:
        # Scanned once: installed distributions do not change under a running engine.
        if self._entry_points is None:
            found: dict[str, importlib.metadata.EntryPoint] = {}
            if self._group is not None:
                for entry_point in importlib.metadata.entry_points(group=self._group):
                    found.setdefault(entry_point.name, entry_point)
            self._entry_points = found
        return self._entry_points


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    # A callable object whose __call__ is async.
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)


@functools.lru_cache(maxsize=1024)
def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    # Reading a signature costs more than many a function's own work: once per function.
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # no signature to check against (some builtins): let the call decide


def _check_arguments(name: str, fn: Callable[..., Any], arguments: Mapping[str, Any]) -> None:
    try:
        signature = _signature(fn)
    except TypeError:  # unhashable callable object
        signature = None
    if signature is None:
        return
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        raise standard_error("validation", f"function {name}: {exc}", status=400) from None


def _as_json(name: str, value: Any) -> Any:
    # Round-trip rather than only check: the engine then holds exactly what the store
    # will persist (tuples as lists, keys as strings), so a resumed instance sees the same.
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise standard_error(
            "runtime", f"function {name} returned a value that is not JSON: {exc}", status=500
        ) from None


#: The registry the :func:`function` decorator fills; the default of ``Activities``.
default_registry = FunctionRegistry()


@overload
def function(name: F, /) -> F: ...


@overload
def function(
    name: str | None = None, *, inline: bool = False, registry: FunctionRegistry | None = None
) -> Callable[[F], F]: ...


def function(
    name: str | Callable[..., Any] | None = None,
    *,
    inline: bool = False,
    registry: FunctionRegistry | None = None,
) -> Any:
    """Register the decorated function (under its ``__name__`` unless ``name`` is given).

    Usable bare (``@function``) or called (``@function("risk-score", inline=True)``);
    registers into :data:`default_registry` unless ``registry`` is given.
    """

    def decorate(fn: F) -> F:
        target = registry if registry is not None else default_registry
        target.register(name if isinstance(name, str) else fn.__name__, fn, inline=inline)
        if inline:
            # Objects without a __dict__ keep their inline choice only in this registry.
            with contextlib.suppress(AttributeError, TypeError):
                setattr(fn, _INLINE_ATTRIBUTE, True)
        return fn

    if callable(name):
        return decorate(name)
    return decorate
