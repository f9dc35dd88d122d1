"""Task lists and the life of one task: ``if``, input, body, output, export, timeout, log.

Bodies of the individual task types live in ``tasks`` and ``composite``; the
interpreter hands their table to :class:`StepContext` as ``dispatch`` so this module
needs neither (no import cycles).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from flowkeeper.definitions import validate_data
from flowkeeper.engine.context import (
    BLOCKED,
    Done,
    Fault,
    Frame,
    Outcome,
    StepContext,
    datetime_descriptor,
    fault_of,
    iso,
)
from flowkeeper.engine.durations import parse_duration
from flowkeeper.engine.effects import CancelWait, StartTimer
from flowkeeper.engine.program import Program, task_type
from flowkeeper.errors import WorkflowError, standard_error
from flowkeeper.expressions import Lazy, evaluate, evaluate_condition, evaluate_value

JSON = Any


def transform(spec: JSON, data: JSON, variables: Mapping[str, JSON]) -> JSON:
    """``input.from``/``output.as``/``export.as``: an expression (bare jq allowed) or an object."""
    if isinstance(spec, str):
        return evaluate(spec, data, variables)
    return evaluate_value(spec, data, variables)


def resolve_timeout(program: Program, spec: JSON) -> timedelta:
    """A ``timeout`` (inline ``{after}`` or a ``use.timeouts`` name) as a timedelta."""
    if isinstance(spec, str):
        spec = program.use("timeouts").get(spec)
        if spec is None:
            raise standard_error("configuration", "unknown timeout reference")
    return parse_duration(spec.get("after"))


# -- waits -------------------------------------------------------------------------------


def iter_waits(node: JSON) -> Iterator[dict[str, str]]:
    """Every outstanding wait in a frame subtree."""
    if isinstance(node, dict):
        if "wid" in node and "wk" in node:
            yield node
            return
        for value in node.values():
            if isinstance(value, dict | list):
                yield from iter_waits(value)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list):
                yield from iter_waits(value)


def cancel_waits(ctx: StepContext, node: JSON, reference: str = "/") -> None:
    """Drop every outstanding wait under ``node`` (fork losers, timeouts, faults).

    The caller discards ``node`` afterwards, so each wait is cancelled once.
    """
    for wait in list(iter_waits(node)):
        ctx.issue(CancelWait(f"cancel:{wait['wid']}", reference, target=wait["wid"], kind=wait["wk"]))  # type: ignore[arg-type]
        ctx.results.pop(wait["wid"], None)


# -- task lists and tasks ------------------------------------------------------------------


def new_list(ref: str, data: JSON) -> Frame:
    return {"ref": ref, "i": 0, "data": data, "cur": None}


def run_list(ctx: StepContext, frame: Frame, scope: Mapping[str, JSON]) -> Outcome:
    """Run a task list from its cursor, following flow directives."""
    tasks = ctx.program.task_list(frame["ref"])
    while True:
        cur = frame["cur"]
        if cur is None:
            index = frame["i"]
            if index >= len(tasks):
                return Done(frame["data"])
            name = tasks[index][0]
            cur = frame["cur"] = {"ref": f"{frame['ref']}/{index}/{name}", "name": name, "raw": frame["data"]}
        outcome = run_task(ctx, cur, scope)
        if not isinstance(outcome, Done):
            return outcome
        frame["data"] = outcome.output
        frame["cur"] = None
        directive = outcome.then
        if outcome.end or directive == "end":
            return Done(outcome.output, end=True)
        if directive is None or directive == "continue":
            frame["i"] += 1
        elif directive == "exit":
            return Done(outcome.output)
        else:
            target = next((i for i, (n, _) in enumerate(tasks) if n == directive), None)
            if target is None:
                err = standard_error(
                    "configuration", f"flow directive target {directive!r} is not in this task list"
                )
                return fault_of(err, cur["ref"])
            frame["i"] = target


def task_descriptor(frame: Frame, body: dict[str, JSON], output: JSON = None) -> Lazy:
    """``$task``, computed only when an expression reads it."""
    return Lazy(lambda: _task_descriptor(frame, body, output))


def _task_descriptor(frame: Frame, body: dict[str, JSON], output: JSON) -> dict[str, JSON]:
    return {
        "name": frame["name"],
        "reference": frame["ref"],
        "definition": body,
        "input": frame["raw"],
        "output": output,
        "startedAt": datetime_descriptor(frame["at"]) if "at" in frame else None,
    }


def run_task(ctx: StepContext, frame: Frame, scope: Mapping[str, JSON]) -> Outcome:
    """One task's life: ``if``, input, body, output, export, timeout, log."""
    ref = frame["ref"]
    program = ctx.program
    name, body = program.task(ref)
    kind = task_type(body)
    if "in" not in frame:
        if ctx.budget <= 0:
            ctx.yielded = True
            return BLOCKED
        ctx.budget -= 1
        started = _start_task(ctx, program, frame, body, kind, scope)
        if started is not None:
            return started
    ctx.active = ref
    timeout = frame.get("to")
    if timeout is not None and ctx.take_result(timeout["wid"]) is not None:
        del frame["to"]
        cancel_waits(ctx, frame.pop("b", None), ref)
        err = standard_error("timeout", f"task {name!r} timed out")
        ctx.record(ref, name, kind, "faulted", {"error": fault_of(err, ref).error})
        return fault_of(err, ref)
    outcome = ctx.dispatch[kind](ctx, frame, body, scope)
    if outcome is BLOCKED:
        return outcome
    cancel_waits(ctx, frame.pop("to", None), ref)  # the task ended: its timeout timer goes
    if isinstance(outcome, Fault):
        outcome.error.setdefault("instance", ref)
        ctx.record(ref, name, kind, "faulted", {"error": outcome.error})
        return outcome
    assert isinstance(outcome, Done)
    try:
        output = outcome.output
        variables = ctx.variables(scope, input=frame["in"], task=task_descriptor(frame, body, output))
        spec = body.get("output") or {}
        if "as" in spec:
            output = transform(spec["as"], output, variables)
        validate_data(spec.get("schema"), output, pointer=f"{ref}/output", what="task output")
        export = body.get("export") or {}
        if "as" in export:
            variables["output"] = output
            context = transform(export["as"], output, variables)
            validate_data(export.get("schema"), context, pointer=f"{ref}/export", what="context")
            ctx.state["context"] = context
    except WorkflowError as exc:
        fault = fault_of(exc, ref)
        ctx.record(ref, name, kind, "faulted", {"error": fault.error})
        return fault
    ctx.record(ref, name, kind, "completed")
    then = outcome.then if outcome.then is not None else body.get("then")
    return Done(output, then, outcome.end)


def _start_task(
    ctx: StepContext,
    program: Program,
    frame: Frame,
    body: dict[str, JSON],
    kind: str,
    scope: Mapping[str, JSON],
) -> Outcome | None:
    """Evaluate ``if`` and the input; None when the task starts, else its outcome."""
    ref, name, raw = frame["ref"], frame["name"], frame["raw"]
    frame["at"] = iso(ctx.now())
    try:
        variables = ctx.variables(scope, task=task_descriptor(frame, body))
        condition = body.get("if")
        if condition is not None and not evaluate_condition(condition, raw, variables):
            del frame["at"]
            ctx.record(ref, name, kind, "skipped")
            return Done(raw)
        spec = body.get("input") or {}
        validate_data(spec.get("schema"), raw, pointer=f"{ref}/input", what="task input")
        frame["in"] = transform(spec["from"], raw, variables) if "from" in spec else raw
        timeout = body.get("timeout")
        after = resolve_timeout(program, timeout) if timeout is not None else None
    except WorkflowError as exc:
        fault = fault_of(exc, ref)
        ctx.record(ref, name, kind, "faulted", {"error": fault.error})
        return fault
    ctx.record(ref, name, kind, "started")
    if after is not None:
        wid = ctx.next_id()
        ctx.issue(StartTimer(wid, ref, due_at=ctx.now() + after, purpose="timeout"))
        frame["to"] = {"wid": wid, "wk": "timer"}
    return None
