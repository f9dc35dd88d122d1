"""The interpreter: an explicit machine over a JSON tree of frames. No I/O.

State (all JSON)::

    {"v": 1, "seq": <effect counter>, "status": running|waiting|completed|faulted|cancelled,
     "context": {...}, "workflow": {"input": <raw input>, "startedAt": iso},
     "root": <list frame of /do>, "to": <workflow timeout wait>, "output": ..., "error": ...}

A list frame is ``{"ref", "i", "data", "cur"}`` (cursor, data flowing between tasks, the
running task frame). A task frame is ``{"ref", "name", "raw", "in", "at", "b", "to"}``
(raw and transformed input, start time, the body's own state, its timeout wait). Any
outstanding wait is a dict ``{"wid": effect id, "wk": call|timer|bookmark|child}``
somewhere in the tree, which is how cancellation finds everything to drop.

``advance`` walks from the root to the active frames (O(depth), not O(history)), feeds
them the effect results that arrived, runs every pure step it can, and returns the
effects that the next steps need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowkeeper.definitions import validate_data
from flowkeeper.engine import composite, tasks
from flowkeeper.engine.context import Done, Fault, LogRecord, Outcome, StepContext, fault_of, iso
from flowkeeper.engine.effects import OUTSIDE_EFFECTS, Effect, EffectResult, StartTimer
from flowkeeper.engine.flow import cancel_waits, resolve_timeout, run_list, transform
from flowkeeper.engine.program import Program
from flowkeeper.engine.retrying import prepare_retry
from flowkeeper.errors import WorkflowError, standard_error

JSON = Any

RUNNING, WAITING, COMPLETED, FAULTED, CANCELLED = "running", "waiting", "completed", "faulted", "cancelled"
TERMINAL = (COMPLETED, FAULTED, CANCELLED)


@dataclass(slots=True)
class Step:
    """What one ``advance`` produced."""

    state: dict[str, JSON]
    status: str
    effects: list[Effect] = field(default_factory=list)
    log: list[LogRecord] = field(default_factory=list)
    output: JSON = None
    error: dict[str, JSON] | None = None
    active: str | None = None
    yielded: bool = False


class Interpreter:
    """Runs one definition. Stateless itself: the instance state is passed in and out."""

    def __init__(
        self,
        program: Program,
        *,
        runtime: Mapping[str, JSON] | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        self.program = program
        self.runtime = dict(runtime or {"name": "flowkeeper", "version": "0", "metadata": {}})
        self.clock = clock

    # -- entry points --------------------------------------------------------------------
    def new_state(self, instance_id: str, raw_input: JSON, secrets: Mapping[str, JSON]) -> dict[str, JSON]:
        """Validate and transform the workflow input into a fresh state.

        Raises ``WorkflowError`` (validation, status 400) when the input does not
        satisfy ``input.schema``: the caller refuses the start (nothing is stored).
        """
        doc = self.program.document
        spec = doc.get("input") or {}
        validate_data(spec.get("schema"), raw_input, pointer="/input", what="workflow input")
        state: dict[str, JSON] = {
            "v": 1,
            "seq": 0,
            "status": RUNNING,
            "context": {},
            "workflow": {"input": raw_input, "startedAt": iso(self.clock())},
            "root": None,
            "pending_input": True,
        }
        return state

    def advance(
        self,
        instance_id: str,
        state: dict[str, JSON],
        results: Mapping[str, EffectResult] = {},
        *,
        inflight: frozenset[str] | set[str] = frozenset(),
        secrets: Mapping[str, JSON] = {},
    ) -> Step:
        """Run the instance until every active branch waits on an effect or it ends.

        ``state`` is modified in place and returned in the ``Step``.
        """
        ctx = self._context(instance_id, state, results, inflight, secrets)
        if state["status"] in TERMINAL:
            return Step(state, state["status"], output=state.get("output"), error=state.get("error"))
        outcome = self._begin(ctx) if state.pop("pending_input", False) else self._run_root(ctx)
        return self._conclude(ctx, outcome)

    def cancel(self, instance_id: str, state: dict[str, JSON], reason: str | None = None) -> Step:
        """Stop the instance: every outstanding wait is dropped, status ``cancelled``."""
        ctx = self._context(instance_id, state, {}, frozenset(), {})
        if state["status"] not in TERMINAL:
            cancel_waits(ctx, state)
            state["status"] = CANCELLED
            state["root"] = None
            ctx.record(
                "/", self.program.name, "workflow", "cancelled", {"reason": reason} if reason else None
            )
        return Step(state, state["status"], ctx.effects, ctx.log)

    def _context(
        self,
        instance_id: str,
        state: dict[str, JSON],
        results: Mapping[str, EffectResult],
        inflight: frozenset[str] | set[str],
        secrets: Mapping[str, JSON],
    ) -> StepContext:
        ctx = StepContext(
            instance_id=instance_id,
            program=self.program,
            state=state,
            results=results,
            inflight=inflight,
            secrets=secrets,
            runtime=self.runtime,
            clock=self.clock,
        )
        ctx.dispatch = _DISPATCH
        return ctx

    def retry(self, state: dict[str, JSON]) -> dict[str, JSON]:
        """A failed instance's state made ready to run again from its failed activity."""
        return prepare_retry(state, self.program)

    # -- workflow level ------------------------------------------------------------------
    def _begin(self, ctx: StepContext) -> Outcome:
        doc = self.program.document
        state = ctx.state
        raw = state["workflow"]["input"]
        ctx.record("/", self.program.name, "workflow", "started")
        missing = [name for name in self.program.declared_secrets if name not in ctx.secrets]
        if missing:
            detail = f"secret(s) {', '.join(missing)} declared in use.secrets are not available"
            return fault_of(standard_error("authorization", detail, status=403), "/use/secrets")
        spec = doc.get("input") or {}
        try:
            data = raw
            if "from" in spec:
                data = transform(spec["from"], raw, ctx.variables({}))
        except WorkflowError as exc:
            return fault_of(exc, "/input/from")
        state["root"] = {"ref": "/do", "i": 0, "data": data, "cur": None}
        timeout = doc.get("timeout")
        if timeout is not None:
            try:
                after = resolve_timeout(self.program, timeout)
            except WorkflowError as exc:
                return fault_of(exc, "/timeout")
            wid = ctx.next_id()
            ctx.issue(StartTimer(wid, "/", due_at=ctx.now() + after, purpose="timeout"))
            state["to"] = {"wid": wid, "wk": "timer"}
        return self._run_root(ctx)

    def _run_root(self, ctx: StepContext) -> Outcome:
        state = ctx.state
        wait = state.get("to")
        if wait is not None and ctx.take_result(wait["wid"]) is not None:
            del state["to"]
            cancel_waits(ctx, state["root"])
            state["root"] = None
            err = standard_error("timeout", "the workflow timed out")
            return fault_of(err, "/")
        return run_list(ctx, state["root"], {})

    def _conclude(self, ctx: StepContext, outcome: Outcome) -> Step:
        state = ctx.state
        doc = self.program.document
        if isinstance(outcome, Done):
            try:
                output = outcome.output
                spec = doc.get("output") or {}
                if "as" in spec:
                    output = transform(spec["as"], output, ctx.variables({}))
                validate_data(spec.get("schema"), output, pointer="/output", what="workflow output")
            except WorkflowError as exc:
                outcome = fault_of(exc, "/output")
            else:
                _drop_workflow_timeout(ctx)
                state.update(status=COMPLETED, output=output, root=None)
                ctx.record("/", self.program.name, "workflow", "completed")
                return Step(state, COMPLETED, ctx.effects, ctx.log, output=output, active=ctx.active)
        if isinstance(outcome, Fault):
            cancel_waits(ctx, state)
            # The frames stay: a retry resumes from the failed activity (see ``retrying``).
            state.update(status=FAULTED, error=outcome.error)
            ctx.record("/", self.program.name, "workflow", "faulted", {"error": outcome.error})
            return Step(state, FAULTED, ctx.effects, ctx.log, error=outcome.error, active=ctx.active)
        busy = ctx.yielded or bool(ctx.inflight) or any(_is_outside(e) for e in ctx.effects)
        status = RUNNING if busy else WAITING
        state["status"] = status
        return Step(state, status, ctx.effects, ctx.log, active=ctx.active, yielded=ctx.yielded)


def _is_outside(effect: Effect) -> bool:
    return isinstance(effect, OUTSIDE_EFFECTS)


def _drop_workflow_timeout(ctx: StepContext) -> None:
    cancel_waits(ctx, ctx.state.pop("to", None))


_DISPATCH = {**tasks.BODIES, **composite.BODIES}
