"""The runtime end to end on a real store: deploy, start, run, commit, log, secrets."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import pytest

from flowkeeper.activities import FunctionRegistry
from flowkeeper.errors import ERROR_TYPE_BASE, DefinitionConflict, InputValidationError
from flowkeeper.records import InstanceRecord, InstanceStatus
from flowkeeper.runtime import CheckpointInput, Engine, Interceptor
from flowkeeper.store import Store
from tests.integration.runtime.conftest import EngineFactory, definition, deploy, start_and_finish
from tests.support.standin import StandIn


class CommitCounter(Interceptor):
    """Counts commits per instance: the insert (``instance_started``) and every checkpoint."""

    def __init__(self) -> None:
        self.commits: dict[str, int] = {}

    def instance_started(self, instance: InstanceRecord) -> None:
        self.commits[instance.id] = self.commits.get(instance.id, 0) + 1

    async def write_checkpoint(
        self, input: CheckpointInput, next: Callable[[CheckpointInput], Awaitable[InstanceRecord]]
    ) -> InstanceRecord:
        stored = await next(input)
        self.commits[stored.id] = self.commits.get(stored.id, 0) + 1
        return stored


async def test_a_started_instance_runs_to_completion_with_its_output(engine: Engine, store: Store) -> None:
    await deploy(
        engine,
        """
    input:
      from: '${ {name: .name} }'
    do:
      - greet:
          set:
            greeting: '${ "Hello, " + .name }'
    """,
    )
    started = await engine.start("tests", "wf", None, {"name": "World", "noise": 1})
    assert started.status in (InstanceStatus.RUNNING, InstanceStatus.COMPLETED)
    assert started.input == {"name": "World", "noise": 1}
    done = await engine.wait_for(started.id)
    assert done.status == InstanceStatus.COMPLETED
    assert done.output == {"greeting": "Hello, World"}
    assert done.error is None
    assert done.completed_on is not None
    assert await store.get_instance(started.id) == done


async def test_set_call_function_set_costs_exactly_two_commits_and_calls_the_function_with_its_arguments(
    engines: EngineFactory, functions: FunctionRegistry
) -> None:
    received: list[dict[str, Any]] = []

    def double(x: int, label: str) -> dict[str, Any]:
        received.append({"x": x, "label": label})
        return {"doubled": x * 2}

    functions.register("double", double)
    counter = CommitCounter()
    engine = engines(interceptors=[counter])
    await deploy(
        engine,
        """
    do:
      - prepare:
          set: {x: '${ .n + 1 }'}
      - compute:
          call: double
          with:
            x: '${ .x }'
            label: literal
      - finish:
          set: {result: '${ .doubled }'}
    """,
    )
    done = await start_and_finish(engine, data={"n": 20})
    assert done.status == InstanceStatus.COMPLETED
    assert done.output == {"result": 42}
    assert received == [{"x": 21, "label": "literal"}]
    assert counter.commits == {done.id: 2}


async def test_a_function_error_faults_the_instance_with_the_runtime_error(
    engine: Engine, functions: FunctionRegistry
) -> None:
    def broken() -> None:
        raise RuntimeError("the function broke")

    functions.register("broken", broken)
    await deploy(
        engine,
        """
    do:
      - call:
          call: broken
    """,
    )
    done = await start_and_finish(engine, data={})
    assert done.status == InstanceStatus.FAILED
    assert done.error is not None
    assert (done.error["type"], done.error["status"], done.error["instance"]) == (
        ERROR_TYPE_BASE + "runtime",
        500,
        "/do/0/call",
    )
    assert "the function broke" in done.error["detail"]


async def test_an_http_call_reaches_the_service_with_its_idempotency_key(
    engine: Engine, standin: StandIn
) -> None:
    await deploy(
        engine,
        f"""
    do:
      - record:
          call: http
          with:
            method: post
            endpoint: {standin.url("/rec/{kind}")}
            body: '${{ {{pet: .pet}} }}'
          output:
            as: .echo
    """,
    )
    done = await start_and_finish(engine, data={"kind": "dogs", "pet": "Rex"})
    assert done.status == InstanceStatus.COMPLETED
    assert done.output == {"pet": "Rex"}
    [request] = standin.requests_to("/rec/dogs")
    assert request.method == "POST"
    assert done.id in request.headers["idempotency-key"]


async def test_input_that_violates_the_input_schema_is_refused_and_nothing_is_stored(
    engine: Engine, store: Store
) -> None:
    await deploy(
        engine,
        """
    input:
      schema:
        format: json
        document:
          type: object
          required: [name]
          properties:
            name: {type: string}
    do:
      - greet:
          set: {ok: true}
    """,
    )
    with pytest.raises(InputValidationError):
        await engine.start("tests", "wf", None, {"name": 42})
    await engine.drain()
    assert (await store.list_instances()).items == []


async def test_deploying_the_same_content_twice_is_not_a_conflict(engine: Engine) -> None:
    body = """
    do:
      - a:
          set: {a: 1}
    """
    first, created = await engine.deploy(definition(body))
    again, created_again = await engine.deploy(definition(body))
    assert (created, created_again) == (True, False)
    assert again.content_hash == first.content_hash
    # The same document in another format is the same content.
    as_json = json.dumps(first.document, indent=4)
    _, created_from_json = await engine.deploy(as_json)
    assert created_from_json is False


async def test_deploying_other_content_under_the_same_version_raises_definition_conflict(
    engine: Engine, store: Store
) -> None:
    original = await deploy(
        engine,
        """
    do:
      - a:
          set: {a: 1}
    """,
    )
    with pytest.raises(DefinitionConflict):
        await deploy(
            engine,
            """
        do:
          - a:
              set: {a: 2}
        """,
        )
    assert (await store.get_definition("tests", "wf", "1.0.0")).content_hash == original.content_hash
    newer = await deploy(
        engine,
        """
    do:
      - a:
          set: {a: 2}
    """,
        version="1.0.1",
    )
    assert newer.version == "1.0.1"


async def test_a_declared_secret_that_is_missing_fails_the_instance_with_403(engines: EngineFactory) -> None:
    engine = engines(secrets={"other": "value"})
    await deploy(
        engine,
        """
    use:
      secrets: [apiToken]
    do:
      - a:
          set: {a: 1}
    """,
    )
    done = await start_and_finish(engine, data={})
    assert done.status == InstanceStatus.FAILED
    assert done.error is not None
    assert (done.error["type"], done.error["status"]) == (ERROR_TYPE_BASE + "authorization", 403)


async def test_the_log_records_every_task_in_order_and_never_the_secret_value(
    engines: EngineFactory, store: Store, standin: StandIn
) -> None:
    secret = "s3cr3t-token-never-logged"
    engine = engines(secrets={"apiToken": {"token": secret}})
    await deploy(
        engine,
        f"""
    use:
      secrets: [apiToken]
    do:
      - prepare:
          set: {{pet: '${{ .pet }}'}}
      - login:
          call: http
          with:
            method: get
            endpoint:
              uri: {standin.url("/bearer")}
              authentication:
                bearer:
                  use: apiToken
          output:
            as: '${{ {{authenticated: .authenticated}} }}'
      - refused:
          try:
            - fail:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: {standin.url("/status/503")}
                    authentication:
                      bearer:
                        use: apiToken
          catch:
            errors:
              with: {{status: 503}}
      - finish:
          set: {{done: true}}
    """,
    )
    done = await start_and_finish(engine, data={"pet": "Rex"})
    assert done.status == InstanceStatus.COMPLETED
    [login] = standin.requests_to("/bearer")
    assert login.headers["authorization"] == f"Bearer {secret}"  # the secret was used ...
    log = await store.get_log(done.id)
    tasks = [(e.reference, str(e.event)) for e in log if e.reference.startswith("/do/")]
    assert tasks == [
        ("/do/0/prepare", "started"),
        ("/do/0/prepare", "completed"),
        ("/do/1/login", "started"),
        ("/do/1/login", "completed"),
        ("/do/2/refused", "started"),
        ("/do/2/refused/try/0/fail", "started"),
        ("/do/2/refused/try/0/fail", "faulted"),
        ("/do/2/refused", "completed"),
        ("/do/3/finish", "started"),
        ("/do/3/finish", "completed"),
    ]
    assert [str(e.event) for e in log if e.reference == "/"] == ["started", "completed"]
    assert [e.seq for e in log] == sorted(e.seq for e in log if e.seq is not None)
    text = json.dumps([asdict(e) for e in log], default=str)
    assert secret not in text  # ... and never logged
    stored = await store.get_instance(done.id)
    assert secret not in json.dumps(asdict(stored), default=str)
