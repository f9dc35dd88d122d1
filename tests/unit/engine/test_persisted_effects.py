"""Effects the runtime persists at the next checkpoint: timers, bookmarks, children, events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowkeeper.engine import COMPLETED, FAULTED, WAITING
from flowkeeper.engine.effects import CreateBookmark, Emit, StartChild, StartTimer
from tests.unit.engine.harness import T0, Run, one

# -- persisted effects ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "delta"),
    [("PT1M30S", timedelta(seconds=90)), ("{hours: 2, milliseconds: 5}", timedelta(hours=2, milliseconds=5))],
)
def test_wait_starts_a_timer_due_at_the_clock_plus_the_duration(duration: str, delta: timedelta) -> None:
    run = Run(f"""
    do:
      - pause:
          wait: {duration}
      - after:
          set: '${{ . + {{after: true}} }}'
    """)
    step = run.start({"kept": 1})
    timer = one(step.effects, StartTimer)
    assert step.status == WAITING
    assert (timer.due_at, timer.purpose, timer.activity_id) == (T0 + delta, "wait", "/do/0/pause")
    run.clock.tick(seconds=delta.total_seconds())
    step = run.feed(timer, {"timer": timer.id})
    assert step.output == {"kept": 1, "after": True}


def test_listen_creates_a_bookmark_with_its_correlation_expectation_evaluated() -> None:
    run = Run("""
    do:
      - reply:
          listen:
            to:
              one:
                with:
                  type: com.example.reply
                  source: https://pets.test
                correlate:
                  order:
                    from: '${ .data.orderId }'
                    expect: '${ .order }'
    """)
    bookmark = one(run.start({"order": "o-9"}).effects, CreateBookmark)
    assert bookmark.event_type == "com.example.reply"
    assert bookmark.activity_id == "/do/0/reply"
    [spec] = bookmark.filter["filters"]
    assert spec["with"] == {"type": "com.example.reply", "source": "https://pets.test"}
    assert spec["correlate"] == {"order": {"from": "${ .data.orderId }", "expect": "o-9"}}


def test_run_workflow_starts_a_child_and_its_output_becomes_the_task_output() -> None:
    run = Run("""
    do:
      - child:
          run:
            workflow:
              namespace: tests
              name: child
              version: '1.0.0'
              input:
                v: '${ .n }'
    """)
    step = run.start({"n": 4})
    child = one(step.effects, StartChild)
    assert (child.namespace, child.name, child.version, child.input, child.wait) == (
        "tests",
        "child",
        "1.0.0",
        {"v": 4},
        True,
    )
    assert child.child_id == child.id
    assert step.status == WAITING
    step = run.feed(child, {"output": {"v": 8}})
    assert (step.status, step.output) == (COMPLETED, {"v": 8})


def test_a_failing_child_faults_the_parent_task() -> None:
    run = Run("""
    do:
      - child:
          run:
            workflow: {namespace: tests, name: child, version: '1.0.0'}
    """)
    child = one(run.start({}).effects, StartChild)
    step = run.feed(
        child, {"error": {"type": "https://example.com/bad", "status": 422, "instance": "/do/0/x"}}
    )
    assert step.status == FAULTED
    assert step.error == {"type": "https://example.com/bad", "status": 422, "instance": "/do/0/child"}


def test_run_workflow_without_await_starts_the_child_and_goes_on_at_once() -> None:
    run = Run("""
    do:
      - child:
          run:
            await: false
            workflow: {namespace: tests, name: child, version: latest}
      - after:
          set: '${ . + {after: true} }'
    """)
    step = run.start({"n": 1})
    child = one(step.effects, StartChild)
    assert (child.wait, child.version, child.input) == (False, None, {"n": 1})
    assert (step.status, step.output) == (COMPLETED, {"n": 1, "after": True})


def test_emit_publishes_a_cloudevent_with_generated_id_time_and_specversion() -> None:
    run = Run("""
    do:
      - tell:
          emit:
            event:
              with:
                source: https://pets.test
                type: com.example.adopted
                data:
                  pet: '${ .pet }'
    """)
    step = run.start({"pet": "Rex"})
    emit = one(step.effects, Emit)
    event = emit.event
    assert emit.activity_id == "/do/0/tell"
    assert event["specversion"] == "1.0"
    assert event["time"] == "2030-01-02T03:04:05Z"
    assert isinstance(event["id"], str) and event["id"]
    assert (event["source"], event["type"], event["data"]) == (
        "https://pets.test",
        "com.example.adopted",
        {"pet": "Rex"},
    )
    assert event["datacontenttype"] == "application/json"
    assert step.status == COMPLETED  # emitting does not wait


def test_emitted_events_of_two_tasks_get_different_ids() -> None:
    run = Run("""
    do:
      - first:
          emit:
            event:
              with: {source: https://pets.test, type: com.example.a}
      - second:
          emit:
            event:
              with: {source: https://pets.test, type: com.example.b}
    """)
    first, second = run.start({}).effects
    assert isinstance(first, Emit) and isinstance(second, Emit)
    assert first.event["id"] != second.event["id"]
    assert first.id != second.id
