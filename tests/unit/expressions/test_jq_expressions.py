"""jq runtime expressions as a workflow author writes them.

``${ }`` or bare jq where a field can only hold an expression, strict mode for values,
runtime variables bound without recompiling, no window on the process environment,
and every failure reported as the DSL's expression error (status 400).
"""

from __future__ import annotations

import pytest

from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError
from flowkeeper.expressions import (
    evaluate,
    evaluate_condition,
    evaluate_value,
    is_expression,
    jq_programs,
    strip_expression,
)

EXPRESSION_ERROR = ERROR_TYPE_BASE + "expression"


def expect_expression_error(excinfo: pytest.ExceptionInfo[WorkflowError]) -> dict[str, object]:
    error = excinfo.value.to_dict()
    assert error["type"] == EXPRESSION_ERROR
    assert error["status"] == 400
    return error


# -- ${ } and bare jq -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["${ .pet.name }", "${.pet.name}", ".pet.name", "  ${ .pet.name }  "])
def test_evaluate_accepts_the_expression_with_or_without_its_wrapper(text: str) -> None:
    assert evaluate(text, {"pet": {"name": "Rex"}}) == "Rex"


def test_strip_expression_removes_only_the_outer_wrapper() -> None:
    assert strip_expression("${ .a }") == ".a"
    assert strip_expression(".a") == ".a"
    assert strip_expression('${ "${x}" }') == '"${x}"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${ .a }", True),
        ("${.a}", True),
        (".a", False),
        ("${ .a } and more", False),
        (" ${ .a }", False),
        (3, False),
    ],
)
def test_is_expression_recognises_only_whole_strict_mode_strings(value: object, expected: bool) -> None:
    assert is_expression(value) is expected


def test_identity_returns_the_data_itself() -> None:
    data = {"a": [1, 2]}
    assert evaluate("${ . }", data) == data
    assert evaluate(".", data) == data


# -- strict mode over values ----------------------------------------------------------------


def test_evaluate_value_evaluates_only_strict_strings_in_nested_objects_and_lists() -> None:
    data = {"name": "Rex", "age": 3}
    value = {
        "literal": ".name",
        "expr": "${ .name }",
        "nested": {"list": ["${ .age + 1 }", ".age", {"deep": "${ [.name, .age] }"}], "n": 7, "b": False},
        "sentence": "name is ${ .name }",
        "none": None,
    }
    assert evaluate_value(value, data) == {
        "literal": ".name",
        "expr": "Rex",
        "nested": {"list": [4, ".age", {"deep": ["Rex", 3]}], "n": 7, "b": False},
        "sentence": "name is ${ .name }",
        "none": None,
    }


def test_evaluate_value_leaves_scalars_alone() -> None:
    assert evaluate_value(42, {"a": 1}) == 42
    assert evaluate_value("plain", {"a": 1}) == "plain"
    assert evaluate_value(None, {"a": 1}) is None


def test_an_expression_may_produce_any_json_type() -> None:
    assert evaluate_value({"obj": "${ {k: .a} }", "null": "${ .missing }"}, {"a": 1}) == {
        "obj": {"k": 1},
        "null": None,
    }


# -- conditions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("${ .v }", True),
        (".zero", True),
        (".empty", True),
        (".off", False),
        (".nothing", False),
        ("${ .v > 1 }", False),
    ],
)
def test_conditions_use_jq_truthiness(expression: str, expected: bool) -> None:
    data = {"v": 1, "zero": 0, "empty": "", "off": False, "nothing": None}
    assert evaluate_condition(expression, data) is expected


def test_a_literal_boolean_condition_is_taken_as_is() -> None:
    assert evaluate_condition(True, None) is True
    assert evaluate_condition(False, {"x": True}) is False


# -- runtime variables ----------------------------------------------------------------------


def test_variables_are_bound_by_name() -> None:
    variables = {"context": {"token": "t"}, "input": {"n": 2}, "item": 5}
    assert evaluate("${ [$context.token, $input.n, $item] }", None, variables) == ["t", 2, 5]


def test_a_variable_that_is_not_provided_is_null() -> None:
    assert evaluate("${ $nothing }", 1, {}) is None


def test_the_same_compiled_program_serves_different_variable_values() -> None:
    text = "$fk_bound_probe * 10 + ."
    first = evaluate(text, 1, {"fk_bound_probe": 1})
    program = jq_programs._compile(text)
    before = jq_programs._compile.cache_info()
    results = [evaluate(text, 1, {"fk_bound_probe": n}) for n in (2, 3, 4)]
    after = jq_programs._compile.cache_info()
    assert first == 11
    assert results == [21, 31, 41]
    assert after.misses == before.misses  # no recompilation for new values
    assert after.hits == before.hits + 3
    assert jq_programs._compile(text) is program


# -- the process environment stays out ------------------------------------------------------


def test_env_and_dollar_env_are_empty_even_with_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FK_PROBE_SECRET", "do-not-leak")
    assert evaluate("${ $ENV }", None) == {}
    assert evaluate("${ env }", None) == {}
    assert evaluate("${ $ENV.FK_PROBE_SECRET }", None) is None
    assert evaluate("${ env.FK_PROBE_SECRET }", None) is None
    assert evaluate('${ "\\(env)\\($ENV)" }', None) == "{}{}"


def test_a_variable_called_env_cannot_bring_the_environment_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FK_PROBE_SECRET", "do-not-leak")
    assert evaluate("${ $ENV }", None, {"ENV": {"FK_PROBE_SECRET": "do-not-leak"}}) == {}


@pytest.mark.parametrize("text", ['import "a" as a; .', 'include "a"; .', '${ import "a" as a; . }'])
def test_module_directives_are_rejected(text: str) -> None:
    with pytest.raises(WorkflowError) as excinfo:
        evaluate(text, {})
    expect_expression_error(excinfo)


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data"),
    [
        (".a.b", {"a": 1}),  # cannot index a number
        ("1 / 0", None),
        ('error("boom")', None),
        (".[", None),  # syntax
        ("${ }", None),  # nothing to evaluate
        ("undefined_function(1)", None),
    ],
)
def test_jq_failures_raise_the_expression_error_with_status_400(text: str, data: object) -> None:
    with pytest.raises(WorkflowError) as excinfo:
        evaluate(text, data)
    error = expect_expression_error(excinfo)
    assert text.strip("${} ") in str(error["detail"])


def test_a_failure_inside_a_value_raises_the_expression_error() -> None:
    with pytest.raises(WorkflowError) as excinfo:
        evaluate_value({"list": ["ok", "${ .a.b }"]}, {"a": "text"})
    expect_expression_error(excinfo)


def test_a_failing_condition_raises_instead_of_being_false() -> None:
    with pytest.raises(WorkflowError) as excinfo:
        evaluate_condition("${ .a > .b.c }", {"a": 1, "b": 2})
    expect_expression_error(excinfo)


# -- results --------------------------------------------------------------------------------


def test_empty_is_null() -> None:
    assert evaluate("${ empty }", {"a": 1}) is None
    assert evaluate_value({"x": "${ .[] | select(. > 10) }"}, [1, 2]) == {"x": None}
    assert evaluate_condition("${ empty }", None) is False


def test_the_first_of_several_outputs_is_taken() -> None:
    assert evaluate("${ .[] }", [3, 1, 2]) == 3
    assert evaluate("1, 2", None) == 1


def test_a_trailing_comment_does_not_swallow_the_expression() -> None:
    assert evaluate("${ .a # the pet's age }", {"a": 5}) == 5
    assert evaluate(".a # closing ) in a comment", {"a": 5}) == 5
    assert evaluate_value({"x": "${ .a + 1 # plus one }"}, {"a": 5}) == {"x": 6}


def test_user_definitions_inside_an_expression_work() -> None:
    assert evaluate("${ def twice: . * 2; .n | twice }", {"n": 4}) == 8
