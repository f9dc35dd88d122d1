"""Outside effects (calls, processes) with every field evaluated, and how secrets reach them."""

from __future__ import annotations

from flowkeeper.engine import COMPLETED, FAULTED
from flowkeeper.engine.effects import (
    FunctionCall,
    HttpCall,
    OpenApiCall,
    ProcessRun,
)
from flowkeeper.errors import ERROR_TYPE_BASE
from tests.unit.engine.harness import Run, one

SECRETS = {
    "petCredentials": {"username": "owner", "password": "pw-S3CRET-basic"},
    "bearerToken": {"token": "tok-S3CRET-bearer"},
    "undeclared": {"token": "never-visible"},
}


# -- call: http -----------------------------------------------------------------------------


def test_http_call_expands_the_uri_and_evaluates_query_headers_and_body() -> None:
    run = Run("""
    do:
      - add:
          call: http
          with:
            method: post
            endpoint: https://pets.test/owners/{owner}/pets/{tag}
            headers:
              X-Trace: '${ .trace }'
              Accept: application/json
            query:
              limit: '${ .limit }'
              fixed: .limit
            body:
              name: '${ .name }'
              literal: .name
            output: response
            redirect: true
    """)
    step = run.start({"owner": 7, "tag": "a b/c", "trace": "t-1", "limit": 5, "name": "Rex"})
    call = one(step.effects, HttpCall)
    assert call.activity_id == "/do/0/add"
    assert call.method == "POST"
    assert call.uri == "https://pets.test/owners/7/pets/a%20b%2Fc"
    assert call.headers == {"X-Trace": "t-1", "Accept": "application/json"}
    assert call.query == {"limit": 5, "fixed": ".limit"}
    assert call.body == {"name": "Rex", "literal": ".name"}
    assert (call.output, call.redirect) == ("response", True)
    # instance id, activity reference and the effect counter: stable, and unique per call
    instance, _, counter = call.id.rpartition(".")
    assert call.idempotency_key == f"{instance}:/do/0/add:{counter}"
    assert call.authentication is None


def test_http_call_uri_may_be_a_runtime_expression() -> None:
    run = Run("""
    do:
      - get:
          call: http
          with:
            method: get
            endpoint:
              uri: '${ "https://pets.test/pets/" + (.id | tostring) }'
    """)
    assert one(run.start({"id": 3}).effects, HttpCall).uri == "https://pets.test/pets/3"


def test_the_call_output_becomes_the_task_output() -> None:
    run = Run("""
    do:
      - get:
          call: http
          with: {method: get, endpoint: 'https://pets.test/pets/1'}
          output:
            as: .name
    """)
    call = one(run.start({}).effects, HttpCall)
    step = run.feed(call, {"id": 1, "name": "Rex"})
    assert (step.status, step.output) == (COMPLETED, "Rex")


def test_authentication_is_resolved_from_use_authentications_and_secrets() -> None:
    run = Run(
        """
    use:
      secrets: [petCredentials, bearerToken]
      authentications:
        petAuth:
          basic:
            use: petCredentials
    do:
      - named:
          call: http
          with:
            method: get
            endpoint:
              uri: https://pets.test/a
              authentication:
                use: petAuth
      - inline:
          call: http
          with:
            method: get
            endpoint:
              uri: https://pets.test/b
              authentication:
                bearer:
                  use: bearerToken
      - expression:
          call: http
          with:
            method: get
            endpoint:
              uri: https://pets.test/c
              authentication:
                bearer:
                  token: '${ $workflow.input.token }'
    """,
        secrets=SECRETS,
    )
    step = run.start({"token": "from-input"})
    named = one(step.effects, HttpCall)
    assert named.authentication is not None
    assert named.authentication.scheme == "basic"
    assert named.authentication.settings == SECRETS["petCredentials"]
    step = run.feed(named, "ok")
    inline = one(step.effects, HttpCall)
    assert inline.authentication is not None
    assert (inline.authentication.scheme, inline.authentication.settings) == (
        "bearer",
        SECRETS["bearerToken"],
    )
    step = run.feed(inline, "ok")
    expression = one(step.effects, HttpCall)
    assert expression.authentication is not None
    assert expression.authentication.settings == {"token": "from-input"}


def test_a_secret_value_never_appears_in_the_repr_of_an_effect() -> None:
    run = Run(
        """
    use:
      secrets: [petCredentials]
    do:
      - get:
          call: http
          with:
            method: get
            endpoint:
              uri: https://pets.test/a
              authentication:
                basic:
                  use: petCredentials
    """,
        secrets=SECRETS,
    )
    call = one(run.start({}).effects, HttpCall)
    assert call.authentication is not None
    assert call.authentication.settings["password"] == "pw-S3CRET-basic"  # it is there ...
    for text in (repr(call), str(call), repr(call.authentication)):
        assert "pw-S3CRET-basic" not in text  # ... but never shown
        assert "owner" not in text


def test_a_workflow_cannot_authenticate_with_a_secret_it_did_not_declare() -> None:
    run = Run(
        """
    use:
      secrets: [bearerToken]
    do:
      - get:
          call: http
          with:
            method: get
            endpoint:
              uri: https://pets.test/a
              authentication:
                bearer:
                  use: undeclared
    """,
        secrets=SECRETS,
    )
    step = run.start({})
    assert step.status == FAULTED
    assert step.error is not None
    assert (step.error["type"], step.error["status"]) == (ERROR_TYPE_BASE + "authorization", 403)


def test_a_declared_secret_that_is_missing_faults_the_workflow_with_403() -> None:
    run = Run(
        """
    use:
      secrets: [apiToken]
    do:
      - a:
          set: {a: 1}
    """,
        secrets={},
    )
    step = run.start({})
    assert step.status == FAULTED
    assert step.error is not None
    assert (step.error["type"], step.error["status"]) == (ERROR_TYPE_BASE + "authorization", 403)
    assert "apiToken" in step.error["detail"]


# -- other calls ----------------------------------------------------------------------------


def test_openapi_call_carries_the_document_operation_and_evaluated_parameters() -> None:
    run = Run("""
    do:
      - find:
          call: openapi
          with:
            document:
              endpoint: https://pets.test/openapi.json
            operationId: getPetById
            parameters:
              petId: '${ .id }'
            output: raw
    """)
    call = one(run.start({"id": 9}).effects, OpenApiCall)
    assert (call.document_uri, call.operation_id, call.parameters, call.output) == (
        "https://pets.test/openapi.json",
        "getPetById",
        {"petId": 9},
        "raw",
    )
    assert call.activity_id == "/do/0/find"


def test_a_call_to_a_name_is_a_function_call_with_evaluated_arguments() -> None:
    run = Run("""
    do:
      - double:
          call: double
          with:
            x: '${ .n }'
            label: .n
    """)
    call = one(run.start({"n": 21}).effects, FunctionCall)
    assert (call.function, call.arguments, call.activity_id) == (
        "double",
        {"x": 21, "label": ".n"},
        "/do/0/double",
    )
    step = run.feed(call, 42)
    assert step.output == 42


def test_run_shell_is_a_process_run_with_arguments_and_environment_evaluated() -> None:
    run = Run("""
    do:
      - sh:
          run:
            shell:
              command: echo hello
              arguments:
                - '${ .who }'
              environment:
                GREETING: '${ .greeting }'
            return: all
    """)
    effect = one(run.start({"who": "world", "greeting": 1}).effects, ProcessRun)
    assert (
        effect.kind,
        effect.command,
        effect.arguments,
        effect.environment,
        effect.returns,
        effect.wait,
    ) == (
        "shell",
        "echo hello",
        ["world"],
        {"GREETING": "1"},
        "all",
        True,
    )
