"""Bodies of the composite task types: do, for, fork, try (with catch and retry)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flowkeeper.engine.context import BLOCKED, BodyFn, Done, Fault, Frame, Outcome, StepContext, fault_of, iso
from flowkeeper.engine.durations import parse_duration
from flowkeeper.engine.effects import StartTimer
from flowkeeper.engine.flow import cancel_waits, new_list, run_list, run_task, task_descriptor
from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError
from flowkeeper.expressions import evaluate, evaluate_condition

JSON = Any


def run_do(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    state = frame.setdefault("b", {})
    if "list" not in state:
        state["list"] = new_list(f"{frame['ref']}/do", frame["in"])
    return run_list(ctx, state["list"], scope)


def run_for(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    spec = body["for"]
    each, at = spec.get("each", "item"), spec.get("at", "index")
    state = frame.get("b")
    if state is None:
        try:
            variables = ctx.variables(scope, input=frame["in"], task=task_descriptor(frame, body))
            items = evaluate(spec["in"], frame["in"], variables)
        except WorkflowError as exc:
            return fault_of(exc, frame["ref"])
        if isinstance(items, dict):
            items = list(items.values())
        elif items is None:
            items = []
        elif not isinstance(items, list):
            items = [items]
        state = frame["b"] = {"items": items, "k": 0, "data": frame["in"], "list": None}
    while True:
        k = state["k"]
        if state["list"] is None and k >= len(state["items"]):
            return Done(state["data"])
        inner = {**scope, each: state["items"][k], at: k}
        if state["list"] is None:
            condition = body.get("while")
            if condition is not None:
                try:
                    variables = ctx.variables(inner, input=frame["in"], task=task_descriptor(frame, body))
                    if not evaluate_condition(condition, state["data"], variables):
                        return Done(state["data"])
                except WorkflowError as exc:
                    return fault_of(exc, frame["ref"])
            state["list"] = new_list(f"{frame['ref']}/do", state["data"])
        outcome = run_list(ctx, state["list"], inner)
        if not isinstance(outcome, Done):
            return outcome
        state.update(data=outcome.output, list=None, k=k + 1)
        if outcome.end:
            return Done(outcome.output, end=True)


def run_fork(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    compete = bool(body["fork"].get("compete", False))
    state = frame.get("b")
    if state is None:
        ref = f"{frame['ref']}/fork/branches"
        branches = [
            {"ref": f"{ref}/{i}/{name}", "name": name, "raw": frame["in"]}
            for i, (name, _) in enumerate(ctx.program.task_list(ref))
        ]
        state = frame["b"] = {"br": branches, "out": [None] * len(branches), "fin": [False] * len(branches)}
    for index, branch in enumerate(state["br"]):
        if state["fin"][index]:
            continue
        outcome = run_task(ctx, branch, scope)
        if outcome is BLOCKED:
            continue
        if isinstance(outcome, Fault):
            _stop_branches(ctx, state)
            return outcome
        assert isinstance(outcome, Done)
        state["fin"][index] = True
        state["out"][index] = outcome.output
        state["br"][index] = None
        if compete:
            _stop_branches(ctx, state)
            return Done(outcome.output)
    if all(state["fin"]):
        return Done(state["out"])
    return BLOCKED


def _stop_branches(ctx: StepContext, state: dict[str, JSON]) -> None:
    for index, branch in enumerate(state["br"]):
        if branch is not None and not state["fin"][index]:
            cancel_waits(ctx, branch)
            state["br"][index] = None


# -- try / catch / retry ----------------------------------------------------------------------


def _error_kind(error_type: JSON) -> str:
    """Both spellings of a standard error type compare equal (SOURCE.md's known quirk)."""
    text = str(error_type)
    for prefix in (ERROR_TYPE_BASE, "https://serverlessworkflow.io/dsl/errors/types/"):
        if text.startswith(prefix):
            return "sw:" + text[len(prefix) :]
    return text


def error_matches(spec: Mapping[str, JSON] | None, error: Mapping[str, JSON]) -> bool:
    """``catch.errors.with``: every given property must equal the error's."""
    for key, want in (spec or {}).items():
        have = error.get(key)
        if key == "type":
            if _error_kind(want) != _error_kind(have):
                return False
        elif key == "status":
            try:
                if int(want) != int(have if have is not None else -1):
                    return False
            except (TypeError, ValueError):
                return False
        elif want != have:
            return False
    return True


def retry_delay(policy: Mapping[str, JSON], attempt: int, seed: str) -> timedelta:
    """Delay before retry number ``attempt`` (1-based).

    constant: ``delay``; linear: ``delay * attempt``; exponential: ``delay * 2^(attempt-1)``;
    plus a jitter drawn from ``[from, to]`` with a generator seeded by the wait's id, so a
    replayed step draws the same value.
    """
    base = parse_duration(policy["delay"]) if policy.get("delay") is not None else timedelta(0)
    backoff = policy.get("backoff") or {}
    delay: timedelta
    if "exponential" in backoff:
        delay = base * (2 ** (attempt - 1))
    elif "linear" in backoff:
        delay = base * attempt
    else:
        delay = base
    jitter = policy.get("jitter")
    if jitter:
        low = parse_duration(jitter.get("from", 0)).total_seconds()
        high = parse_duration(jitter.get("to", 0)).total_seconds()
        delay += timedelta(seconds=random.Random(seed).uniform(low, max(low, high)))
    return delay


def _may_retry(
    ctx: StepContext,
    policy: Mapping[str, JSON],
    state: dict[str, JSON],
    data: JSON,
    variables: Mapping[str, JSON],
) -> bool:
    limit = policy.get("limit") or {}
    count = (limit.get("attempt") or {}).get("count")
    if count is not None and state["attempt"] >= int(count):
        return False
    if limit.get("duration") is not None:
        first = datetime.fromisoformat(state["first"].replace("Z", "+00:00"))
        if ctx.now() - first >= parse_duration(limit["duration"]):
            return False
    if "when" in policy and not evaluate_condition(policy["when"], data, variables):
        return False
    return not ("exceptWhen" in policy and evaluate_condition(policy["exceptWhen"], data, variables))


def run_try(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    ref = frame["ref"]
    catch = body.get("catch") or {}
    name = catch.get("as", "error")
    state = frame.get("b")
    if state is None:
        state = frame["b"] = {
            "list": new_list(f"{ref}/try", frame["in"]),
            "attempt": 0,
            "first": iso(ctx.now()),
        }
    while True:
        if "err" in state:  # running catch.do
            return run_list(ctx, state["catch"], {**scope, name: state["err"]})
        wait = state.get("w")
        if wait is not None:
            if ctx.take_result(wait["wid"]) is None:
                return BLOCKED
            del state["w"]
            state["list"] = new_list(f"{ref}/try", frame["in"])
        outcome = run_list(ctx, state["list"], scope)
        if not isinstance(outcome, Fault):
            return outcome
        error = outcome.error
        inner = {**scope, name: error}
        try:
            variables = ctx.variables(inner, input=frame["in"], task=task_descriptor(frame, body))
            errors = catch.get("errors") or {}
            if not error_matches(errors.get("with"), error):
                return outcome
            if "when" in catch and not evaluate_condition(catch["when"], frame["in"], variables):
                return outcome
            if "exceptWhen" in catch and evaluate_condition(catch["exceptWhen"], frame["in"], variables):
                return outcome
            policy = catch.get("retry")
            if isinstance(policy, str):
                policy = ctx.program.use("retries").get(policy)
            if policy:
                if not _may_retry(ctx, policy, state, frame["in"], variables):
                    return outcome  # retries exhausted: the last error propagates
                state["attempt"] += 1
                wid = ctx.next_id()
                delay = retry_delay(policy, state["attempt"], wid)
                ctx.record(
                    ref, frame["name"], "try", "retried", {"attempt": state["attempt"], "error": error}
                )
                if delay > timedelta(0):
                    ctx.issue(StartTimer(wid, ref, due_at=ctx.now() + delay, purpose="retry"))
                    state["w"] = {"wid": wid, "wk": "timer"}
                    return BLOCKED
                state["list"] = new_list(f"{ref}/try", frame["in"])
                continue
        except WorkflowError as exc:
            return fault_of(exc, ref)
        if not catch.get("do"):
            return Done(frame["in"])
        state["err"] = error
        state["catch"] = new_list(f"{ref}/catch/do", frame["in"])


BODIES: dict[str, BodyFn] = {"do": run_do, "for": run_for, "fork": run_fork, "try": run_try}
