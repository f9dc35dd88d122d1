"""Invalid documents: each problem names the offending node (a JSON pointer) in plain words."""

from __future__ import annotations

import pytest

from flowkeeper.definitions import load_definition
from flowkeeper.errors import DefinitionError, Problem

HEADER = "document: {dsl: '1.0.0', namespace: test, name: sample, version: '0.1.0'}\n"


def problems_of(source: str) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(source)
    problems = caught.value.problems
    assert problems, "a DefinitionError always lists its problems"
    return problems


def assert_problem(source: str, pointer: str, phrase: str) -> list[Problem]:
    problems = problems_of(source)
    assert any(p.pointer == pointer and phrase in p.message for p in problems), [str(p) for p in problems]
    return problems


CASES = {
    # document block
    "missing-document": ("do: []\n", "", "'document' is required"),
    "missing-name": (
        "document: {dsl: '1.0.0', namespace: test, version: '0.1.0'}\ndo: []\n",
        "/document",
        "'name' is required",
    ),
    "missing-version": (
        "document: {dsl: '1.0.0', namespace: test, name: x}\ndo: []\n",
        "/document",
        "'version' is required",
    ),
    "missing-do": (HEADER, "", "'do' is required"),
    # schedule
    "schedule-impossible-cron": (
        HEADER + "schedule: {cron: '0 0 30 2 *'}\ndo:\n  - a: {set: {x: 1}}\n",
        "/schedule/cron",
        "never matches",
    ),
    "schedule-two-ways": (
        HEADER + "schedule: {cron: '* * * * *', every: {minutes: 1}}\ndo:\n  - a: {set: {x: 1}}\n",
        "/schedule",
        "exactly one of every, cron, after and on",
    ),
    "bad-name": (
        "document: {dsl: '1.0.0', namespace: test, name: 'My Flow', version: '0.1.0'}\ndo: []\n",
        "/document/name",
        "letters, digits or '-'",
    ),
    "bad-version": (
        "document: {dsl: '1.0.0', namespace: test, name: x, version: 'v1'}\ndo: []\n",
        "/document/version",
        "semantic version",
    ),
    "unknown-document-field": (
        "document: {dsl: '1.0.0', namespace: t, name: x, version: '1.0.0', owner: me}\ndo: []\n",
        "/document",
        "unexpected property 'owner'",
    ),
    "dsl-0.8": (
        "document: {dsl: '0.8', namespace: t, name: x, version: '1.0.0'}\nstates: []\n",
        "/document/dsl",
        "unsupported DSL version 0.8; Flowkeeper runs 1.0.x",
    ),
    "dsl-1.1": (
        "document: {dsl: '1.1.0', namespace: t, name: x, version: '1.0.0'}\ndo: []\n",
        "/document/dsl",
        "unsupported DSL version 1.1.0",
    ),
    # tasks
    "task-without-type": (
        HEADER + "do:\n  - a: {set: {x: 1}}\n  - foo: {bar: 1}\n",
        "/do/1/foo",
        "not a valid task: expected exactly one of call, do, emit, for, fork, listen, raise, run, set, "
        "switch, try, wait",
    ),
    "task-with-two-types": (
        HEADER + "do:\n  - a: {set: {x: 1}, wait: PT1S}\n",
        "/do/0/a",
        "found set and wait",
    ),
    "http-without-endpoint": (
        HEADER + "do:\n  - getPet:\n      call: http\n      with: {method: get}\n",
        "/do/0/getPet/with",
        "'endpoint' is required",
    ),
    "http-unknown-argument": (
        HEADER + "do:\n  - a: {call: http, with: {method: get, endpoint: 'https://x', bogus: 1}}\n",
        "/do/0/a/with",
        "unexpected property 'bogus'",
    ),
    "bad-output-enum": (
        HEADER + "do:\n  - a: {call: http, with: {method: get, endpoint: 'https://x', output: json}}\n",
        "/do/0/a/with/output",
        "must be one of raw, content, response",
    ),
    "bad-duration": (HEADER + "do:\n  - a: {wait: 5s}\n", "/do/0/a/wait", "expected a duration"),
    "bad-endpoint-uri": (
        HEADER + "do:\n  - a: {call: http, with: {method: get, endpoint: {uri: 5}}}\n",
        "/do/0/a/with/endpoint/uri",
        "absolute URI",
    ),
    "endpoint-not-a-uri": (
        HEADER + "do:\n  - a: {call: http, with: {method: get, endpoint: 'pets/1'}}\n",
        "/do/0/a/with/endpoint",
        "expected an endpoint: a URI, a runtime expression, or a mapping with 'uri'",
    ),
    "bad-backoff": (
        HEADER + "do:\n  - t: {try: [{c: {wait: PT1S}}], catch: {retry: {backoff: {random: {}}}}}\n",
        "/do/0/t/catch/retry/backoff",
        "exactly one of constant, exponential, linear",
    ),
    "basic-auth-without-password": (
        HEADER + "do:\n  - a:\n      call: http\n      with:\n        method: get\n"
        "        endpoint: {uri: 'https://x', authentication: {basic: {username: u}}}\n",
        "/do/0/a/with/endpoint/authentication/basic",
        "'password' is required",
    ),
    "empty-task-entry": (
        HEADER + "do:\n  - {}\n",
        "/do/0",
        "exactly one task name",
    ),
    "two-tasks-in-one-entry": (
        HEADER + "do:\n  - {a: {wait: PT1S}, b: {wait: PT1S}}\n",
        "/do/0",
        "exactly one task name",
    ),
    "empty-switch": (HEADER + "do:\n  - s: {switch: []}\n", "/do/0/s/switch", "must not be empty"),
    "do-not-a-list": (HEADER + "do: {a: {wait: PT1S}}\n", "/do", "expected a list"),
    "set-wrong-type": (HEADER + "do:\n  - a: {set: 5}\n", "/do/0/a/set", "expected"),
    # semantics
    "duplicate-names": (
        HEADER + "do:\n  - a: {set: {x: 1}}\n  - a: {set: {x: 2}}\n",
        "/do/1/a",
        "duplicate task name 'a'",
    ),
    "duplicate-names-in-fork": (
        HEADER + "do:\n  - f:\n      fork:\n        branches:\n          - b: {wait: PT1S}\n"
        "          - b: {wait: PT1S}\n",
        "/do/0/f/fork/branches/1/b",
        "duplicate task name 'b'",
    ),
    "duplicate-names-in-catch": (
        HEADER + "do:\n  - t:\n      try: [{x: {wait: PT1S}}]\n      catch:\n"
        "        do: [{y: {wait: PT1S}}, {y: {wait: PT1S}}]\n",
        "/do/0/t/catch/do/1/y",
        "duplicate task name 'y'",
    ),
    "unknown-then": (
        HEADER + "do:\n  - a: {set: {x: 1}, then: nowhere}\n  - b: {set: {x: 2}}\n",
        "/do/0/a/then",
        "flow directive 'nowhere' is not continue, exit, end or a task of the same list",
    ),
    "then-to-another-depth": (
        HEADER
        + "do:\n  - outer:\n      do:\n        - inner: {set: {x: 1}, then: last}\n  - last: {set: {x: 2}}\n",
        "/do/0/outer/do/0/inner/then",
        "flow directive 'last'",
    ),
    "unknown-switch-then": (
        HEADER + "do:\n  - s: {switch: [{c: {when: '.x', then: zzz}}, {d: {then: end}}]}\n",
        "/do/0/s/switch/0/c/then",
        "flow directive 'zzz'",
    ),
    "unknown-error": (
        HEADER + "use: {errors: {known: {type: 'https://x/e', status: 400}}}\n"
        "do:\n  - a: {raise: {error: unknown}}\n",
        "/do/0/a/raise/error",
        "error 'unknown' is not defined in use.errors",
    ),
    "unknown-retry": (
        HEADER + "do:\n  - t: {try: [{c: {wait: PT1S}}], catch: {retry: often}}\n",
        "/do/0/t/catch/retry",
        "retry policy 'often' is not defined in use.retries",
    ),
    "unknown-authentication": (
        HEADER + "do:\n  - a:\n      call: http\n      with:\n        method: get\n"
        "        endpoint: {uri: 'https://x', authentication: {use: petStore}}\n",
        "/do/0/a/with/endpoint/authentication/use",
        "authentication policy 'petStore' is not defined in use.authentications",
    ),
    "unknown-openapi-authentication": (
        HEADER
        + "do:\n  - a:\n      call: openapi\n      with:\n        document: {endpoint: 'https://x/o.json'}\n"
        "        operationId: op\n        authentication: {use: nope}\n",
        "/do/0/a/with/authentication/use",
        "authentication policy 'nope'",
    ),
    "unknown-task-timeout": (
        HEADER + "do:\n  - a: {wait: PT1S, timeout: short}\n",
        "/do/0/a/timeout",
        "timeout 'short' is not defined in use.timeouts",
    ),
    "unknown-workflow-timeout": (
        HEADER + "timeout: short\ndo:\n  - a: {wait: PT1S}\n",
        "/timeout",
        "timeout 'short' is not defined in use.timeouts",
    ),
    "unknown-catalog": (
        HEADER + "do:\n  - a: {call: 'log:1.0.0@tools'}\n",
        "/do/0/a/call",
        "catalog 'tools' is not defined in use.catalogs",
    ),
    "malformed-catalog-call": (
        HEADER + "do:\n  - a: {call: 'log@tools'}\n",
        "/do/0/a/call",
        "name:version@catalog",
    ),
    "unknown-top-level-property": (
        HEADER + "inputs: {}\ndo:\n  - a: {wait: PT1S}\n",
        "/inputs",
        "unknown workflow property 'inputs'",
    ),
    "invalid-input-schema": (
        HEADER + "input: {schema: {format: json, document: {type: 5}}}\ndo:\n  - a: {wait: PT1S}\n",
        "/input/schema/document/type",
        "not a valid JSON Schema",
    ),
    # unsupported features
    "run-container": (
        HEADER + "do:\n  - a: {run: {container: {image: alpine}}}\n",
        "/do/0/a/run/container",
        "run: container is not supported by Flowkeeper",
    ),
    "call-grpc": (
        HEADER
        + "do:\n  - a:\n      call: grpc\n      with:\n        proto: {endpoint: 'https://x/p.proto'}\n"
        "        service: {name: s, host: h}\n        method: m\n",
        "/do/0/a/call",
        "call: grpc is not supported",
    ),
    "call-a2a": (
        HEADER + "do:\n  - a: {call: a2a, with: {method: message/send}}\n",
        "/do/0/a/call",
        "call: a2a is not supported",
    ),
    "external-schema": (
        HEADER + "input:\n  schema: {format: json, resource: {endpoint: 'https://x/s.json'}}\n"
        "do:\n  - a: {wait: PT1S}\n",
        "/input/schema/resource",
        "external schemas (schema.resource) are not supported",
    ),
    "schema-format": (
        HEADER + "output:\n  schema: {format: avro, document: {}}\ndo:\n  - a: {wait: PT1S}\n",
        "/output/schema/format",
        "schema format 'avro' is not supported",
    ),
    "evaluate-language": (
        HEADER + "evaluate: {language: javascript, mode: strict}\ndo:\n  - a: {wait: PT1S}\n",
        "/evaluate/language",
        "expression language 'javascript' is not supported",
    ),
    "extensions": (
        HEADER + "use:\n  extensions:\n    - log: {extend: all}\ndo:\n  - a: {wait: PT1S}\n",
        "/use/extensions",
        "extensions (use.extensions) are not supported",
    ),
    # not a document at all
    "top-level-list": ("- a\n- b\n", "", "must be a mapping, not a list"),
    "top-level-scalar": ("just text\n", "", "must be a mapping"),
    "empty-text": ("", "", "must be a mapping"),
    "yaml-syntax-error": (HEADER + "do:\n  - a: x: y\n", "", "YAML syntax error at line 3, column 9"),
    "yaml-unclosed-bracket": (HEADER + "do:\n  - a: {wait: PT1S\n", "", "flow mapping that starts at line 3"),
    "json-syntax-error": ('{"document": {"dsl": "1.0.0",\n  "do": [}', "", "JSON syntax error at line 2"),
}


@pytest.mark.parametrize(("source", "pointer", "phrase"), list(CASES.values()), ids=list(CASES))
def test_invalid_document(source: str, pointer: str, phrase: str) -> None:
    assert_problem(source, pointer, phrase)


def test_messages_are_plain_words_not_tracebacks() -> None:
    problems = problems_of(HEADER + "do:\n  - a: {call: http, with: {method: get, endpoint: {uri: 5}}}\n")
    for problem in problems:
        assert "Traceback" not in problem.message
        assert "is not valid under any of the given schemas" not in problem.message
        assert "{'" not in problem.message, "no Python reprs of whole mappings"


def test_all_problems_of_a_document_are_reported_together() -> None:
    source = HEADER + (
        "do:\n  - a: {raise: {error: missing}, then: nowhere}\n  - a: {wait: PT1S, timeout: nope}\n"
    )
    pointers = {p.pointer for p in problems_of(source)}
    assert {"/do/0/a/raise/error", "/do/0/a/then", "/do/1/a", "/do/1/a/timeout"} <= pointers


def test_problem_count_is_capped() -> None:
    tasks = "".join(f"  - t{i}: {{wait: {i}}}\n" for i in range(60))
    problems = problems_of(HEADER + "do:\n" + tasks)
    assert len(problems) <= 20
    assert problems[-1].message.startswith("... and ")


def test_problems_come_in_document_order() -> None:
    tasks = "".join(f"  - t{i}: {{wait: bad}}\n" for i in range(12))
    pointers = [p.pointer for p in problems_of(HEADER + "do:\n" + tasks)]
    assert pointers == [f"/do/{i}/t{i}/wait" for i in range(12)]


def test_str_of_the_error_lists_every_problem() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition(HEADER + "do:\n  - a: {raise: {error: e1}}\n  - b: {raise: {error: e2}}\n")
    text = str(caught.value)
    assert "/do/0/a/raise/error" in text
    assert "/do/1/b/raise/error" in text


def test_a_directive_or_a_sibling_is_a_valid_target() -> None:
    definition = load_definition(
        HEADER + "do:\n"
        "  - a: {set: {x: 1}, then: c}\n"
        "  - b: {switch: [{one: {when: '.x', then: a}}, {two: {then: exit}}]}\n"
        "  - c: {set: {x: 2}, then: end}\n"
        "  - d: {set: {x: 3}, then: continue}\n"
    )
    assert definition.task_at("/do/0/a")["then"] == "c"


def test_defined_references_are_accepted() -> None:
    load_definition(
        HEADER + "use:\n"
        "  errors: {notFound: {type: 'https://x/e', status: 404}}\n"
        "  retries: {often: {delay: {seconds: 1}, limit: {attempt: {count: 3}}}}\n"
        "  timeouts: {short: {after: PT5S}}\n"
        "  authentications: {petStore: {bearer: {token: abc}}}\n"
        "  catalogs: {tools: {endpoint: 'https://example.com/catalog'}}\n"
        "timeout: short\n"
        "do:\n"
        "  - a: {raise: {error: notFound}, timeout: short}\n"
        "  - b: {try: [{c: {wait: PT1S}}], catch: {retry: often}}\n"
        "  - d: {call: http, with: {method: get,\n"
        "        endpoint: {uri: 'https://x', authentication: {use: petStore}}}}\n"
        "  - e: {call: 'log:1.0.0@tools'}\n"
        "  - f: {call: myRegisteredPythonFunction}\n"
    )


def test_a_secret_reference_is_not_an_authentication_reference() -> None:
    # {basic: {use: NAME}} names a secret, not an entry of use.authentications.
    load_definition(
        HEADER + "use: {secrets: [creds]}\n"
        "do:\n  - a: {call: http, with: {method: get, endpoint: {uri: 'https://x', "
        "authentication: {basic: {use: creds}}}}}\n"
    )


def test_listen_foreach_is_supported() -> None:
    definition = load_definition(
        HEADER + "do:\n"
        "  - l:\n"
        "      listen: {to: {any: [], until: '${ false }'}}\n"
        "      foreach:\n"
        "        item: event\n"
        "        do: [{post: {set: {seen: '${ $event }'}}}]\n"
    )
    assert definition.task_at("/do/0/l/foreach/do/0/post") == {"set": {"seen": "${ $event }"}}
