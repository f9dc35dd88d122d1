"""Flow: directives (continue, exit, end, goto), ``for``/``while``, ``fork``, the step budget, cancel."""

from __future__ import annotations

import json

from flowkeeper.engine import CANCELLED, COMPLETED, RUNNING, WAITING
from flowkeeper.engine.context import STEP_BUDGET
from flowkeeper.engine.effects import CancelWait, CreateBookmark, EffectResult, HttpCall, StartTimer
from tests.unit.engine.harness import Run, events, one, only


def started(step) -> list[str]:  # type: ignore[no-untyped-def]
    return [ref for ref, event in events(step) if event == "started" and ref != "/"]


# -- directives -----------------------------------------------------------------------------


def test_continue_goes_on_with_the_next_task_and_a_named_target_skips_ahead() -> None:
    run = Run("""
    do:
      - a:
          set: {a: 1}
          then: c
      - b:
          set: {b: 1}
      - c:
          set: '${ . + {c: 1} }'
          then: continue
      - d:
          set: '${ . + {d: 1} }'
    """)
    step = run.start({})
    assert step.output == {"a": 1, "c": 1, "d": 1}
    assert started(step) == ["/do/0/a", "/do/2/c", "/do/3/d"]


def test_goto_backwards_loops_until_a_switch_lets_it_go() -> None:
    run = Run("""
    do:
      - init:
          set: {n: 0}
      - inc:
          set: {n: '${ .n + 1 }'}
      - check:
          switch:
            - again:
                when: '${ .n < 3 }'
                then: inc
            - done:
                then: continue
      - after:
          set: '${ . + {after: true} }'
    """)
    step = run.start({})
    assert step.output == {"n": 3, "after": True}
    assert started(step).count("/do/1/inc") == 3
    assert started(step)[-1] == "/do/3/after"


def test_exit_leaves_the_nested_do_and_the_outer_list_goes_on() -> None:
    run = Run("""
    do:
      - outer:
          do:
            - a:
                set: {a: 1}
                then: exit
            - b:
                set: {b: 1}
      - next:
          set: '${ . + {next: true} }'
    """)
    step = run.start({})
    assert step.output == {"a": 1, "next": True}
    assert "/do/0/outer/do/1/b" not in started(step)


def test_end_in_a_nested_task_ends_the_whole_workflow_with_its_output() -> None:
    run = Run("""
    do:
      - outer:
          do:
            - deeper:
                do:
                  - a:
                      set: {a: 1}
                      then: end
                  - b:
                      set: {b: 1}
            - c:
                set: {c: 1}
      - next:
          set: {next: true}
    output:
      as: '${ {final: .} }'
    """)
    step = run.start({})
    assert step.status == COMPLETED
    assert step.output == {"final": {"a": 1}}
    assert started(step) == ["/do/0/outer", "/do/0/outer/do/0/deeper", "/do/0/outer/do/0/deeper/do/0/a"]


def test_a_switch_without_a_matching_case_continues_with_its_input() -> None:
    run = Run("""
    do:
      - pick:
          switch:
            - big:
                when: '${ .n > 10 }'
                then: end
      - after:
          set: '${ . + {after: true} }'
    """)
    assert run.start({"n": 1}).output == {"n": 1, "after": True}


# -- for ------------------------------------------------------------------------------------


def test_for_runs_the_body_per_item_with_item_and_index_and_threads_the_data() -> None:
    run = Run("""
    do:
      - loop:
          for:
            each: pet
            in: '${ .pets }'
            at: i
          do:
            - add:
                set:
                  pets: '${ .pets }'
                  names: '${ .names + ["\\($i):\\($pet.name)"] }'
    """)
    step = run.start({"pets": [{"name": "a"}, {"name": "b"}], "names": []})
    assert step.output == {"pets": [{"name": "a"}, {"name": "b"}], "names": ["0:a", "1:b"]}


def test_for_with_while_stops_before_the_iteration_whose_condition_fails() -> None:
    run = Run("""
    do:
      - loop:
          for:
            each: item
            in: '${ .items }'
          while: '${ .total < 5 }'
          do:
            - add:
                set:
                  items: '${ .items }'
                  total: '${ .total + $item }'
                  seen: '${ .seen + [$index] }'
    """)
    step = run.start({"items": [1, 2, 3, 4], "total": 0, "seen": []})
    assert step.output == {"items": [1, 2, 3, 4], "total": 6, "seen": [0, 1, 2]}


def test_for_over_an_empty_collection_passes_its_input_on() -> None:
    run = Run("""
    do:
      - loop:
          for:
            in: '${ .items }'
          do:
            - never:
                set: {never: true}
    """)
    assert run.start({"items": []}).output == {"items": []}


def test_for_waits_inside_an_iteration_and_resumes_at_the_same_index() -> None:
    run = Run("""
    do:
      - loop:
          for:
            in: '${ .ids }'
          do:
            - fetch:
                call: http
                with:
                  method: get
                  endpoint: https://pets.test/{id}
                  body: '${ $item }'
                output:
                  as: '${ {ids: $input.ids, got: ($input.got + [.])} }'
                input:
                  from: '${ . + {id: $item} }'
    """)
    step = run.start({"ids": [7, 8], "got": []})
    first = one(step.effects, HttpCall)
    assert first.uri == "https://pets.test/7"
    run.state = run.snapshot()  # stored and read back between the two calls
    step = run.feed(first, "seven")
    second = one(step.effects, HttpCall)
    assert second.uri == "https://pets.test/8"
    step = run.feed(second, "eight")
    assert step.output == {"ids": [7, 8], "got": ["seven", "eight"]}


# -- fork -----------------------------------------------------------------------------------


FORK = """
do:
  - f:
      fork:
        compete: {compete}
        branches:
          - one:
              call: http
              with: {{method: get, endpoint: 'https://pets.test/1'}}
          - two:
              call: http
              with: {{method: get, endpoint: 'https://pets.test/2'}}
          - three:
              set: {{three: 3}}
"""


def test_fork_branches_start_together_and_join_in_declaration_order() -> None:
    run = Run(FORK.format(compete="false"))
    step = run.start({})
    one_call, two_call = only(step.effects, HttpCall)
    assert [one_call.uri, two_call.uri] == ["https://pets.test/1", "https://pets.test/2"]
    step = run.advance([EffectResult(two_call.id, "second")], inflight=[one_call.id])
    assert step.status == RUNNING
    assert step.effects == []  # the branch still in flight is not re-issued
    step = run.feed(one_call, "first")
    assert step.status == COMPLETED
    assert step.output == ["first", "second", {"three": 3}]


def test_a_competing_fork_takes_the_first_branch_to_finish_and_cancels_the_others() -> None:
    run = Run("""
    do:
      - f:
          fork:
            compete: true
            branches:
              - slow:
                  wait: PT1H
              - fast:
                  call: http
                  with: {method: get, endpoint: 'https://pets.test/fast'}
    """)
    step = run.start({})
    timer = one(step.effects, StartTimer)
    call = one(step.effects, HttpCall)
    step = run.feed(call, "won")
    assert step.status == COMPLETED
    assert step.output == "won"
    cancels = only(step.effects, CancelWait)
    assert [(c.target, c.kind) for c in cancels] == [(timer.id, "timer")]


def test_a_faulted_branch_faults_the_fork_and_drops_the_other_waits() -> None:
    run = Run(FORK.format(compete="false"))
    step = run.start({})
    one_call, two_call = only(step.effects, HttpCall)
    error = {"type": "https://example.com/boom", "status": 500}
    step = run.advance([EffectResult(one_call.id, error=error)], inflight=[two_call.id])
    assert step.error is not None
    assert step.error["instance"] == "/do/0/f/fork/branches/0/one"
    assert {c.target for c in only(step.effects, CancelWait)} == {two_call.id}


# -- the step budget ------------------------------------------------------------------------


def test_a_runaway_loop_yields_after_the_step_budget_and_resumes_from_its_state() -> None:
    run = Run("""
    do:
      - spin:
          set:
            n: '${ (.n // 0) + 1 }'
          then: spin
    """)
    step = run.start({})
    assert step.status == RUNNING
    assert step.yielded is True
    assert step.effects == []
    assert run.state["root"]["data"] == {"n": STEP_BUDGET}
    run.state = run.snapshot()
    step = run.advance()
    assert step.yielded is True
    assert run.state["root"]["data"] == {"n": 2 * STEP_BUDGET}
    assert run.interpreter.cancel(run.instance_id, run.state).status == CANCELLED


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_drops_every_outstanding_wait_and_ends_the_instance() -> None:
    run = Run("""
    timeout:
      after: PT1H
    do:
      - f:
          fork:
            branches:
              - call:
                  call: http
                  with: {method: get, endpoint: 'https://pets.test/'}
              - listen:
                  listen:
                    to:
                      one:
                        with: {type: com.example.ping}
    """)
    step = run.start({})
    timer = one(step.effects, StartTimer)
    call = one(step.effects, HttpCall)
    bookmark = one(step.effects, CreateBookmark)
    step = run.interpreter.cancel(run.instance_id, run.state, "operator")
    assert step.status == CANCELLED
    assert {(c.target, c.kind) for c in only(step.effects, CancelWait)} == {
        (timer.id, "timer"),
        (call.id, "call"),
        (bookmark.id, "bookmark"),
    }
    assert events(step) == [("/", "cancelled")]
    assert step.log[0].detail == {"reason": "operator"}
    # It stays cancelled: neither advancing nor a late result revives it.
    late = run.feed(call, "too late")
    assert late.status == CANCELLED
    assert late.effects == []
    assert json.loads(json.dumps(run.state))["status"] == CANCELLED


def test_cancelling_a_finished_instance_changes_nothing() -> None:
    run = Run("""
    do:
      - a:
          set: {a: 1}
    """)
    assert run.start({}).status == COMPLETED
    step = run.interpreter.cancel(run.instance_id, run.state)
    assert step.status == COMPLETED
    assert step.effects == []
    assert step.log == []


def test_a_waiting_instance_reports_waiting_and_a_busy_one_running() -> None:
    waiting = Run("""
    do:
      - w:
          wait: PT1M
    """)
    assert waiting.start({}).status == WAITING
    busy = Run("""
    do:
      - c:
          call: http
          with: {method: get, endpoint: 'https://pets.test/'}
    """)
    assert busy.start({}).status == RUNNING
