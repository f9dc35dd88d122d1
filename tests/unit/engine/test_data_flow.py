"""Data flow through a workflow (dsl.md "Data Flow"), with no effects involved.

Workflow ``input.from`` -> task ``if`` (raw input) -> task ``input.from`` (``$input``) ->
body -> ``output.as`` (raw output) -> ``export.as`` (replaces ``$context``) -> next
task -> workflow ``output.as``.
"""

from __future__ import annotations

import pytest

from flowkeeper.engine import COMPLETED, FAULTED
from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError
from tests.unit.engine.harness import Run, events

VALIDATION = ERROR_TYPE_BASE + "validation"
EXPRESSION = ERROR_TYPE_BASE + "expression"


def test_each_transformation_sees_the_previous_ones_result_in_dsl_order() -> None:
    run = Run("""
    input:
      from: '${ {n: .value} }'
    do:
      - first:
          if: '${ .n == 3 }'
          input:
            from: '${ {m: (.n * 10)} }'
          set:
            body: '${ .m }'
            input: '${ $input }'
            raw: '${ $task.input }'
          output:
            as: '${ {out: (.body + 1), input: $input} }'
          export:
            as: '${ {exported: .out, output: $output, previous: $context} }'
      - second:
          set:
            context: '${ $context }'
            previous: '${ . }'
    output:
      as: '${ {final: .previous.out, context: $context, raw: $workflow.input} }'
    """)
    step = run.start({"value": 3, "noise": True})
    assert step.status == COMPLETED
    assert step.output == {
        "final": 31,
        "context": {"exported": 31, "output": {"out": 31, "input": {"m": 30}}, "previous": {}},
        "raw": {"value": 3, "noise": True},
    }


def test_the_first_task_receives_the_transformed_workflow_input() -> None:
    run = Run("""
    input:
      from: .payload
    do:
      - echo:
          set: '${ {seen: .} }'
    """)
    assert run.start({"payload": {"a": 1}, "other": 2}).output == {"seen": {"a": 1}}


def test_context_starts_empty_and_export_replaces_it_rather_than_merging() -> None:
    run = Run("""
    do:
      - start:
          set: {ok: true}
          export:
            as: '${ {initial: $context, a: 1} }'
      - replace:
          set: {ok: true}
          export:
            as: '${ {b: 2} }'
      - read:
          set: '${ $context }'
    """)
    assert run.start({}).output == {"b": 2}


def test_a_task_whose_if_is_false_is_skipped_and_passes_its_input_on() -> None:
    run = Run("""
    do:
      - maybe:
          if: '${ .enabled }'
          input:
            from: '${ error("input.from must not run for a skipped task") }'
          set:
            touched: true
          export:
            as: '${ {polluted: true} }'
      - after:
          set:
            data: '${ . }'
            context: '${ $context }'
    """)
    step = run.start({"enabled": False})
    assert step.output == {"data": {"enabled": False}, "context": {}}
    assert ("/do/0/maybe", "skipped") in events(step)
    assert ("/do/0/maybe", "started") not in events(step)


def test_if_is_evaluated_on_the_raw_input_not_the_transformed_one() -> None:
    run = Run("""
    do:
      - gated:
          if: '${ .raw == true }'
          input:
            from: '${ {raw: false} }'
          set:
            ran: true
    """)
    assert run.start({"raw": True}).output == {"ran": True}


def test_output_as_sees_the_raw_output_and_export_as_the_transformed_one() -> None:
    run = Run("""
    do:
      - t:
          set:
            value: 5
          output:
            as: '${ {doubled: (.value * 2), rawOutput: $task.output} }'
          export:
            as: '${ {fromDot: .doubled, fromOutput: $output.doubled} }'
      - show:
          set:
            data: '${ . }'
            context: '${ $context }'
    """)
    assert run.start({}).output == {
        "data": {"doubled": 10, "rawOutput": {"value": 5}},
        "context": {"fromDot": 10, "fromOutput": 10},
    }


def test_workflow_output_as_sees_the_last_transformed_output_and_context() -> None:
    run = Run("""
    do:
      - t:
          set: {v: 1}
          output:
            as: '${ {v: (.v + 1)} }'
          export:
            as: '${ {saved: .v} }'
    output:
      as: '${ {result: .v, saved: $context.saved} }'
    """)
    assert run.start({}).output == {"result": 2, "saved": 2}


def test_an_object_transformation_is_evaluated_in_strict_mode() -> None:
    run = Run("""
    do:
      - t:
          set: {v: 1}
          output:
            as:
              kept: '${ .v }'
              literal: .v
    """)
    assert run.start({}).output == {"kept": 1, "literal": ".v"}


def test_input_that_violates_the_workflow_schema_is_refused_before_any_state() -> None:
    run = Run("""
    input:
      schema:
        format: json
        document:
          type: object
          required: [name]
    do:
      - t:
          set: {ok: true}
    """)
    with pytest.raises(WorkflowError) as excinfo:
        run.start({"nope": 1})
    assert excinfo.value.type == VALIDATION
    assert excinfo.value.status == 400


def test_a_task_input_schema_violation_faults_that_task_with_a_validation_error() -> None:
    run = Run("""
    do:
      - t:
          input:
            schema:
              format: json
              document:
                type: object
                required: [id]
          set: {ok: true}
    """)
    step = run.start({"name": "x"})
    assert step.status == FAULTED
    assert step.error is not None
    assert (step.error["type"], step.error["status"]) == (VALIDATION, 400)
    assert step.error["instance"].startswith("/do/0/t")


def test_an_export_schema_violation_faults_the_task() -> None:
    run = Run("""
    do:
      - t:
          set: {v: 1}
          export:
            as: '${ {v: "text"} }'
            schema:
              format: json
              document:
                type: object
                properties:
                  v: {type: integer}
    """)
    step = run.start({})
    assert step.error is not None
    assert step.error["type"] == VALIDATION
    assert step.error["instance"].startswith("/do/0/t")


def test_a_failing_output_expression_faults_the_task_with_the_expression_error() -> None:
    run = Run("""
    do:
      - t:
          set: {v: 1}
          output:
            as: '${ .v.w }'
      - never:
          set: {ok: true}
    """)
    step = run.start({})
    assert step.status == FAULTED
    assert step.error is not None
    assert (step.error["type"], step.error["status"], step.error["instance"]) == (EXPRESSION, 400, "/do/0/t")
    assert ("/do/1/never", "started") not in events(step)


def test_runtime_and_workflow_descriptors_are_available() -> None:
    run = Run(
        """
    do:
      - t:
          set:
            id: '${ $workflow.id }'
            name: '${ $workflow.definition.document.name }'
            started: '${ $workflow.startedAt.iso8601 }'
            task: '${ $task.name }'
            ref: '${ $task.reference }'
            runtime: '${ $runtime.name }'
    """,
        instance_id="inst-42",
    )
    assert run.start({}).output == {
        "id": "inst-42",
        "name": "wf",
        "started": "2030-01-02T03:04:05Z",
        "task": "t",
        "ref": "/do/0/t",
        "runtime": "flowkeeper",
    }


def test_the_log_records_workflow_and_task_events_in_order() -> None:
    run = Run("""
    do:
      - a:
          set: {ok: true}
      - b:
          do:
            - c:
                set: {ok: true}
    """)
    assert events(run.start({})) == [
        ("/", "started"),
        ("/do/0/a", "started"),
        ("/do/0/a", "completed"),
        ("/do/1/b", "started"),
        ("/do/1/b/do/0/c", "started"),
        ("/do/1/b/do/0/c", "completed"),
        ("/do/1/b", "completed"),
        ("/", "completed"),
    ]
