"""The ``listen`` task: bookmarks for ``one``/``any``/``all``, ``until``, correlation, ``foreach``.

Each bookmark is consumed by exactly one event. ``one`` and ``any`` wait on a single
bookmark (``any`` makes a new one after each event until ``until`` holds); ``all``
waits on one bookmark per filter so that events may arrive in any order. A
correlation without ``expect`` takes its expectation from the first event consumed.

Body state ``frame["b"]``: ``ev`` consumed events, ``w`` outstanding waits (each with
the filter indexes it covers), ``exp`` captured correlation values, ``stop`` once
listening is over, and for ``foreach`` the iteration cursor ``k``, its running list
frame ``fe`` and the per-event outputs ``outs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkeeper.engine.context import BLOCKED, Done, Fault, Frame, Outcome, StepContext, fault_of
from flowkeeper.engine.effects import CreateBookmark
from flowkeeper.engine.events import (
    correlation_keys,
    correlation_values,
    filter_matches,
    match,
    single_type,
)
from flowkeeper.engine.flow import new_list, run_list, task_descriptor, transform
from flowkeeper.errors import WorkflowError
from flowkeeper.expressions import evaluate, evaluate_condition, is_expression

JSON = Any


def _prepare_filter(
    spec: dict[str, JSON], data: JSON, variables: Mapping[str, JSON], captured: Mapping[str, JSON]
) -> dict[str, JSON]:
    """A filter as persisted: correlation expectations evaluated now, ``with`` kept for match time."""
    out: dict[str, JSON] = {"with": spec.get("with") or {}}
    correlate = spec.get("correlate") or {}
    if correlate:
        prepared: dict[str, JSON] = {}
        for key, corr in correlate.items():
            expect = corr.get("expect")
            if is_expression(expect):
                expect = evaluate(expect, data, variables)
            if expect is None:
                expect = captured.get(key)
            prepared[key] = {"from": corr["from"], "expect": expect}
        out["correlate"] = prepared
    return out


def _strategy(body: dict[str, JSON]) -> tuple[str, list[dict[str, JSON]], JSON]:
    to = body["listen"]["to"]
    if "all" in to:
        return "all", list(to["all"]), None
    if "any" in to:
        return "any", list(to["any"]), to.get("until")
    return "one", [to["one"]], None


def _open(
    ctx: StepContext, frame: Frame, state: dict[str, JSON], indexes: list[int], variables: Mapping[str, JSON]
) -> None:
    body = ctx.program.task(frame["ref"])[1]
    mode, filters, until = _strategy(body)
    spec: dict[str, JSON] = {
        "filters": [_prepare_filter(filters[i], frame["in"], variables, state["exp"]) for i in indexes],
    }
    if mode == "any":
        spec["all"] = not filters
        if isinstance(until, dict):
            _, until_filters, _ = _strategy({"listen": {"to": until}})
            spec["until"] = [_prepare_filter(f, frame["in"], variables, state["exp"]) for f in until_filters]
    wid = ctx.next_id()
    keys = correlation_keys(spec)
    ctx.issue(
        CreateBookmark(
            wid,
            frame["ref"],
            filter=spec,
            event_type=single_type(spec),
            correlation_from=keys[0] if keys else None,
            correlation_value=keys[1] if keys else None,
        )
    )
    state["w"].append({"wid": wid, "wk": "bookmark", "fi": indexes})


def _read(body: dict[str, JSON], event: JSON) -> JSON:
    how = body["listen"].get("read", "data")
    if how == "envelope" or not isinstance(event, dict):
        return event
    return event.get("data")


def run_listen(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    variables = ctx.variables(scope, input=frame["in"], task=task_descriptor(frame, body))
    mode, filters, until = _strategy(body)
    state = frame.get("b")
    try:
        if state is None:
            state = frame["b"] = {"ev": [], "w": [], "exp": {}, "stop": False}
            if mode == "all":
                for index in range(len(filters)):
                    _open(ctx, frame, state, [index], variables)
            else:
                _open(ctx, frame, state, list(range(len(filters))), variables)
            return BLOCKED
        for wait in list(state["w"]):
            result = ctx.take_result(wait["wid"])
            if result is None:
                continue
            state["w"].remove(wait)
            event = result.value if isinstance(result.value, dict) else {}
            _consume(ctx, frame, body, state, wait, event, mode, until, variables)
    except WorkflowError as exc:
        return fault_of(exc, frame["ref"])
    if body.get("foreach"):
        outcome = _iterate(ctx, frame, body, state, scope)
        if outcome is not None:
            return outcome
    if not state["stop"]:
        return BLOCKED
    if body.get("foreach"):
        return Done(state.get("outs", []))
    return Done([_read(body, e) for e in state["ev"]])


def _consume(
    ctx: StepContext,
    frame: Frame,
    body: dict[str, JSON],
    state: dict[str, JSON],
    wait: dict[str, JSON],
    event: dict[str, JSON],
    mode: str,
    until: JSON,
    variables: Mapping[str, JSON],
) -> None:
    _, filters, _ = _strategy(body)
    if mode == "all":
        index = wait["fi"][0]
        spec = _prepare_filter(filters[index], frame["in"], variables, state["exp"])
        if not filter_matches(spec, event):
            # Its correlation disagrees with an earlier event's: wait for a matching one.
            _open(ctx, frame, state, [index], variables)
            return
        for key, value in correlation_values(filters[index], event).items():
            state["exp"].setdefault(key, value)
        state["ev"].append(event)
        state["stop"] = not state["w"]
        return
    if mode == "one":
        state["ev"].append(event)
        state["stop"] = True
        return
    # any: the event may be one that ends the listening (until), not part of the output
    spec = {"filters": [], "all": True}
    if isinstance(until, dict):
        _, until_filters, _ = _strategy({"listen": {"to": until}})
        spec["until"] = [_prepare_filter(f, frame["in"], variables, state["exp"]) for f in until_filters]
    hit = match(spec, event)
    if hit is not None and hit[0] == "until":
        state["stop"] = True
        return
    for candidate in filters:
        if filter_matches(_prepare_filter(candidate, frame["in"], variables, state["exp"]), event):
            # Correlations without `expect` take the first event's values from now on.
            for key, value in correlation_values(candidate, event).items():
                state["exp"].setdefault(key, value)
            break
    state["ev"].append(event)
    if until is None:
        state["stop"] = True
    elif isinstance(until, str | bool):
        state["stop"] = evaluate_condition(until, [_read(body, e) for e in state["ev"]], variables)
    if not state["stop"]:
        _open(ctx, frame, state, list(range(len(filters))), variables)


def _iterate(
    ctx: StepContext, frame: Frame, body: dict[str, JSON], state: dict[str, JSON], scope: Mapping[str, JSON]
) -> Outcome | None:
    """Run ``foreach.do`` over consumed events in order; None when caught up."""
    foreach = body["foreach"]
    item, at = foreach.get("item", "item"), foreach.get("at", "index")
    state.setdefault("k", 0)
    state.setdefault("outs", [])
    while state["k"] < len(state["ev"]):
        k = state["k"]
        event = _read(body, state["ev"][k])
        inner = {**scope, item: event, at: k}
        if state.get("fe") is None:
            state["fe"] = new_list(f"{frame['ref']}/foreach/do", frame["in"])
        outcome = run_list(ctx, state["fe"], inner) if foreach.get("do") else Done(event)
        if not isinstance(outcome, Done):
            if isinstance(outcome, Fault):
                for wait in state["w"]:
                    ctx.results.pop(wait["wid"], None)
            return outcome
        output = outcome.output
        try:
            variables = ctx.variables(inner, input=frame["in"])
            if "as" in (foreach.get("output") or {}):
                output = transform(foreach["output"]["as"], output, variables)
            if "as" in (foreach.get("export") or {}):
                ctx.state["context"] = transform(
                    foreach["export"]["as"], output, {**variables, "output": output}
                )
        except WorkflowError as exc:
            return fault_of(exc, frame["ref"])
        state["outs"].append(output)
        state["fe"] = None
        state["k"] = k + 1
    return None
