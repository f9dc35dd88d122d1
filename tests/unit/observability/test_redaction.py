"""Secrets never reach a log sink: masked keys, Authorization headers, URL passwords, known values."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import structlog

from flowkeeper.config import LoggingSettings
from flowkeeper.observability import Redactor, configure_logging, mask_text, mask_value

SECRETS = ("hunter2", "eyJhbGciOi.payload.sig", "pw-in-url", "k-123456", "tok-abcdef", "wf-secret-value")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("login with password=hunter2 now", "login with password=*** now"),
        ("db_password: hunter2", "db_password: ***"),
        ("{'Authorization': 'Bearer eyJhbGciOi.payload.sig'}", "{'Authorization': 'Bearer ***'}"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ('{"apiKey": "k-123456", "x": 1}', '{"apiKey": "***", "x": 1}'),
        ("X-Api-Key=k-123456&page=2", "X-Api-Key=***&page=2"),
        (
            "https://api.example.com/v1?access_token=tok-abcdef&q=1",
            "https://api.example.com/v1?access_token=***&q=1",
        ),
        (
            "connect postgresql://app:pw-in-url@db:5432/wf failed",
            "connect postgresql://app:***@db:5432/wf failed",
        ),
        ("redis://:pw-in-url@cache:6379/0", "redis://:***@cache:6379/0"),
        ("amqp://guest:p@ss@rabbit/", "amqp://guest:***@rabbit/"),
    ],
)
def test_text_secrets_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "ENGINE: Critical error in workflow tests/wf/1.0.0 instance i-1: "
        "https://serverlessworkflow.io/spec/1.0.0/errors/communication Service Unavailable",
        "Successfully completed execution of activity /do/0/getToken (http) of workflow i-1 in 5123ms",
        "Concurrency conflict on instance i-1: another worker owns it now",
        "External call /do/1/refreshToken of workflow i-1 failed: 401 Unauthorized",
        "calling http://api.example.com:8080/pets",
    ],
)
def test_ordinary_lines_are_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_values_are_masked_by_key_at_any_depth() -> None:
    value = {
        "headers": {"Authorization": "Bearer tok-abcdef", "Accept": "application/json"},
        "body": {"user": "bob", "password": "hunter2", "nested": [{"client_secret": "x-y-z"}]},
        "uri": "https://bob:pw-in-url@example.com/",
        "empty_token": None,
    }
    assert mask_value(value) == {
        "headers": {"Authorization": "***", "Accept": "application/json"},
        "body": {"user": "bob", "password": "***", "nested": [{"client_secret": "***"}]},
        "uri": "https://bob:***@example.com/",
        "empty_token": None,
    }


def test_known_secret_values_are_masked_wherever_they_appear() -> None:
    redactor = Redactor([{"db": "wf-secret-value", "short": "ab"}, "hunter2"])
    assert redactor.text("the value wf-secret-value and hunter2 leaked") == "the value *** and *** leaked"
    assert redactor.text("ab stays: too short to search for") == "ab stays: too short to search for"


def log_everything() -> None:
    log = logging.getLogger("flowkeeper.test")
    log.info("connecting to %s", "postgresql://app:pw-in-url@db/wf", extra={"password": "hunter2"})
    log.warning("request headers %s", {"Authorization": "Bearer eyJhbGciOi.payload.sig"})
    log.info("call with api_key=k-123456", extra={"headers": {"X-Api-Key": "k-123456"}})
    log.info("secret value wf-secret-value in text")
    structlog.get_logger("flowkeeper.test").info("structlog", token="tok-abcdef", user="bob")
    try:
        raise ConnectionError("cannot reach postgresql://app:pw-in-url@db/wf")
    except ConnectionError:
        log.exception("database down")


@pytest.mark.parametrize("format", ["console", "json"])
def test_no_sink_ever_shows_a_secret(format: str, tmp_path: Path) -> None:
    stream = io.StringIO()
    path = tmp_path / "workflow-.log"
    settings = LoggingSettings(format=format, file_path=str(path))  # type: ignore[arg-type]
    configure_logging(settings, stream=stream, secret_values=["wf-secret-value"])
    log_everything()
    outputs = {"stream": stream.getvalue(), "file": path.read_text(encoding="utf-8")}
    for where, text in outputs.items():
        assert "database down" in text, where
        for secret in SECRETS:
            assert secret not in text, (where, secret)
        assert "***" in text
    if format == "json":
        events = [json.loads(line) for line in outputs["stream"].splitlines() if line.startswith("{")]
        assert events[0]["password"] == "***"
        assert events[2]["headers"] == {"X-Api-Key": "***"}
        assert events[4]["token"] == "***"
        assert events[4]["user"] == "bob"
