"""Step definitions: the CTK's vocabulary plus the recorder steps of ``swf_cli_check.py``.

Every step here means exactly what it means to the CLI contract checker, so our own
feature files run both in-process (here, on SQLite and PostgreSQL) and through the
``flowkeeper run`` contract.
"""

from __future__ import annotations

from typing import Any

import yaml
from pytest_bdd import given, parsers, then, when

from tests.acceptance.world import Outcome, run_workflow
from tests.support.standin import StandIn


class Scenario:
    """Per-scenario state shared by the steps."""

    def __init__(self, standin: StandIn, store_url: str) -> None:
        self.standin = standin
        self.store_url = store_url
        self.definition: str | None = None
        self.input: Any = {}
        self.outcome: Outcome | None = None

    def rewrite(self, text: str) -> str:
        base = self.standin.base_url
        text = text.replace("https://petstore.swagger.io", base).replace("https://httpbin.org", base)
        return text.replace("{{STANDIN}}", base)

    @property
    def result(self) -> Outcome:
        assert self.outcome is not None, "the workflow was never executed"
        return self.outcome


def lookup(document: Any, dotted: str) -> tuple[bool, Any]:
    node = document
    for key in dotted.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False, None
    return True, node


def subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and subset(v, actual[k]) for k, v in expected.items()
        )
    return bool(expected == actual)


# -- arrange --------------------------------------------------------------------------------


@given("a workflow with definition:")
def given_definition(scenario: Scenario, docstring: str) -> None:
    scenario.definition = scenario.rewrite(docstring)


@given("given the workflow input is:")
def given_input(scenario: Scenario, docstring: str) -> None:
    scenario.input = yaml.safe_load(scenario.rewrite(docstring))


# -- act --------------------------------------------------------------------------------------


@when("the workflow is executed")
def when_executed(scenario: Scenario) -> None:
    scenario.outcome = run_workflow(scenario.store_url, scenario.definition or "", scenario.input, wait=None)


@when(parsers.re(r"the workflow is executed with a wait of (?P<seconds>\d+) seconds?"))
def when_executed_with_wait(scenario: Scenario, seconds: str) -> None:
    scenario.outcome = run_workflow(
        scenario.store_url, scenario.definition or "", scenario.input, wait=float(seconds)
    )


# -- assert ------------------------------------------------------------------------------------


@then("the workflow should complete")
def then_complete(scenario: Scenario) -> None:
    r = scenario.result
    assert r.code == 0, f"status code {r.code}: {r.document!r} {r.message}"


@then("the workflow should complete with output:")
def then_complete_with(scenario: Scenario, docstring: str) -> None:
    r = scenario.result
    want = yaml.safe_load(docstring)
    assert r.code == 0, f"status code {r.code}: {r.document!r} {r.message}"
    assert r.document == want


@then("the workflow should fault")
def then_fault(scenario: Scenario) -> None:
    r = scenario.result
    assert r.code == 1 and isinstance(r.document, dict) and "type" in r.document, (r.code, r.document)


@then("the workflow should fault with error:")
def then_fault_with(scenario: Scenario, docstring: str) -> None:
    r = scenario.result
    want = yaml.safe_load(docstring)
    assert r.code == 1, (r.code, r.document, r.message)
    assert subset(want, r.document), f"{r.document!r} does not contain {want!r}"


@then("the workflow input should be rejected")
def then_input_rejected(scenario: Scenario) -> None:
    r = scenario.result
    rejected = r.code == 2 or (
        r.code == 1
        and isinstance(r.document, dict)
        and str(r.document.get("type", "")).endswith("/validation")
    )
    assert rejected, (r.code, r.document)


@then("the workflow should be rejected as invalid")
def then_invalid(scenario: Scenario) -> None:
    assert scenario.result.code == 2, (scenario.result.code, scenario.result.document)


@then("the workflow should be suspended")
def then_suspended(scenario: Scenario) -> None:
    r = scenario.result
    assert r.code == 3 and r.document["status"] == "suspended", (r.code, r.document)


@then(parsers.re(r"the workflow output should have properties (?P<names>.*)"))
def then_properties(scenario: Scenario, names: str) -> None:
    import re

    wanted = re.findall(r"'([^']*)'", names)
    missing = [n for n in wanted if not lookup(scenario.result.document, n)[0]]
    assert not missing, f"missing {missing} in {scenario.result.document!r}"


@then(parsers.re(r"the workflow output should have a '(?P<name>[^']*)' property with value:"))
def then_property_value(scenario: Scenario, name: str, docstring: str) -> None:
    found, value = lookup(scenario.result.document, name)
    assert found and value == yaml.safe_load(docstring), f"{name} = {value!r}"


@then(
    parsers.re(
        r"the workflow output should have a '(?P<name>[^']*)' property containing (?P<count>\d+) items"
    )
)
def then_property_count(scenario: Scenario, name: str, count: str) -> None:
    found, value = lookup(scenario.result.document, name)
    assert found and isinstance(value, list) and len(value) == int(count), f"{name} = {value!r}"


@then(parsers.re(r"the workflow output should be a list of (?P<count>\d+) items"))
def then_list(scenario: Scenario, count: str) -> None:
    document = scenario.result.document
    assert isinstance(document, list) and len(document) == int(count), document


@then(parsers.re(r"the workflow output should not contain '(?P<text>[^']*)'"))
def then_not_contain(scenario: Scenario, text: str) -> None:
    import json

    assert text not in json.dumps(scenario.result.document)


@then(parsers.re(r"(?P<task>\S+) should run first"))
def then_first(scenario: Scenario, task: str) -> None:
    starts = scenario.result.task_starts()
    assert starts and starts[0] == task, starts


@then(parsers.re(r"(?P<task>\S+) should run last"))
def then_last(scenario: Scenario, task: str) -> None:
    ends = scenario.result.task_ends()
    assert ends and ends[-1] == task, ends


@then(parsers.re(r"(?P<task>\S+) should run after (?P<other>\S+)"))
def then_after(scenario: Scenario, task: str, other: str) -> None:
    starts = scenario.result.task_starts()
    assert task in starts and other in starts and starts.index(task) > starts.index(other), starts


@then(parsers.re(r"(?P<task>\S+) should not run"))
def then_not_run(scenario: Scenario, task: str) -> None:
    assert task not in scenario.result.task_starts()


@then(parsers.re(r"the stand-in should have received (?P<count>\d+) requests? at '(?P<path>[^']*)'"))
def then_received(scenario: Scenario, count: str, path: str) -> None:
    assert scenario.standin.count(path) == int(count), scenario.standin.count(path)


@then(parsers.re(r"every request at '(?P<path>[^']*)' should carry a header '(?P<header>[^']*)'"))
def then_header(scenario: Scenario, path: str, header: str) -> None:
    requests = scenario.standin.requests_to(path)
    assert requests and all(header.lower() in r.headers for r in requests)


@then(parsers.re(r"the stand-in should have received at '(?P<path>[^']*)' the body:"))
def then_body(scenario: Scenario, path: str, docstring: str) -> None:
    want = yaml.safe_load(docstring)
    bodies = [r.body for r in scenario.standin.requests_to(path)]
    assert want in bodies, bodies


@then(parsers.re(r"the run should take at least (?P<seconds>[\d.]+) seconds"))
def then_at_least(scenario: Scenario, seconds: str) -> None:
    assert scenario.result.seconds >= float(seconds), scenario.result.seconds


@then(parsers.re(r"the run should take less than (?P<seconds>[\d.]+) seconds"))
def then_less_than(scenario: Scenario, seconds: str) -> None:
    assert scenario.result.seconds < float(seconds), scenario.result.seconds
