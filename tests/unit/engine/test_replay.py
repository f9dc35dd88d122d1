"""Crash and replay: the state is JSON, and replaying a step from it asks for the same things.

The runtime may die after an outside call started and before its result was
checkpointed. The stored state is then advanced again: the call must be re-issued
with the same effect id (hence the same idempotency key), and a call that is still
in flight in this process must not be issued twice.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from flowkeeper.engine import Interpreter, Step
from flowkeeper.engine.effects import CreateBookmark, EffectResult, Emit, FunctionCall, HttpCall, StartTimer
from tests.unit.engine.harness import FakeClock, Run, one, program

CHAIN = """
do:
  - prepare:
      set: {id: '${ .id }', stamp: '${ $workflow.startedAt.iso8601 }'}
  - fetch:
      call: http
      with:
        method: post
        endpoint: https://pets.test/pets/{id}
        body: '${ . }'
  - compute:
      call: score
      with: {pet: '${ . }'}
  - pause:
      wait: PT10S
  - listen:
      listen:
        to:
          one:
            with: {type: com.example.ping}
"""


def advance(
    interpreter: Interpreter, state: dict[str, Any], *results: EffectResult, inflight: tuple[str, ...] = ()
) -> Step:
    return interpreter.advance("inst-1", state, {r.id: r for r in results}, inflight=frozenset(inflight))


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(state)  # raises if anything in the state is not JSON
    return json.loads(text)


def fingerprint(step: Step) -> list[tuple[str, str, str]]:
    return [(type(e).__name__, e.id, repr(e)) for e in step.effects]


def test_the_state_survives_json_at_every_suspension_and_replays_to_identical_effects() -> None:
    clock = FakeClock()
    interpreter = Interpreter(program(CHAIN), clock=clock)
    state = roundtrip(interpreter.new_state("inst-1", {"id": 5}, {}))
    answers = iter([{"name": "Rex"}, 0.9, {"timer": "t"}, {"type": "com.example.ping", "data": 1}])
    results: tuple[EffectResult, ...] = ()
    seen_ids: list[str] = []
    while True:
        stored = roundtrip(state)
        first = advance(interpreter, copy.deepcopy(stored), *results)
        second = advance(interpreter, copy.deepcopy(stored), *results)
        assert fingerprint(first) == fingerprint(second)
        assert first.state == second.state
        assert first.status == second.status
        if first.status == "completed":
            assert first.output == second.output == [1]
            break
        [effect] = first.effects
        seen_ids.append(effect.id)
        state = roundtrip(first.state)
        results = (EffectResult(effect.id, next(answers)),)
    assert len(set(seen_ids)) == len(seen_ids) == 4  # each outside request has its own key


def test_an_unanswered_call_is_reissued_with_the_same_id_after_a_crash() -> None:
    run = Run(CHAIN)
    run.start({"id": 5})
    call = one(run.step.effects, HttpCall)  # type: ignore[union-attr]
    stored = run.snapshot()
    # A new process picks the state up: nothing is in flight there.
    again = advance(run.interpreter, copy.deepcopy(stored))
    reissued = one(again.effects, HttpCall)
    assert reissued == call
    assert reissued.idempotency_key == call.idempotency_key
    assert again.state["seq"] == stored["seq"]  # no new id was drawn


def test_a_call_still_in_flight_is_not_issued_again() -> None:
    run = Run(CHAIN)
    run.start({"id": 5})
    call = one(run.step.effects, HttpCall)  # type: ignore[union-attr]
    step = run.advance(inflight=[call.id])
    assert step.effects == []
    assert step.status == "running"
    step = run.feed(call, {"name": "Rex"})
    assert one(step.effects, FunctionCall).arguments == {"pet": {"name": "Rex"}}


def test_a_result_for_an_unknown_effect_is_ignored() -> None:
    run = Run(CHAIN)
    run.start({"id": 5})
    call = one(run.step.effects, HttpCall)  # type: ignore[union-attr]
    step = run.advance([EffectResult("inst-1.999", "stray")], inflight=[call.id])
    assert step.effects == []
    step = run.feed(call, {"name": "Rex"})
    assert isinstance(step.effects[0], FunctionCall)


def test_a_timer_is_not_reissued_when_a_replayed_step_finds_it_outstanding() -> None:
    run = Run(CHAIN)
    run.start({"id": 5})
    run.feed(one(run.step.effects, HttpCall), {"name": "Rex"})  # type: ignore[union-attr]
    step = run.feed(one(run.step.effects, FunctionCall), 0.9)  # type: ignore[union-attr]
    timer = one(step.effects, StartTimer)
    replay = advance(run.interpreter, run.snapshot())
    assert replay.effects == []  # persisted with the checkpoint: the database holds it
    assert replay.status == "waiting"
    done = advance(run.interpreter, run.snapshot(), EffectResult(timer.id, {"timer": timer.id}))
    assert [type(e) for e in done.effects] == [CreateBookmark]


def test_idempotency_keys_differ_between_instances_of_the_same_definition() -> None:
    clock = FakeClock()
    interpreter = Interpreter(program(CHAIN), clock=clock)
    keys = set()
    for instance_id in ("inst-a", "inst-b"):
        state = interpreter.new_state(instance_id, {"id": 5}, {})
        step = interpreter.advance(instance_id, state, {})
        keys.add(one(step.effects, HttpCall).idempotency_key)
    assert len(keys) == 2


def test_retries_of_a_call_get_fresh_ids_so_each_attempt_is_its_own_request() -> None:
    run = Run("""
    do:
      - t:
          try:
            - get:
                call: http
                with: {method: get, endpoint: 'https://pets.test/'}
          catch:
            retry:
              delay: PT0S
              limit:
                attempt:
                  count: 2
    """)
    first = one(run.start({}).effects, HttpCall)
    second = one(run.feed(first, error={"type": "https://example.com/e", "status": 503}).effects, HttpCall)
    assert second.id != first.id
    assert second.uri == first.uri


def test_replaying_a_step_that_emits_gives_the_event_the_same_id() -> None:
    run = Run("""
    do:
      - tell:
          emit:
            event:
              with: {source: https://pets.test, type: com.example.told}
      - forward:
          call: http
          with:
            method: post
            endpoint: https://pets.test/audit
            body: '${ {eventId: .id} }'
    """)
    state = roundtrip(run.interpreter.new_state("inst-1", {}, {}))
    first = advance(run.interpreter, copy.deepcopy(state))
    second = advance(run.interpreter, copy.deepcopy(state))
    assert one(first.effects, HttpCall).idempotency_key == one(second.effects, HttpCall).idempotency_key
    assert one(first.effects, Emit).event["id"] == one(second.effects, Emit).event["id"]
    assert one(first.effects, HttpCall).body == one(second.effects, HttpCall).body
