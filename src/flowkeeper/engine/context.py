"""The step context: what one ``advance`` of the interpreter reads and collects.

Outcomes of running a frame are small objects: :class:`Done` (with the output and the
flow directive to follow), :data:`BLOCKED` (waiting on an effect's result) and
:class:`Fault` (a DSL error object).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowkeeper.engine.effects import Effect, EffectResult
from flowkeeper.engine.program import Program
from flowkeeper.errors import WorkflowError
from flowkeeper.expressions import Lazy

JSON = Any
Frame = dict[str, Any]


class Done:
    """A frame finished with ``output``; ``then`` is its flow directive, ``end`` ends the workflow."""

    __slots__ = ("end", "output", "then")

    def __init__(self, output: JSON, then: str | None = None, end: bool = False) -> None:
        self.output = output
        self.then = then
        self.end = end


class Fault:
    """A frame failed with a DSL error object."""

    __slots__ = ("error",)

    def __init__(self, error: dict[str, JSON]) -> None:
        self.error = error


class _Blocked:
    __slots__ = ()

    def __repr__(self) -> str:
        return "BLOCKED"


BLOCKED = _Blocked()
Outcome = Done | Fault | _Blocked

#: A task type's body: (context, task frame, task body, scope variables) -> outcome.
BodyFn = Callable[["StepContext", "Frame", dict[str, Any], Mapping[str, Any]], Outcome]


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as the DSL's date-time descriptors write it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def datetime_descriptor(text: str) -> dict[str, JSON]:
    """The DSL's dateTimeDescriptor for an ISO timestamp taken earlier."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    millis = int(moment.timestamp() * 1000)
    return {"iso8601": text, "epoch": {"seconds": millis // 1000, "milliseconds": millis}}


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One execution-log event produced by a step (the runtime stores it)."""

    reference: str
    name: str | None
    task_type: str | None
    event: str
    at: datetime
    detail: dict[str, JSON] | None = None


_EVENT_NAMESPACE = uuid.UUID("6f1c3f0e-3b8a-4c5e-9a57-8f2f4f3d2b10")

#: How many tasks one advance may run before yielding, so a loop that never waits
#: is still checkpointed (and can be cancelled) instead of spinning forever.
STEP_BUDGET = 5000


class StepContext:
    """Inputs and collected outputs of one ``advance``."""

    def __init__(
        self,
        *,
        instance_id: str,
        program: Program,
        state: dict[str, JSON],
        results: Mapping[str, EffectResult],
        inflight: frozenset[str] | set[str],
        secrets: Mapping[str, JSON],
        runtime: Mapping[str, JSON],
        clock: Callable[[], datetime],
    ) -> None:
        self.instance_id = instance_id
        self.program = program
        self.document = program.document
        self.dispatch: Mapping[str, BodyFn] = {}
        self.state = state
        self.results = dict(results)
        self.inflight = inflight
        # A workflow sees only the secrets it declares in ``use.secrets``.
        self.secrets = {k: secrets[k] for k in program.declared_secrets if k in secrets}
        self.runtime = runtime
        self.clock = clock
        self.effects: list[Effect] = []
        self.log: list[LogRecord] = []
        self.budget = STEP_BUDGET
        self.yielded = False
        self.active: str | None = None
        self._now: datetime | None = None
        self._workflow: dict[str, JSON] | None = None

    # -- time and ids ------------------------------------------------------------------
    def now(self) -> datetime:
        """One clock reading per advance: everything a step stamps agrees."""
        if self._now is None:
            self._now = self.clock()
        return self._now

    def next_id(self) -> str:
        """A new effect id, stable when the same step is replayed from the same state."""
        self.state["seq"] = seq = int(self.state.get("seq", 0)) + 1
        return f"{self.instance_id}.{seq}"

    @staticmethod
    def stable_uuid(effect_id: str) -> str:
        """A UUID determined by an effect id (unique, since effect ids are)."""
        return str(uuid.uuid5(_EVENT_NAMESPACE, effect_id))

    def issue(self, effect: Effect) -> None:
        self.effects.append(effect)

    def take_result(self, effect_id: str) -> EffectResult | None:
        return self.results.pop(effect_id, None)

    # -- log -------------------------------------------------------------------------
    def record(
        self,
        reference: str,
        name: str | None,
        task_type: str | None,
        event: str,
        detail: dict[str, JSON] | None = None,
    ) -> None:
        self.log.append(LogRecord(reference, name, task_type, event, self.now(), detail))

    # -- runtime expression arguments --------------------------------------------------
    @property
    def workflow_descriptor(self) -> dict[str, JSON]:
        if self._workflow is None:
            wf = self.state["workflow"]
            self._workflow = {
                "id": self.instance_id,
                "definition": self.document,
                "input": wf.get("input"),
                "startedAt": datetime_descriptor(wf["startedAt"]),
            }
        return self._workflow

    def variables(self, scope: Mapping[str, JSON], **extra: JSON) -> dict[str, JSON]:
        """The runtime expression arguments, plus loop/catch variables in ``scope``."""
        out: dict[str, JSON] = {
            "context": self.state["context"],
            "workflow": Lazy(lambda: self.workflow_descriptor),
            "runtime": self.runtime,
            "secrets": self.secrets,
        }
        out.update(scope)
        out.update(extra)
        return out


def fault_of(error: WorkflowError, instance: str) -> Fault:
    """A ``Fault`` from an error raised while running the task at ``instance``."""
    data = error.to_dict()
    data.setdefault("instance", instance)
    return Fault(data)
