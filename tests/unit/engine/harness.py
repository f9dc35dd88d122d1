"""Drives the pure interpreter by hand: a fake clock, effect results fed one by one.

No database, no network: a test plays the runtime's part, deciding which effect
results arrive and when.
"""

from __future__ import annotations

import copy
import json
import textwrap
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flowkeeper.definitions import load_definition
from flowkeeper.engine import Interpreter, Program, Step
from flowkeeper.engine.effects import Effect, EffectResult

JSON = Any
T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
HEADER = """\
document:
  dsl: '1.0.0'
  namespace: tests
  name: {name}
  version: '1.0.0'
"""


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def program(body: str, name: str = "wf") -> Program:
    """A validated definition: ``body`` is the YAML after the ``document`` header."""
    text = HEADER.format(name=name) + textwrap.dedent(body)
    return Program(load_definition(text).document)


class Run:
    """One instance driven by hand: ``start`` then ``feed`` results, effects in ``step``."""

    def __init__(
        self,
        body: str,
        *,
        clock: FakeClock | None = None,
        instance_id: str = "inst-1",
        secrets: Mapping[str, JSON] | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.interpreter = Interpreter(program(body), clock=self.clock)
        self.instance_id = instance_id
        self.secrets = dict(secrets or {})
        self.state: dict[str, JSON] = {}
        self.step: Step | None = None

    def start(self, data: JSON = None) -> Step:
        self.state = self.interpreter.new_state(self.instance_id, data, self.secrets)
        return self.advance()

    def advance(self, results: Iterable[EffectResult] = (), *, inflight: Iterable[str] = ()) -> Step:
        self.step = self.interpreter.advance(
            self.instance_id,
            self.state,
            {r.id: r for r in results},
            inflight=frozenset(inflight),
            secrets=self.secrets,
        )
        self.state = self.step.state
        return self.step

    def feed(self, effect: Effect, value: JSON = None, *, error: dict[str, JSON] | None = None) -> Step:
        """Answer one effect."""
        return self.advance([EffectResult(effect.id, value=value, error=error)])

    def snapshot(self) -> dict[str, JSON]:
        """The state as it would be stored and read back (proves it is JSON)."""
        return json.loads(json.dumps(self.state))

    def copy(self) -> dict[str, JSON]:
        return copy.deepcopy(self.state)


def only(effects: Iterable[Effect], kind: type[Effect]) -> list[Any]:
    """The effects of one class, in order."""
    return [e for e in effects if isinstance(e, kind)]


def one(effects: Iterable[Effect], kind: type[Effect]) -> Any:
    """The single effect of ``kind``; fails if there are none or several."""
    found = only(effects, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found!r}"
    return found[0]


def events(step: Step) -> list[tuple[str, str]]:
    """(reference, event) of the step's log records."""
    return [(r.reference, r.event) for r in step.log]
