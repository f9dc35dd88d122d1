"""Custom functions: registration, decorator, sync/async calls, entry points, error mapping."""

from __future__ import annotations

import importlib.metadata
import threading
from typing import Any

import pytest

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry, function
from flowkeeper.activities import functions as functions_module
from flowkeeper.engine.effects import FunctionCall
from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError, standard_error


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry(entry_point_group=None)


async def test_sync_function_runs_in_a_worker_thread(registry: FunctionRegistry) -> None:
    def where(x: int) -> dict[str, Any]:
        return {"double": 2 * x, "thread": threading.get_ident()}

    registry.register("where", where)
    out = await registry.call("where", {"x": 21})
    assert out["double"] == 42
    assert out["thread"] != threading.get_ident()


async def test_inline_function_runs_on_the_event_loop(registry: FunctionRegistry) -> None:
    registry.register("here", lambda: threading.get_ident(), inline=True)
    assert await registry.call("here", {}) == threading.get_ident()


async def test_async_function_is_awaited(registry: FunctionRegistry) -> None:
    async def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    registry.register("greet", greet)
    assert await registry.call("greet", {"name": "ann"}) == "hello ann!"


async def test_decorator_registers_into_a_registry(registry: FunctionRegistry) -> None:
    @function(registry=registry)
    def plain(a: int, b: int) -> int:
        return a + b

    @function("risk-score", inline=True, registry=registry)
    async def score(amount: float) -> float:
        return amount / 100

    assert registry.names() == ["plain", "risk-score"]
    assert await registry.call("plain", {"a": 1, "b": 2}) == 3
    assert await registry.call("risk-score", {"amount": 250}) == 2.5
    assert plain(1, 1) == 2  # the decorated function is returned unchanged


async def test_bare_decorator_fills_the_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = FunctionRegistry(entry_point_group=None)
    monkeypatch.setattr(functions_module, "default_registry", fresh)

    @function
    def shout(text: str) -> str:
        return text.upper()

    assert fresh.names() == ["shout"]
    async with Activities(ActivityOptions()) as performer:  # defaults to the default registry
        effect = FunctionCall(id="i:1", activity_id="/do/0/f", function="shout", arguments={"text": "hi"})
        assert await performer.perform(effect) == "HI"


def test_registering_another_function_under_a_taken_name(registry: FunctionRegistry) -> None:
    def one() -> int:
        return 1

    registry.register("f", one)
    registry.register("f", one)  # the same function again (a module reload) is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register("f", lambda: 2)


async def test_unknown_function(registry: FunctionRegistry) -> None:
    with pytest.raises(WorkflowError) as caught:
        await registry.call("nope", {})
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"
    assert caught.value.status == 400
    assert caught.value.detail == "no function named nope is registered"


async def test_exception_becomes_a_runtime_error(registry: FunctionRegistry) -> None:
    def boom() -> None:
        raise ValueError("bad input")

    registry.register("boom", boom)
    with pytest.raises(WorkflowError) as caught:
        await registry.call("boom", {})
    assert caught.value.type == ERROR_TYPE_BASE + "runtime"
    assert caught.value.status == 500
    assert caught.value.detail == "ValueError: bad input"


async def test_workflow_error_passes_through(registry: FunctionRegistry) -> None:
    async def deny() -> None:
        raise standard_error("authorization", "not yours", status=403)

    registry.register("deny", deny)
    with pytest.raises(WorkflowError) as caught:
        await registry.call("deny", {})
    assert (caught.value.type, caught.value.status) == (ERROR_TYPE_BASE + "authorization", 403)


async def test_arguments_not_fitting_the_signature(registry: FunctionRegistry) -> None:
    registry.register("one", lambda x: x, inline=True)
    with pytest.raises(WorkflowError) as caught:
        await registry.call("one", {"y": 1})
    assert caught.value.type == ERROR_TYPE_BASE + "validation"
    assert caught.value.status == 400


async def test_result_must_be_json(registry: FunctionRegistry) -> None:
    registry.register("tuple", lambda: {"pair": (1, 2), 3: "three"}, inline=True)
    assert await registry.call("tuple", {}) == {"pair": [1, 2], "3": "three"}
    registry.register("object", lambda: object(), inline=True)
    with pytest.raises(WorkflowError) as caught:
        await registry.call("object", {})
    assert caught.value.type == ERROR_TYPE_BASE + "runtime"
    registry.register("nan", lambda: float("nan"), inline=True)
    with pytest.raises(WorkflowError):
        await registry.call("nan", {})


# -- entry points ------------------------------------------------------------------------------


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str]) -> list[str]:
    """Serve ``entries`` (name, "module:attr") as the installed entry points; return the groups asked."""
    asked: list[str] = []

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        asked.append(group)
        return [importlib.metadata.EntryPoint(name, value, group) for name, value in entries]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return asked


async def test_entry_points_are_discovered_once_and_loaded_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_entry_points(monkeypatch, ("to-json", "json:dumps"), ("broken", "no_such_module_xyz:f"))
    registry = FunctionRegistry()
    assert asked == []  # nothing happens before the first lookup
    assert await registry.call("to-json", {"obj": {"b": 1, "a": 2}, "sort_keys": True}) == '{"a": 2, "b": 1}'
    assert await registry.call("to-json", {"obj": [1]}) == "[1]"
    assert registry.names() == ["broken", "to-json"]
    assert asked == ["flowkeeper.functions"]


async def test_entry_point_that_cannot_be_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, ("broken", "no_such_module_xyz:f"))
    with pytest.raises(WorkflowError) as caught:
        await FunctionRegistry().call("broken", {})
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"
    assert "ModuleNotFoundError" in (caught.value.detail or "")


async def test_registered_function_wins_over_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, ("to-json", "json:dumps"))
    registry = FunctionRegistry()
    registry.register("to-json", lambda obj: "mine", inline=True)
    assert await registry.call("to-json", {"obj": 1}) == "mine"


async def test_activities_performs_function_calls() -> None:
    registry = FunctionRegistry(entry_point_group=None)
    registry.register("add", lambda a, b: a + b)
    async with Activities(ActivityOptions(), registry) as performer:
        effect = FunctionCall(id="i:2", activity_id="/do/1/f", function="add", arguments={"a": 2, "b": 3})
        assert await performer.perform(effect) == 5
