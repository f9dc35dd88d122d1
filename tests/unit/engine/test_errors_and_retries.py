"""try/catch, retry back-off and limits, workflow and task timeouts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowkeeper.engine import COMPLETED, FAULTED
from flowkeeper.engine.effects import CancelWait, CreateBookmark, EffectResult, HttpCall, StartTimer
from flowkeeper.errors import ERROR_TYPE_BASE
from tests.unit.engine.harness import Run, events, one, only

SPEC_SPELLING = "https://serverlessworkflow.io/spec/1.0.0/errors/communication"
CTK_SPELLING = "https://serverlessworkflow.io/dsl/errors/types/communication"
UNAVAILABLE = {"type": SPEC_SPELLING, "status": 503, "title": "Service Unavailable"}


def guarded_call(catch: str) -> str:
    """A try around one HTTP call, with ``catch`` (YAML at the catch's indentation)."""
    return (
        """
    do:
      - guarded:
          try:
            - get:
                call: http
                with: {method: get, endpoint: 'https://pets.test/'}
          catch:
"""
        + "\n".join("            " + line for line in catch.strip("\n").splitlines())
        + "\n"
    )


# -- catch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("caught", "raised"), [(CTK_SPELLING, SPEC_SPELLING), (SPEC_SPELLING, CTK_SPELLING)])
def test_catch_matches_both_spellings_of_a_standard_error_type(caught: str, raised: str) -> None:
    run = Run(
        guarded_call(f"""
errors:
  with:
    type: {caught}
    status: 503
as: failure
do:
  - handle:
      set:
        recovered: '${{ $failure.status }}'
""")
    )
    call = one(run.start({}).effects, HttpCall)
    step = run.feed(call, error={**UNAVAILABLE, "type": raised})
    assert (step.status, step.output) == (COMPLETED, {"recovered": 503})


def test_an_error_that_does_not_match_the_filter_propagates() -> None:
    run = Run(
        guarded_call("""
errors:
  with:
    type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
""")
    )
    call = one(run.start({}).effects, HttpCall)
    step = run.feed(call, error=UNAVAILABLE)
    assert step.status == FAULTED
    assert step.error == {**UNAVAILABLE, "instance": "/do/0/guarded/try/0/get"}


def test_a_caught_error_without_catch_do_continues_with_the_try_input() -> None:
    run = Run(guarded_call("errors: {}"))
    call = one(run.start({"kept": True}).effects, HttpCall)
    assert run.feed(call, error=UNAVAILABLE).output == {"kept": True}


@pytest.mark.parametrize(("status", "caught"), [(503, True), (500, False)])
def test_catch_when_sees_the_error_variable(status: int, caught: bool) -> None:
    run = Run(
        guarded_call("""
as: oops
when: '${ $oops.status == 503 }'
do:
  - handle:
      set: {caught: '${ $oops.title }'}
""")
    )
    call = one(run.start({}).effects, HttpCall)
    step = run.feed(call, error={**UNAVAILABLE, "status": status})
    assert step.status == (COMPLETED if caught else FAULTED)
    if caught:
        assert step.output == {"caught": "Service Unavailable"}


@pytest.mark.parametrize(("status", "caught"), [(503, False), (500, True)])
def test_catch_except_when_sees_the_default_error_variable(status: int, caught: bool) -> None:
    run = Run(guarded_call("exceptWhen: '${ $error.status == 503 }'"))
    call = one(run.start({}).effects, HttpCall)
    step = run.feed(call, error={**UNAVAILABLE, "status": status})
    assert step.status == (COMPLETED if caught else FAULTED)


def test_a_raised_error_is_caught_with_its_fields() -> None:
    run = Run("""
    do:
      - t:
          try:
            - boom:
                raise:
                  error:
                    type: https://example.com/errors/teapot
                    status: 418
                    title: '${ "short and " + .adjective }'
          catch:
            errors:
              with: {type: https://example.com/errors/teapot}
            do:
              - handle:
                  set: '${ $error }'
    """)
    assert run.start({"adjective": "stout"}).output == {
        "type": "https://example.com/errors/teapot",
        "status": 418,
        "title": "short and stout",
        "instance": "/do/0/t/try/0/boom",
    }


# -- retry ----------------------------------------------------------------------------------


def delays_until_exhausted(run: Run) -> list[float]:
    """Fail every call; return the retry delays (seconds) until the try gives up."""
    step = run.start({})
    delays: list[float] = []
    while True:
        step = run.feed(one(step.effects, HttpCall), error=UNAVAILABLE)
        timers = only(step.effects, StartTimer)
        if not timers:
            return delays
        assert timers[0].purpose == "retry"
        delays.append((timers[0].due_at - run.clock.now).total_seconds())
        run.clock.tick(seconds=delays[-1])
        step = run.feed(timers[0], {"timer": timers[0].id})


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [("constant: {}", [2, 2, 2]), ("linear: {}", [2, 4, 6]), ("exponential: {}", [2, 4, 8])],
)
def test_retry_backoff_spaces_the_attempts(backoff: str, expected: list[float]) -> None:
    run = Run(
        guarded_call(f"""
retry:
  delay: {{seconds: 2}}
  backoff:
    {backoff}
  limit:
    attempt:
      count: 3
""")
    )
    assert delays_until_exhausted(run) == expected


def test_retries_run_out_after_the_attempt_count_and_the_last_error_propagates() -> None:
    # DESIGN.md: "When a catch has retries and they run out, the last error propagates";
    # catch.do is not run then.
    run = Run(
        guarded_call("""
retry:
  delay: PT1S
  limit:
    attempt:
      count: 2
do:
  - handle:
      set: {handled: true}
""")
    )
    step = run.start({})
    calls = 0
    while True:
        call = one(step.effects, HttpCall)
        calls += 1
        step = run.feed(call, error={**UNAVAILABLE, "detail": f"attempt {calls}"})
        timers = only(step.effects, StartTimer)
        if not timers:
            break
        step = run.feed(timers[0], {})
    assert calls == 3  # the first attempt and two retries
    assert step.status == FAULTED
    assert step.error is not None
    assert step.error["detail"] == "attempt 3"
    assert [e for e in events(step) if e[1] == "retried"] == []  # the last failure is not retried
    assert not [e for e in events(step) if "/catch/" in e[0]]


def test_a_retry_that_succeeds_completes_the_try() -> None:
    run = Run(
        guarded_call("""
retry:
  delay: PT1S
  limit:
    attempt:
      count: 5
""")
    )
    call = one(run.start({}).effects, HttpCall)
    step = run.feed(call, error=UNAVAILABLE)
    assert ("/do/0/guarded", "retried") in events(step)
    step = run.feed(one(step.effects, StartTimer), {})
    step = run.feed(one(step.effects, HttpCall), "finally")
    assert (step.status, step.output) == (COMPLETED, "finally")


def test_jitter_is_within_its_range_and_the_same_when_the_step_is_replayed() -> None:
    body = guarded_call("""
retry:
  delay: PT10S
  jitter:
    from: PT1S
    to: PT3S
  limit:
    attempt:
      count: 1
""")
    due = []
    for _ in range(2):
        run = Run(body)
        step = run.feed(one(run.start({}).effects, HttpCall), error=UNAVAILABLE)
        due.append(one(step.effects, StartTimer).due_at - run.clock.now)
    assert due[0] == due[1]
    assert timedelta(seconds=11) <= due[0] <= timedelta(seconds=13)


def test_a_named_retry_policy_from_use_retries_applies() -> None:
    run = Run("""
    use:
      retries:
        twice:
          delay: PT5S
          limit:
            attempt:
              count: 2
    do:
      - guarded:
          try:
            - get:
                call: http
                with: {method: get, endpoint: 'https://pets.test/'}
          catch:
            retry: twice
    """)
    assert delays_until_exhausted(run) == [5, 5]


# -- timeouts -------------------------------------------------------------------------------


def test_a_task_timeout_faults_the_task_with_408_and_drops_its_call() -> None:
    run = Run("""
    do:
      - slow:
          call: http
          with: {method: get, endpoint: 'https://pets.test/slow'}
          timeout:
            after: PT30S
    """)
    step = run.start({})
    timer = one(step.effects, StartTimer)
    call = one(step.effects, HttpCall)
    assert (timer.purpose, timer.due_at - run.clock.now) == ("timeout", timedelta(seconds=30))
    run.clock.tick(seconds=30)
    step = run.advance([EffectResult(timer.id, {"timer": timer.id})], inflight=[call.id])
    assert step.status == FAULTED
    assert step.error is not None
    assert (step.error["type"], step.error["status"], step.error["instance"]) == (
        ERROR_TYPE_BASE + "timeout",
        408,
        "/do/0/slow",
    )
    assert {(c.target, c.kind) for c in only(step.effects, CancelWait)} == {(call.id, "call")}


def test_a_task_that_finishes_in_time_cancels_its_timeout_timer() -> None:
    run = Run("""
    do:
      - quick:
          call: http
          with: {method: get, endpoint: 'https://pets.test/'}
          timeout:
            after: PT30S
    """)
    step = run.start({})
    timer = one(step.effects, StartTimer)
    step = run.feed(one(step.effects, HttpCall), "in time")
    assert step.status == COMPLETED
    assert [(c.target, c.kind) for c in only(step.effects, CancelWait)] == [(timer.id, "timer")]


def test_a_task_timeout_can_be_caught() -> None:
    run = Run("""
    do:
      - guarded:
          try:
            - slow:
                wait: PT1H
                timeout:
                  after: PT1S
          catch:
            errors:
              with:
                type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
            do:
              - fallback:
                  set: {timedOut: true}
    """)
    step = run.start({})
    timeout = next(t for t in only(step.effects, StartTimer) if t.purpose == "timeout")
    wait = next(t for t in only(step.effects, StartTimer) if t.purpose == "wait")
    step = run.feed(timeout, {})
    assert (step.status, step.output) == (COMPLETED, {"timedOut": True})
    assert {(c.target, c.kind) for c in only(step.effects, CancelWait)} == {(wait.id, "timer")}


def test_a_workflow_timeout_faults_the_workflow_and_cancels_pending_waits() -> None:
    run = Run("""
    timeout:
      after:
        minutes: 1
    do:
      - await:
          listen:
            to:
              one:
                with: {type: com.example.never}
    """)
    step = run.start({})
    timer = one(step.effects, StartTimer)
    bookmark = one(step.effects, CreateBookmark)
    assert (timer.activity_id, timer.purpose, timer.due_at - run.clock.now) == (
        "/",
        "timeout",
        timedelta(minutes=1),
    )
    step = run.feed(timer, {"timer": timer.id})
    assert step.status == FAULTED
    assert step.error is not None
    assert (step.error["type"], step.error["status"]) == (ERROR_TYPE_BASE + "timeout", 408)
    assert {(c.target, c.kind) for c in only(step.effects, CancelWait)} == {(bookmark.id, "bookmark")}


def test_a_workflow_that_ends_in_time_cancels_its_timeout() -> None:
    run = Run("""
    timeout:
      after: PT1M
    do:
      - get:
          call: http
          with: {method: get, endpoint: 'https://pets.test/'}
    """)
    step = run.start({})
    timer = one(step.effects, StartTimer)
    step = run.feed(one(step.effects, HttpCall), "ok")
    assert step.status == COMPLETED
    assert [(c.target, c.kind) for c in only(step.effects, CancelWait)] == [(timer.id, "timer")]


def test_every_effect_of_a_step_has_its_own_id_when_a_timeout_cancels_waits() -> None:
    run = Run("""
    do:
      - slow:
          call: http
          with: {method: get, endpoint: 'https://pets.test/slow'}
          timeout:
            after: PT30S
    """)
    step = run.start({})
    timer = one(step.effects, StartTimer)
    call = one(step.effects, HttpCall)
    step = run.advance([EffectResult(timer.id, {})], inflight=[call.id])
    ids = [e.id for e in step.effects]
    assert len(ids) == len(set(ids)), ids
