"""Bodies of the leaf task types: set, switch, raise, wait, emit, call, run.

A body gets the task frame (its transformed input is ``frame["in"]``; its own state
goes in ``frame["b"]``) and returns the task's raw output, a fault, or ``BLOCKED``.
``listen`` lives in ``listening``; do/for/fork/try in ``composite``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from flowkeeper.engine.context import BLOCKED, BodyFn, Done, Fault, Frame, Outcome, StepContext, fault_of, iso
from flowkeeper.engine.durations import parse_duration
from flowkeeper.engine.effects import (
    Authentication,
    Effect,
    Emit,
    FunctionCall,
    HttpCall,
    OpenApiCall,
    ProcessRun,
    StartChild,
    StartTimer,
)
from flowkeeper.engine.flow import run_task, task_descriptor
from flowkeeper.engine.listening import run_listen
from flowkeeper.errors import WorkflowError, standard_error
from flowkeeper.expressions import (
    evaluate,
    evaluate_condition,
    evaluate_value,
    expand_uri_template,
    is_expression,
)

JSON = Any
BUILTIN_CALLS = ("http", "openapi")


def _vars(
    ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]
) -> dict[str, JSON]:
    return ctx.variables(scope, input=frame["in"], task=task_descriptor(frame, body))


def await_effect(ctx: StepContext, frame: Frame, kind: str, make: Callable[[str], Effect]) -> Outcome | JSON:
    """Issue an effect once, then wait for its result.

    Returns ``BLOCKED`` while waiting, a ``Fault`` for an error result, else the value
    (wrapped in ``Done``). An outside call whose result never came (the process died
    mid-call) is issued again with the same id, hence the same idempotency key.
    """
    state = frame.setdefault("b", {})
    wait = state.get("w")
    if wait is None:
        wid = ctx.next_id()
        ctx.issue(make(wid))
        state["w"] = {"wid": wid, "wk": kind}
        return BLOCKED
    result = ctx.take_result(wait["wid"])
    if result is None:
        if kind == "call" and wait["wid"] not in ctx.inflight:
            ctx.issue(make(wait["wid"]))
        return BLOCKED
    del state["w"]
    if result.error is not None:
        error = dict(result.error)
        error.setdefault("instance", frame["ref"])
        return Fault(error)
    return Done(result.value)


def run_set(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    try:
        spec = body["set"]
        variables = _vars(ctx, frame, body, scope)
        value = (
            evaluate(spec, frame["in"], variables)
            if isinstance(spec, str)
            else evaluate_value(spec, frame["in"], variables)
        )
    except WorkflowError as exc:
        return fault_of(exc, frame["ref"])
    return Done(value)


def run_switch(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    data = frame["in"]
    variables = _vars(ctx, frame, body, scope)
    for case in body["switch"]:
        ((_, spec),) = case.items()
        when = spec.get("when")
        try:
            matched = when is None or evaluate_condition(when, data, variables)
        except WorkflowError as exc:
            return fault_of(exc, frame["ref"])
        if matched:
            return Done(data, then=spec.get("then") or "continue")
    return Done(data)


def run_raise(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    spec = body["raise"]["error"]
    if isinstance(spec, str):
        spec = ctx.program.use("errors").get(spec)
        if spec is None:
            return fault_of(standard_error("configuration", "unknown error reference"), frame["ref"])
    try:
        error = evaluate_value(spec, frame["in"], _vars(ctx, frame, body, scope))
    except WorkflowError as exc:
        return fault_of(exc, frame["ref"])
    out = {k: error[k] for k in ("type", "status", "title", "detail", "instance") if error.get(k) is not None}
    out.setdefault("instance", frame["ref"])
    return Fault(out)


def run_wait(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    def make(wid: str) -> Effect:
        spec = body["wait"]
        if is_expression(spec):
            spec = evaluate(spec, frame["in"], _vars(ctx, frame, body, scope))
        return StartTimer(wid, frame["ref"], due_at=ctx.now() + parse_duration(spec))

    try:
        outcome = await_effect(ctx, frame, "timer", make)
    except WorkflowError as exc:
        return fault_of(exc, frame["ref"])
    return Done(frame["in"]) if isinstance(outcome, Done) else outcome


def run_emit(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    try:
        attributes = evaluate_value(
            body["emit"]["event"].get("with") or {}, frame["in"], _vars(ctx, frame, body, scope)
        )
    except WorkflowError as exc:
        return fault_of(exc, frame["ref"])
    wid = ctx.next_id()
    # The event id derives from the effect id: a replayed step emits the same event id.
    event: dict[str, JSON] = {"specversion": "1.0", "id": ctx.stable_uuid(wid), "time": iso(ctx.now())}
    event.update({k: v for k, v in attributes.items() if v is not None})
    if "data" in event and "datacontenttype" not in event:
        event["datacontenttype"] = "application/json"
    ctx.issue(Emit(wid, frame["ref"], event=event))
    return Done(event)


# -- call -----------------------------------------------------------------------------------


def resolve_authentication(
    ctx: StepContext, spec: JSON, variables: Mapping[str, JSON], data: JSON
) -> Authentication | None:
    """An endpoint's authentication: inline, ``{use: name}`` or secret-based, evaluated."""
    if not spec:
        return None
    if "use" in spec:
        named = ctx.program.use("authentications").get(spec["use"])
        if named is None:
            raise standard_error("configuration", f"unknown authentication {spec['use']!r}")
        spec = named
    ((scheme, settings),) = (
        (k, v) for k, v in spec.items() if k in ("basic", "bearer", "digest", "oauth2", "oidc")
    )
    if isinstance(settings, dict) and set(settings) == {"use"}:
        secret = ctx.secrets.get(settings["use"])
        if not isinstance(secret, dict):
            raise standard_error("authorization", f"secret {settings['use']!r} is not available", status=403)
        settings = secret
    resolved = evaluate_value(settings, data, variables)
    return Authentication(scheme, resolved if isinstance(resolved, dict) else {})


def _endpoint(spec: JSON) -> tuple[str, JSON]:
    if isinstance(spec, dict):
        return str(spec.get("uri", "")), spec.get("authentication")
    return str(spec or ""), None


def _http_effect(
    ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON], wid: str
) -> Effect:
    variables = _vars(ctx, frame, body, scope)
    data = frame["in"]
    raw = body.get("with") or {}
    args = evaluate_value({k: v for k, v in raw.items() if k != "endpoint"}, data, variables)
    output = args.get("output", "content")
    redirect = bool(args.get("redirect", False))
    if body["call"] == "openapi":
        doc_uri, doc_auth = _endpoint((args.get("document") or {}).get("endpoint"))
        return OpenApiCall(
            wid,
            frame["ref"],
            document_uri=doc_uri,
            operation_id=str(args.get("operationId")),
            parameters=dict(args.get("parameters") or {}),
            output=output,
            redirect=redirect,
            authentication=resolve_authentication(ctx, args.get("authentication"), variables, data),
            document_authentication=resolve_authentication(ctx, doc_auth, variables, data),
        )
    uri_spec, auth_spec = _endpoint(raw.get("endpoint"))
    uri = (
        evaluate(uri_spec, data, variables)
        if is_expression(uri_spec)
        else expand_uri_template(uri_spec, data)
    )
    return HttpCall(
        wid,
        frame["ref"],
        method=str(args.get("method", "get")).upper(),
        uri=str(uri),
        headers={str(k): str(v) for k, v in (args.get("headers") or {}).items()},
        query=dict(args.get("query") or {}),
        body=args.get("body"),
        output=output,
        redirect=redirect,
        authentication=resolve_authentication(ctx, auth_spec, variables, data),
    )


def run_call(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    target = body["call"]
    try:
        if target in BUILTIN_CALLS:
            return await_effect(ctx, frame, "call", lambda wid: _http_effect(ctx, frame, body, scope, wid))
        if target in ctx.program.use("functions"):
            return _call_defined_function(ctx, frame, body, scope, target)
        arguments = evaluate_value(body.get("with") or {}, frame["in"], _vars(ctx, frame, body, scope))
        return await_effect(
            ctx,
            frame,
            "call",
            lambda wid: FunctionCall(wid, frame["ref"], function=target, arguments=arguments),
        )
    except WorkflowError as exc:
        return fault_of(exc, frame["ref"])


def _call_defined_function(
    ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON], name: str
) -> Outcome:
    """A ``use.functions`` entry is a task template: run it with the call's arguments as input."""
    state = frame.setdefault("b", {})
    sub = state.get("fn")
    if sub is None:
        arguments = evaluate_value(body.get("with") or {}, frame["in"], _vars(ctx, frame, body, scope))
        sub = state["fn"] = {"ref": f"/use/functions/{name}", "name": name, "raw": arguments}
    outcome = run_task(ctx, sub, scope)
    if isinstance(outcome, Fault):
        outcome.error["instance"] = frame["ref"]
    if isinstance(outcome, Done):
        return Done(outcome.output)
    return outcome


# -- run ------------------------------------------------------------------------------------


def run_run(ctx: StepContext, frame: Frame, body: dict[str, JSON], scope: Mapping[str, JSON]) -> Outcome:
    spec = body["run"]
    wait = bool(spec.get("await", True))
    try:
        variables = _vars(ctx, frame, body, scope)
        if "workflow" in spec:
            return _run_workflow(ctx, frame, spec, variables, wait)
        for kind in ("shell", "script"):
            if kind in spec:
                args = evaluate_value(spec[kind], frame["in"], variables)
                effect_args = {
                    "kind": kind,
                    "command": args.get("command"),
                    "language": args.get("language"),
                    "code": args.get("code"),
                    "arguments": args.get("arguments"),
                    "environment": {str(k): str(v) for k, v in (args.get("environment") or {}).items()},
                    "stdin": args.get("stdin"),
                    "returns": spec.get("return", "stdout"),
                    "wait": wait,
                }
                return await_effect(ctx, frame, "call", partial(_process_run, frame["ref"], effect_args))
        kind = next(iter(k for k in ("container", "workflow") if k in spec), "unknown")
        return fault_of(
            standard_error("configuration", f"run: {kind} is not supported by Flowkeeper"), frame["ref"]
        )
    except WorkflowError as exc:
        return fault_of(exc, frame["ref"])


def _process_run(ref: str, args: dict[str, Any], wid: str) -> Effect:
    return ProcessRun(wid, ref, **args)


def _run_workflow(
    ctx: StepContext, frame: Frame, spec: dict[str, JSON], variables: Mapping[str, JSON], wait: bool
) -> Outcome:
    target = spec["workflow"]
    child_input = (
        evaluate_value(target["input"], frame["in"], variables) if "input" in target else frame["in"]
    )

    def make(wid: str) -> Effect:
        return StartChild(
            wid,
            frame["ref"],
            child_id=wid,
            namespace=str(target["namespace"]),
            name=str(target["name"]),
            version=str(target["version"]) if target.get("version") not in (None, "latest") else None,
            input=child_input,
            wait=wait,
        )

    if not wait:
        ctx.issue(make(ctx.next_id()))
        return Done(frame["in"])
    outcome = await_effect(ctx, frame, "child", make)
    if isinstance(outcome, Done):
        result = outcome.output if isinstance(outcome.output, dict) else {}
        if result.get("error") is not None:
            error = dict(result["error"])
            error["instance"] = frame["ref"]
            return Fault(error)
        return Done(result.get("output"))
    return outcome


BODIES: dict[str, BodyFn] = {
    "set": run_set,
    "switch": run_switch,
    "raise": run_raise,
    "wait": run_wait,
    "emit": run_emit,
    "call": run_call,
    "run": run_run,
    "listen": run_listen,
}
