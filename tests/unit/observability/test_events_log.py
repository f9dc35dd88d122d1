"""LoggingInterceptor on a real engine: the lines operators grep for, and nothing secret."""

from __future__ import annotations

import io
import re

from flowkeeper.config import LoggingSettings
from flowkeeper.errors import ERROR_TYPE_BASE
from flowkeeper.observability import LoggingInterceptor, configure_logging
from flowkeeper.records import InstanceStatus
from tests.support.standin import StandIn
from tests.unit.observability.conftest import (
    FAILING_WORKFLOW,
    OK_WORKFLOW,
    SECRET,
    EngineFactory,
    deploy_all,
    finish,
)

TIME = r"\[\d\d:\d\d:\d\d"


def configure(
    stream: io.StringIO,
    *,
    log_state_transitions: bool = False,
    log_activity_input_output: bool = False,
    enable_detailed_logging: bool = False,
) -> LoggingInterceptor:
    settings = LoggingSettings(
        log_state_transitions=log_state_transitions,
        log_activity_input_output=log_activity_input_output,
        enable_detailed_logging=enable_detailed_logging,
    )
    configure_logging(settings, stream=stream)
    return LoggingInterceptor(settings)


async def test_a_completed_outside_effect_logs_its_duration_in_ms(
    engines: EngineFactory, log_stream: io.StringIO
) -> None:
    engine = engines([configure(log_stream)])
    await deploy_all(engine, ok=OK_WORKFLOW)
    done = await finish(engine, "ok", {"n": 20})
    assert done.status == InstanceStatus.COMPLETED
    lines = log_stream.getvalue().splitlines()
    pattern = (
        rf"{TIME} INF\] flowkeeper\.engine: Successfully completed execution of activity /do/1/compute "
        rf"\(function\) of workflow {done.id} in \d+ms"
    )
    assert [line for line in lines if re.fullmatch(pattern, line)] != []
    assert not [line for line in lines if "ERR]" in line or "WRN]" in line]
    # Pure tasks are not outside effects: no line for them, and nothing at DEBUG without the flags.
    assert "/do/0/prepare" not in log_stream.getvalue()


async def test_a_failed_instance_logs_the_critical_error_and_the_failed_external_call(
    engines: EngineFactory, log_stream: io.StringIO
) -> None:
    engine = engines([configure(log_stream)])
    await deploy_all(engine, failing=FAILING_WORKFLOW)
    done = await finish(engine, "failing", {"password": SECRET})
    assert done.status == InstanceStatus.FAILED
    text = log_stream.getvalue()
    assert re.search(
        rf"^{TIME} WRN\] flowkeeper\.engine: External call /do/1/fetch of workflow {done.id} failed: "
        r"503 Service Unavailable$",
        text,
        re.MULTILINE,
    )
    assert re.search(
        rf"^{TIME} ERR\] flowkeeper\.engine: ENGINE: Critical error in workflow tests/failing/1\.0\.0 "
        rf"instance {done.id}: {re.escape(ERROR_TYPE_BASE)}communication Service Unavailable$",
        text,
        re.MULTILINE,
    )
    assert SECRET not in text  # the error's detail carries it; details are never logged
    assert "Successfully completed" not in text


async def test_a_failed_http_call_never_logs_its_headers_or_body_even_with_input_output_logging(
    engines: EngineFactory, log_stream: io.StringIO, standin: StandIn
) -> None:
    engine = engines([configure(log_stream, log_activity_input_output=True)])
    body = f"""
    do:
      - post:
          call: http
          with:
            method: post
            endpoint: {standin.url("/status/503")}
            headers:
              Authorization: 'Bearer {SECRET}'
            body:
              password: '${{ .password }}'
              user: bob
    """
    await deploy_all(engine, http=body)
    done = await finish(engine, "http", {"password": SECRET})
    assert done.status == InstanceStatus.FAILED
    text = log_stream.getvalue()
    assert re.search(rf"External call /do/0/post of workflow {done.id} failed: 503 ", text)
    assert "ENGINE: Critical error in workflow tests/http/1.0.0" in text
    [input_line] = [line for line in text.splitlines() if "input:" in line]
    assert re.match(
        rf"{TIME} DBG\] flowkeeper\.engine\.activity_io: Activity /do/0/post \(http\) ", input_line
    )
    assert '"user": "bob"' in input_line
    assert '"Authorization": "***"' in input_line and '"password": "***"' in input_line
    assert SECRET not in text


async def test_input_and_output_are_logged_only_with_the_setting(
    engines: EngineFactory, log_stream: io.StringIO
) -> None:
    engine = engines([configure(log_stream)])
    await deploy_all(engine, ok=OK_WORKFLOW)
    await finish(engine, "ok", {"n": 1})
    assert "input:" not in log_stream.getvalue() and "output:" not in log_stream.getvalue()

    on = io.StringIO()
    engine = engines([configure(on, log_activity_input_output=True)])
    done = await finish(engine, "ok", {"n": 1})
    lines = on.getvalue().splitlines()
    assert f"activity_io: Activity /do/1/compute (function) of workflow {done.id} input: " in "\n".join(lines)
    assert any(line.endswith('input: {"function": "double", "arguments": {"x": 2}}') for line in lines)
    assert any(line.endswith('output: {"doubled": 4}') for line in lines)


async def test_a_large_output_is_truncated(engines: EngineFactory, log_stream: io.StringIO) -> None:
    settings = LoggingSettings(log_activity_input_output=True)
    configure_logging(settings, stream=log_stream)
    engine = engines([LoggingInterceptor(settings, max_payload_chars=10)])
    await deploy_all(engine, ok=OK_WORKFLOW)
    await finish(engine, "ok", {"n": 1})
    assert 'output: {"doubled"… (4 more characters)' in log_stream.getvalue()


async def test_state_transitions_are_logged_only_with_the_setting(
    engines: EngineFactory, log_stream: io.StringIO
) -> None:
    engine = engines([configure(log_stream)])
    await deploy_all(engine, ok=OK_WORKFLOW)
    await finish(engine, "ok", {"n": 1})
    assert "transitions" not in log_stream.getvalue()

    on = io.StringIO()
    engine = engines([configure(on, log_state_transitions=True)])
    done = await finish(engine, "ok", {"n": 1})
    messages = [
        line.split("transitions: ", 1)[1] for line in on.getvalue().splitlines() if "transitions: " in line
    ]
    iid = done.id
    for expected in (
        f"Workflow tests/ok/1.0.0 instance {iid} started (running)",
        f"Workflow tests/ok/1.0.0 instance {iid} started",
        f"Activity /do/0/prepare (set) of workflow {iid} started",
        f"Activity /do/0/prepare (set) of workflow {iid} completed",
        f"Activity /do/1/compute (call) of workflow {iid} completed",
        f"Activity /do/2/finish (set) of workflow {iid} completed",
        f"Workflow tests/ok/1.0.0 instance {iid}: running -> completed",
        f"Workflow tests/ok/1.0.0 instance {iid} completed",
    ):
        assert expected in messages, expected
    assert all(" DBG] " in line for line in on.getvalue().splitlines() if "transitions: " in line)


async def test_detailed_logging_summarises_checkpoints_without_their_contents(
    engines: EngineFactory, log_stream: io.StringIO
) -> None:
    engine = engines([configure(log_stream, enable_detailed_logging=True)])
    await deploy_all(engine, failing=FAILING_WORKFLOW)
    done = await finish(engine, "failing", {"password": SECRET})
    text = log_stream.getvalue()
    assert f"detail: Executing activity /do/1/fetch (function) of workflow {done.id}" in text
    assert re.search(
        rf"detail: Checkpoint of workflow tests/failing/1\.0\.0 instance {done.id}: failed, row version \d+, "
        r"\d+ log rows, 0 bookmarks, 0 timers, 0 outbox events, 0 child instances",
        text,
    )
    assert SECRET not in text


async def test_a_cancellation_is_a_state_transition(engines: EngineFactory, log_stream: io.StringIO) -> None:
    engine = engines([configure(log_stream, log_state_transitions=True)])
    await deploy_all(engine, waiting="do:\n  - pause:\n      wait: PT1H\n")
    started = await engine.start("tests", "waiting", None, {})
    await engine.drain()
    await engine.cancel(started.id)
    text = log_stream.getvalue()
    assert f"transitions: Activity /do/0/pause (wait) of workflow {started.id} started" in text
    assert f"transitions: Workflow tests/waiting/1.0.0 instance {started.id} cancelled" in text
    assert "ENGINE: Critical error" not in text
