"""Settings: defaults, file and environment precedence, durations, errors, masking, hosts, secrets."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from functools import reduce
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flowkeeper.config import (
    DatabaseSettings,
    HttpSettings,
    SecretsSettings,
    Settings,
    load_settings,
    mask_url,
)
from flowkeeper.durations import parse_duration
from flowkeeper.errors import ConfigurationError

S = timedelta(seconds=1)
DAY = timedelta(days=1)
PASSWORD = "hunter2-Secret"


def value_at(settings: Settings, path: str) -> Any:
    return reduce(getattr, path.split("."), settings)


def write(tmp_path: Path, name: str, content: str | dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def config_error(env: dict[str, str] | None = None, config_file: Path | None = None) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config_file, env=env or {})
    # Nothing chained: a chained pydantic error would print input values.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__
    return str(caught.value)


# --- defaults -------------------------------------------------------------------------

GUIDE_DEFAULTS = [
    ("database.url", "sqlite+aiosqlite:///./flowkeeper.db"),
    ("database.min_pool_size", 10),
    ("database.max_pool_size", 100),
    ("database.connect_timeout", 30 * S),
    ("database.command_timeout", 60 * S),
    ("database.echo", False),
    ("outbox_processor.batch_size", 50),
    ("outbox_processor.processing_interval", 10 * S),
    ("outbox_processor.max_retry_attempts", 5),
    ("outbox_processor.retry_delay_multiplier", 2.0),
    ("outbox_processor.max_retry_delay", 30 * S),
    ("outbox_processor.retry_delay_base", S),
    ("outbox_processor.claim_timeout", 60 * S),
    ("outbox_processor.sinks", []),
    ("timer_service.batch_size", 100),
    ("timer_service.processing_interval", 30 * S),
    ("timer_service.long_running_threshold", DAY),
    ("cleanup_service.processing_interval", timedelta(hours=2)),
    ("cleanup_service.completed_workflow_retention", 90 * DAY),
    ("cleanup_service.execution_log_retention", 365 * DAY),
    ("cleanup_service.outbox_event_retention", 7 * DAY),
    ("cleanup_service.batch_size", 1000),
    ("resilience.database_operations.retry.max_attempts", 3),
    ("resilience.database_operations.retry.delay_base", timedelta(milliseconds=100)),
    ("resilience.database_operations.retry.delay_multiplier", 2.0),
    ("resilience.database_operations.timeout", 30 * S),
    ("resilience.external_calls.retry.max_attempts", 3),
    ("resilience.external_calls.retry.delay_base", S),
    ("resilience.external_calls.retry.delay_multiplier", 1.5),
    ("resilience.external_calls.circuit_breaker.failure_threshold", 0.5),
    ("resilience.external_calls.circuit_breaker.minimum_throughput", 10),
    ("resilience.external_calls.circuit_breaker.sampling_duration", 60 * S),
    ("resilience.external_calls.circuit_breaker.break_duration", 30 * S),
    ("resilience.external_calls.timeout", 120 * S),
    ("logging.level", "INFO"),
    ("logging.format", "console"),
    ("logging.file_path", None),
    ("logging.retained_file_count_limit", 30),
    (
        "logging.overrides",
        {"flowkeeper": "INFO", "uvicorn": "WARNING", "sqlalchemy": "WARNING", "alembic": "WARNING"},
    ),
    ("logging.enable_detailed_logging", False),
    ("logging.log_activity_input_output", False),
    ("logging.log_state_transitions", False),
    ("auth.enabled", False),
    ("auth.authority", None),
    ("auth.audience", "workflow-api"),
    ("auth.require_https_metadata", True),
    ("auth.jwt_secret", None),
    ("auth.algorithms", ["RS256", "HS256"]),
    ("cors.allowed_origins", []),
    ("cors.allowed_headers", ["Content-Type", "Authorization"]),
    ("cors.allowed_methods", ["GET", "POST", "PUT", "DELETE"]),
    ("rate_limit.enabled", False),
    ("rate_limit.requests_per_minute", 600),
    ("rate_limit.burst", 100),
    ("cache.definition_cache_size", 1000),
    ("cache.definition_cache_ttl", timedelta(minutes=30)),
    ("cache.redis_url", None),
    ("cache.instance_name", "flowkeeper"),
    ("engine.worker_id", None),
    ("engine.lease_duration", 30 * S),
    ("engine.concurrency", 64),
    ("engine.poll_interval", S),
    ("engine.runtime_name", "flowkeeper"),
    ("http.timeout", None),
    ("http.connect_timeout", 10 * S),
    ("http.max_redirects", 10),
    ("http.verify_tls", True),
    ("http.allow_hosts", []),
    ("http.deny_hosts", ["169.254.169.254"]),
    ("processes.shell_enabled", False),
    ("processes.script_enabled", False),
    ("processes.timeout", 60 * S),
    ("processes.python_executable", sys.executable),
    ("processes.node_executable", None),
    ("secrets.env_prefix", "FLOWKEEPER_SECRET_"),
    ("secrets.files_dir", None),
    ("server.host", "127.0.0.1"),
    ("server.port", 8080),
    ("server.max_body_size", 1_048_576),
    ("server.shutdown_grace_period", 30 * S),
    ("events.retention", 3600 * S),
    ("engine.function_modules", []),
]


@pytest.mark.parametrize(("path", "expected"), GUIDE_DEFAULTS)
def test_defaults_are_the_guides_values(path: str, expected: Any) -> None:
    assert value_at(load_settings(env={}), path) == expected


def test_defaults_table_covers_every_field() -> None:
    def leaves(model: Any, prefix: str = "") -> set[str]:
        out: set[str] = set()
        for name in type(model).model_fields:
            value = getattr(model, name)
            if hasattr(type(value), "model_fields"):
                out |= leaves(value, f"{prefix}{name}.")
            else:
                out.add(prefix + name)
        return out

    assert leaves(Settings()) == {path for path, _ in GUIDE_DEFAULTS}


def test_settings_alone_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKEEPER__SERVER__PORT", "9999")
    assert Settings().server.port == 8080
    assert load_settings(env={}).server.port == 8080
    assert load_settings().server.port == 9999


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.server.port = 1


# --- file and environment -------------------------------------------------------------

# The guide's Background Services and Resilience blocks, as printed.
GUIDE_JSON: dict[str, Any] = {
    "WorkflowEngine": {
        "OutboxProcessor": {
            "BatchSize": 50,
            "ProcessingInterval": "00:00:10",
            "MaxRetryAttempts": 5,
            "RetryDelayMultiplier": 2.0,
            "MaxRetryDelay": "00:00:30",
        },
        "TimerService": {
            "BatchSize": 100,
            "ProcessingInterval": "00:00:30",
            "LongRunningThreshold": "1.00:00:00",
        },
        "CleanupService": {
            "ProcessingInterval": "02:00:00",
            "CompletedWorkflowRetention": "90.00:00:00",
            "ExecutionLogRetention": "365.00:00:00",
            "OutboxEventRetention": "7.00:00:00",
        },
    },
    "Resilience": {
        "DatabaseOperations": {
            "Retry": {"MaxAttempts": 3, "DelayBase": "00:00:00.100", "DelayMultiplier": 2.0},
            "Timeout": "00:00:30",
        },
        "ExternalCalls": {
            "Retry": {"MaxAttempts": 3, "DelayBase": "00:00:01", "DelayMultiplier": 1.5},
            "CircuitBreaker": {
                "FailureThreshold": 0.5,
                "MinimumThroughput": 10,
                "SamplingDuration": "00:01:00",
                "BreakDuration": "00:00:30",
            },
            "Timeout": "00:02:00",
        },
    },
}


def test_the_guides_json_blocks_load_to_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "guide.json", GUIDE_JSON), env={})
    assert settings == Settings()


def test_pascal_case_workflow_engine_block_with_the_guides_tuning(tmp_path: Path) -> None:
    # The guide's own advice for outbox lag, plus its Debug Mode flags.
    config = {
        "WorkflowEngine": {
            "OutboxProcessor": {"BatchSize": 100, "ProcessingInterval": "00:00:05"},
            "EnableDetailedLogging": True,
            "LogActivityInputOutput": True,
            "LogStateTransitions": True,
        },
        "Resilience": {"ExternalCalls": {"CircuitBreaker": {"BreakDuration": "00:01:00"}}},
    }
    settings = load_settings(write(tmp_path, "tuned.json", config), env={})
    assert settings.outbox_processor.batch_size == 100
    assert settings.outbox_processor.processing_interval == 5 * S
    assert settings.outbox_processor.max_retry_attempts == 5
    assert settings.resilience.external_calls.circuit_breaker.break_duration == 60 * S
    assert settings.resilience.external_calls.circuit_breaker.minimum_throughput == 10
    assert settings.logging.enable_detailed_logging
    assert settings.logging.log_activity_input_output
    assert settings.logging.log_state_transitions


def test_yaml_file_in_snake_case(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "flowkeeper.yaml",
        """
# comments are fine
database:
  url: postgresql://flow@db.internal:5432/flowkeeper
  max_pool_size: 20
timer_service:
  processing_interval: 5s
logging:
  level: debug
  format: json
  overrides:
    flowkeeper.engine: DEBUG
http:
  deny_hosts: [169.254.169.254, 10.0.0.0/8]
""",
    )
    settings = load_settings(path, env={})
    assert settings.database.async_url == "postgresql+asyncpg://flow@db.internal:5432/flowkeeper"
    assert settings.database.max_pool_size == 20
    assert settings.timer_service.processing_interval == 5 * S
    assert settings.logging.level == "DEBUG"
    assert settings.logging.format == "json"
    assert settings.logging.overrides["flowkeeper.engine"] == "DEBUG"
    assert settings.logging.overrides["uvicorn"] == "WARNING"
    assert settings.http.deny_hosts == ["169.254.169.254", "10.0.0.0/8"]


def test_camel_case_keys(tmp_path: Path) -> None:
    config = {"rateLimit": {"requestsPerMinute": 60}, "http": {"maxRedirects": 2, "verifyTLS": False}}
    settings = load_settings(write(tmp_path, "c.json", config), env={})
    assert settings.rate_limit.requests_per_minute == 60
    assert settings.http.max_redirects == 2
    assert settings.http.verify_tls is False


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "empty.yml", ""), env={}) == Settings()


def test_environment_wins_over_file_and_keeps_the_files_other_values(tmp_path: Path) -> None:
    path = write(tmp_path, "f.yaml", "outbox_processor:\n  batch_size: 7\n  max_retry_attempts: 2\n")
    settings = load_settings(path, env={"FLOWKEEPER__OUTBOX_PROCESSOR__BATCH_SIZE": "9"})
    assert settings.outbox_processor.batch_size == 9
    assert settings.outbox_processor.max_retry_attempts == 2


def test_environment_names_are_case_insensitive_and_nest_deeply() -> None:
    env = {
        "flowkeeper__database__url": "sqlite:///tmp/x.db",
        "FLOWKEEPER__RESILIENCE__EXTERNAL_CALLS__RETRY__MAX_ATTEMPTS": "5",
        "FLOWKEEPER__AUTH__ENABLED": "true",
        "FLOWKEEPER__AUTH__JWT_SECRET": PASSWORD,
    }
    settings = load_settings(env=env)
    assert settings.database.async_url == "sqlite+aiosqlite:///tmp/x.db"
    retry = settings.resilience.external_calls.retry
    # Setting one retry key must keep the external-call defaults of the others.
    assert (retry.max_attempts, retry.delay_base, retry.delay_multiplier) == (5, S, 1.5)
    assert settings.auth.enabled
    assert settings.auth.jwt_secret is not None
    assert settings.auth.jwt_secret.get_secret_value() == PASSWORD


def test_environment_lists_and_maps_as_json_or_nested_keys() -> None:
    env = {
        "FLOWKEEPER__CORS__ALLOWED_ORIGINS": '["https://ui.example.com"]',
        "FLOWKEEPER__HTTP__ALLOW_HOSTS": ' ["*.example.com", "10.1.0.0/16"]',
        "FLOWKEEPER__LOGGING__OVERRIDES__HTTPX": "warning",
        "FLOWKEEPER__LOGGING__OVERRIDES__UVICORN": "Information",
    }
    settings = load_settings(env=env)
    assert settings.cors.allowed_origins == ["https://ui.example.com"]
    assert settings.http.allow_hosts == ["*.example.com", "10.1.0.0/16"]
    assert settings.logging.overrides == {
        "flowkeeper": "INFO",
        "uvicorn": "INFO",
        "sqlalchemy": "WARNING",
        "alembic": "WARNING",
        "httpx": "WARNING",
    }


def test_config_file_from_flowkeeper_config_and_argument_wins(tmp_path: Path) -> None:
    from_env = write(tmp_path, "a.yaml", "server:\n  port: 1111\n")
    from_arg = write(tmp_path, "b.json", {"server": {"port": 2222}})
    assert load_settings(env={"FLOWKEEPER_CONFIG": str(from_env)}).server.port == 1111
    assert load_settings(from_arg, env={"FLOWKEEPER_CONFIG": str(from_env)}).server.port == 2222


def test_other_flowkeeper_variables_are_not_settings() -> None:
    env = {"FLOWKEEPER_SECRET_TOKEN": "x", "FLOWKEEPER_TEST_POSTGRES_URL": "postgresql://h/d", "PATH": "/bin"}
    assert load_settings(env=env) == Settings()


def test_outbound_timeout_falls_back_to_external_calls_timeout() -> None:
    assert load_settings(env={}).outbound_timeout == 120 * S
    env = {"FLOWKEEPER__RESILIENCE__EXTERNAL_CALLS__TIMEOUT": "PT45S"}
    assert load_settings(env=env).outbound_timeout == 45 * S
    env["FLOWKEEPER__HTTP__TIMEOUT"] = "10s"
    assert load_settings(env=env).outbound_timeout == 10 * S


def test_worker_id_and_executables() -> None:
    engine = load_settings(env={}).engine
    assert engine.effective_worker_id().endswith(f"-{os.getpid()}")
    assert load_settings(env={"FLOWKEEPER__ENGINE__WORKER_ID": "w1"}).engine.effective_worker_id() == "w1"
    processes = load_settings(env={"FLOWKEEPER__PROCESSES__NODE_EXECUTABLE": "/opt/node/bin/node"}).processes
    assert processes.resolve_node_executable() == "/opt/node/bin/node"


def test_node_is_looked_up_on_path_when_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flowkeeper.config.shutil.which", lambda name: f"/found/{name}")
    assert Settings().processes.resolve_node_executable() == "/found/node"


# --- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (timedelta(minutes=3), timedelta(minutes=3)),
        (10, 10 * S),
        (1.5, timedelta(milliseconds=1500)),
        ("30", 30 * S),
        ("0.25", timedelta(milliseconds=250)),
        ("00:00:10", 10 * S),
        ("00:00:00.100", timedelta(milliseconds=100)),
        ("00:00:00.0123456", timedelta(microseconds=12345)),
        ("02:00:00", timedelta(hours=2)),
        ("00:01:00", 60 * S),
        ("1.00:00:00", DAY),
        ("90.00:00:00", 90 * DAY),
        ("365.00:00:00", 365 * DAY),
        ("1.02:03:04.5", timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
        ("PT30S", 30 * S),
        ("P1D", DAY),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("P2W", 14 * DAY),
        ("pt0.5s", timedelta(milliseconds=500)),
        ("10s", 10 * S),
        ("250ms", timedelta(milliseconds=250)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", DAY),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 10 S ", 10 * S),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration_forms(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "soon", "10 sec", "-5s", "1y", "P1Y", "P1M", "P", "PT", "P1DT", "24:00:00", "00:60:00", "1:2"],
)
def test_parse_duration_rejects_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), timedelta(seconds=-1), True, None, [10]])
def test_parse_duration_rejects_values(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_iso_years_and_months_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="no fixed length"):
        parse_duration("P1M")


def test_every_duration_form_is_accepted_by_settings(tmp_path: Path) -> None:
    config = """
outbox_processor: {processing_interval: 00:00:05, max_retry_delay: PT1M}
timer_service: {processing_interval: 45, long_running_threshold: 2d}
resilience: {database_operations: {retry: {delay_base: 250ms}}}
cleanup_service: {completed_workflow_retention: 30.00:00:00}
"""
    settings = load_settings(write(tmp_path, "d.yaml", config), env={})
    assert settings.outbox_processor.processing_interval == 5 * S
    assert settings.outbox_processor.max_retry_delay == 60 * S
    assert settings.timer_service.processing_interval == 45 * S
    assert settings.timer_service.long_running_threshold == 2 * DAY
    assert settings.resilience.database_operations.retry.delay_base == timedelta(milliseconds=250)
    assert settings.cleanup_service.completed_workflow_retention == 30 * DAY


def test_unquoted_clock_times_in_yaml_keep_their_meaning(tmp_path: Path) -> None:
    # YAML 1.1 reads unquoted 12:00:00 as the base-60 integer 43200 and 0:00:00.500 as
    # the float 0.5; as seconds, both still mean what the clock form says.
    config = """
cleanup_service: {processing_interval: 12:00:00}
resilience: {database_operations: {retry: {delay_base: 0:00:00.500}}}
outbox_processor: {processing_interval: 00:00:10}
"""
    settings = load_settings(write(tmp_path, "s.yaml", config), env={})
    assert settings.cleanup_service.processing_interval == timedelta(hours=12)
    assert settings.resilience.database_operations.retry.delay_base == timedelta(milliseconds=500)
    assert settings.outbox_processor.processing_interval == 10 * S


# --- errors name the key --------------------------------------------------------------


def test_batch_size_error_message_from_a_file(tmp_path: Path) -> None:
    message = config_error(config_file=write(tmp_path, "bad.json", {"outbox_processor": {"batch_size": -1}}))
    assert message == "outbox_processor.batch_size: must be greater than 0 (got -1)"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FLOWKEEPER__OUTBOX_PROCESSOR__RETRY_DELAY_MULTIPLIER": "0.5"},
         "outbox_processor.retry_delay_multiplier: must be greater than or equal to 1 (got '0.5')"),
        ({"FLOWKEEPER__SERVER__PORT": "0"}, "server.port: must be greater than or equal to 1"),
        ({"FLOWKEEPER__SERVER__PORT": "70000"}, "server.port: must be less than or equal to 65535"),
        ({"FLOWKEEPER__SERVER__PORT": "http"}, "server.port: must be a valid integer"),
        ({"FLOWKEEPER__TIMER_SERVICE__BATCH_SIZE": "0"}, "timer_service.batch_size: must be greater than 0"),
        ({"FLOWKEEPER__CLEANUP_SERVICE__EXECUTION_LOG_RETENTION": "0s"},
         "cleanup_service.execution_log_retention: must be greater than 0 (got '0s')"),
        ({"FLOWKEEPER__TIMER_SERVICE__PROCESSING_INTERVAL": "soon"},
         "timer_service.processing_interval: invalid duration 'soon'"),
        ({"FLOWKEEPER__RESILIENCE__EXTERNAL_CALLS__CIRCUIT_BREAKER__FAILURE_THRESHOLD": "1.5"},
         "resilience.external_calls.circuit_breaker.failure_threshold: must be less than or equal to 1"),
        ({"FLOWKEEPER__DATABASE__MIN_POOL_SIZE": "200"},
         "database: min_pool_size must not exceed max_pool_size (200 > 100)"),
        ({"FLOWKEEPER__LOGGING__FORMAT": "xml"}, "logging.format: must be 'console' or 'json'"),
        ({"FLOWKEEPER__LOGGING__LEVEL": "loud"}, "logging.level: unknown log level 'loud'"),
        ({"FLOWKEEPER__CORS__ALLOWED_ORIGINS": "https://a"}, "cors.allowed_origins: must be a valid list"),
        ({"FLOWKEEPER__HTTP__DENY_HOSTS": '["http://x/"]'}, "http.deny_hosts: invalid host pattern 'http://x/'"),
        ({"FLOWKEEPER__AUTH__ENABLED": "yes"}, "auth: enabled needs authority (OIDC issuer) or jwt_secret"),
        ({"FLOWKEEPER__AUTH__AUTHORITY": "http://idp"}, "auth: authority must be https://"),
        ({"FLOWKEEPER__DATABSE__URL": "sqlite://"},
         "databse: unknown setting [from FLOWKEEPER__DATABSE__URL]"),
        ({"FLOWKEEPER__SERVER__PROT": "1"}, "server.prot: unknown setting [from FLOWKEEPER__SERVER__PROT]"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key(env: dict[str, str], expected: str) -> None:
    assert expected in config_error(env)


def test_env_errors_name_the_variable() -> None:
    message = config_error({"FLOWKEEPER__OUTBOX_PROCESSOR__BATCH_SIZE": "-1"})
    assert message == (
        "outbox_processor.batch_size: must be greater than 0 (got '-1') "
        "[from FLOWKEEPER__OUTBOX_PROCESSOR__BATCH_SIZE]"
    )


def test_every_error_is_reported_without_a_pydantic_dump(tmp_path: Path) -> None:
    config = {"server": {"port": 0, "host": "::"}, "WorkflowEngine": {"TimerService": {"BatchSize": "x"}}}
    message = config_error(config_file=write(tmp_path, "two.json", config))
    assert message.splitlines() == [
        "timer_service.batch_size: must be a valid integer, unable to parse string as an integer (got 'x')",
        "server.port: must be greater than or equal to 1 (got 0)",
    ]
    for noise in ("validation error", "pydantic", "input_value", "errors.pydantic.dev", "Traceback"):
        assert noise not in message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FLOWKEEPER__SERVER____PORT": "1"}, "FLOWKEEPER__SERVER____PORT: empty key segment"),
        ({"FLOWKEEPER__CORS__ALLOWED_ORIGINS": "[oops"}, "cors.allowed_origins: invalid JSON"),
        ({"FLOWKEEPER__SERVER": "x", "FLOWKEEPER__SERVER__PORT": "1"}, "server.port: conflicts with another"),
        ({"FLOWKEEPER__SERVER__PORT": "1", "FLOWKEEPER__SERVER__PORT__X": "1"}, "conflicts with another"),
    ],
)
def test_malformed_environment_variables(env: dict[str, str], expected: str) -> None:
    assert expected in config_error(env)


def test_unknown_key_in_a_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.yaml", "outbox_processor:\n  batch_sise: 5\n")
    assert config_error(config_file=path) == "outbox_processor.batch_sise: unknown setting"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("settings.toml", "", "unsupported config file type"),
        ("broken.json", '{"server": ', "invalid JSON at line 1"),
        ("broken.yaml", "server: [1, 2\n", "invalid YAML at line 2"),
        ("list.yaml", "- server\n", "the top level must be a mapping"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: str, expected: str) -> None:
    assert expected in config_error(config_file=write(tmp_path, name, content))


def test_missing_file_is_named(tmp_path: Path) -> None:
    message = config_error(config_file=tmp_path / "nope.yaml")
    assert "cannot read config file" in message
    assert "nope.yaml" in message


# --- passwords stay hidden ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:////var/lib/x.db", "sqlite+aiosqlite:////var/lib/x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("POSTGRES://h/db", "postgresql+asyncpg://h/db"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db"),
    ],
)
def test_database_url_normalised_to_async_drivers(url: str, expected: str) -> None:
    database = DatabaseSettings(url=url)
    assert database.async_url == expected
    assert database.dialect == ("sqlite" if expected.startswith("sqlite") else "postgresql")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"postgresql://flow:{PASSWORD}@db:5432/x", "postgresql://flow:***@db:5432/x"),
        (f"postgres://flow:{PASSWORD}@with@at@db/x", "postgres://flow:***@db/x"),
        (f"redis://:{PASSWORD}@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://flow@db/x", "postgresql://flow@db/x"),
        ("sqlite:///./flowkeeper.db", "sqlite:///./flowkeeper.db"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_passwords_are_masked_in_repr_and_str() -> None:
    settings = load_settings(
        env={
            "FLOWKEEPER__DATABASE__URL": f"postgresql://flow:{PASSWORD}@db/x",
            "FLOWKEEPER__CACHE__REDIS_URL": f"redis://:{PASSWORD}@cache:6379",
            "FLOWKEEPER__AUTH__JWT_SECRET": PASSWORD,
        }
    )
    assert settings.database.safe_url == "postgresql://flow:***@db/x"
    for text in (repr(settings), str(settings), repr(settings.database), str(settings.cache)):
        assert PASSWORD not in text
    assert "postgresql://flow:***@db/x" in repr(settings.database)
    assert settings.database.url.endswith(f"{PASSWORD}@db/x")


def test_passwords_are_masked_in_errors() -> None:
    message = config_error({"FLOWKEEPER__DATABASE__URL": f"mysql://root:{PASSWORD}@db/x"})
    assert message.startswith("database.url: unsupported database URL scheme 'mysql'")
    assert "mysql://root:***@db/x" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "env",
    [
        {"FLOWKEEPER__DATABASE__PASSWORD": PASSWORD},  # unknown key: its value is not echoed
        {"FLOWKEEPER__AUTH__JWT_SECRET": f'["{PASSWORD}"]'},  # wrong type for a secret
        {"FLOWKEEPER__DATABASE": json.dumps({"url": f"postgresql://u:{PASSWORD}@h/db", "echo": "maybe"})},
    ],
)
def test_secret_values_never_appear_in_errors(env: dict[str, str]) -> None:
    message = config_error(env)
    assert message
    assert PASSWORD not in message


def test_yaml_syntax_errors_do_not_quote_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", f"database:\n  url: postgresql://u:{PASSWORD}@h/db\n   echo: [\n")
    message = config_error(config_file=path)
    assert "invalid YAML" in message
    assert PASSWORD not in message


# --- outbound destinations ------------------------------------------------------------


def http(**kwargs: Any) -> HttpSettings:
    env = {f"FLOWKEEPER__HTTP__{key.upper()}": json.dumps(value) for key, value in kwargs.items()}
    return load_settings(env=env).http


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.169.254.",
        "[::ffff:169.254.169.254]",
        "::ffff:a9fe:a9fe",
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "",
        "  ",
    ],
)
def test_default_denies_the_metadata_address_in_every_spelling(host: str) -> None:
    assert not Settings().http.is_destination_allowed(host)


@pytest.mark.parametrize("host", ["api.example.com", "10.0.0.1", "[::1]", "localhost", "cafe.be"])
def test_default_allows_other_hosts(host: str) -> None:
    assert Settings().http.is_destination_allowed(host)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("10.1.2.3", False),
        ("10.255.255.255", False),
        ("11.0.0.1", True),
        ("[fd00::1]", False),
        ("fd00:0:0:0:0:0:0:abcd", False),
        ("::1", True),
        ("internal.corp", False),
        ("INTERNAL.corp.", False),
        ("a.internal.corp", True),
    ],
)
def test_deny_cidr_and_names(host: str, allowed: bool) -> None:
    settings = http(deny_hosts=["10.0.0.0/8", "fd00::/8", "internal.corp"])
    assert settings.is_destination_allowed(host) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.example.com", True),
        ("a.b.example.com", True),
        ("API.Example.COM.", True),
        ("example.com", False),
        ("badexample.com", False),
        ("example.com.evil.net", False),
        ("admin.example.com", False),
        ("192.168.4.2", True),
        ("192.169.0.1", False),
        ("evil.net", False),
    ],
)
def test_allow_list_with_wildcard_and_cidr_deny_wins(host: str, allowed: bool) -> None:
    settings = http(allow_hosts=["*.example.com", "192.168.0.0/16"], deny_hosts=["admin.example.com"])
    assert settings.is_destination_allowed(host) is allowed


def test_host_patterns_are_normalised() -> None:
    settings = http(allow_hosts=["API.Example.com.", "[::1]", "10.0.0.5/8"])
    assert settings.allow_hosts == ["api.example.com", "::1", "10.0.0.5/8"]
    assert settings.is_destination_allowed("api.example.com")
    assert settings.is_destination_allowed("10.200.0.1")


@pytest.mark.parametrize("pattern", ["http://x", "a b", "*.", "10.0.0.0/33", "*", "host:80"])
def test_invalid_host_patterns_are_refused(pattern: str) -> None:
    message = config_error({"FLOWKEEPER__HTTP__ALLOW_HOSTS": json.dumps([pattern])})
    assert message.startswith("http.allow_hosts: invalid host pattern")


# --- secrets --------------------------------------------------------------------------


def test_secrets_from_the_environment() -> None:
    env = {
        "FLOWKEEPER_SECRET_apiKey": "abc",
        "FLOWKEEPER_SECRET_DB": '{"user": "flow", "password": "p"}',
        "FLOWKEEPER_SECRET_COUNT": "42",
        "FLOWKEEPER_SECRET_": "nameless",
        "OTHER_SECRET_X": "no",
        "FLOWKEEPER__SERVER__PORT": "1",
    }
    expected = {"apiKey": "abc", "DB": {"user": "flow", "password": "p"}, "COUNT": 42}
    assert SecretsSettings().load(env) == expected


def test_secrets_from_files_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cr3t\n", encoding="utf-8")
    (tmp_path / "oauth").write_text('{"clientId": "c", "clientSecret": "cs"}', encoding="utf-8")
    (tmp_path / "shadowed").write_text("from-file", encoding="utf-8")
    (tmp_path / ".hidden").write_text("skip", encoding="utf-8")
    (tmp_path / "..data").mkdir()
    (tmp_path / "sub").mkdir()
    settings = load_settings(env={"FLOWKEEPER__SECRETS__FILES_DIR": str(tmp_path)})
    secrets = settings.secrets.load({"FLOWKEEPER_SECRET_shadowed": "from-env"})
    oauth = {"clientId": "c", "clientSecret": "cs"}
    assert secrets == {"token": "s3cr3t", "oauth": oauth, "shadowed": "from-env"}


def test_secrets_custom_prefix_and_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_KEY", "v")
    assert SecretsSettings(env_prefix="MYAPP_").load()["KEY"] == "v"


def test_secret_values_do_not_print() -> None:
    secrets = SecretsSettings().load({"FLOWKEEPER_SECRET_token": PASSWORD})
    assert secrets["token"] == PASSWORD
    for text in (repr(secrets), str(secrets), f"{secrets}"):
        assert PASSWORD not in text
        assert "token" in text


def test_secrets_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"secrets\.files_dir: not a directory"):
        SecretsSettings(files_dir=str(tmp_path / "missing")).load({})


# --- outbox sinks ---------------------------------------------------------------------


def test_outbox_sinks_from_a_guide_style_file(tmp_path: Path) -> None:
    config = {
        "WorkflowEngine": {
            "OutboxProcessor": {
                "ClaimTimeout": "00:02:00",
                "Sinks": [
                    {"Name": "audit", "Type": "webhook", "Url": "https://audit.example/hook",
                     "Secret": PASSWORD, "Timeout": "00:00:05", "EventTypes": ["com.example.*"]},
                    {"name": "bus", "type": "rabbitmq", "url": f"amqp://app:{PASSWORD}@mq:5672/prod",
                     "routingKey": "events"},
                ],
            }
        }
    }  # fmt: skip
    outbox = load_settings(write(tmp_path, "sinks.json", config), env={}).outbox_processor
    webhook, rabbit = outbox.sinks
    assert outbox.claim_timeout == 120 * S
    assert webhook.type == "webhook"
    assert webhook.name == "audit"
    assert webhook.secret is not None
    assert webhook.secret.get_secret_value() == PASSWORD
    assert webhook.timeout == 5 * S
    assert webhook.event_types == ["com.example.*"]
    assert rabbit.type == "rabbitmq"
    assert rabbit.exchange == "flowkeeper.events"
    assert rabbit.routing_key == "events"
    assert rabbit.timeout == 10 * S
    for shown in (repr(outbox), str(outbox), rabbit.safe_url):
        assert PASSWORD not in shown
    assert "amqp://app:***@mq:5672/prod" in repr(rabbit)


def test_outbox_sinks_from_the_environment() -> None:
    sinks = [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9000/in"}]
    env = {"FLOWKEEPER__OUTBOX_PROCESSOR__SINKS": json.dumps(sinks)}
    [sink] = load_settings(env=env).outbox_processor.sinks
    assert sink.name == "hook"
    assert sink.type == "webhook"
    assert sink.secret is None


@pytest.mark.parametrize(
    ("sinks", "expected"),
    [
        ([{"name": "a", "type": "webhook", "url": "https://x"}, {"name": "a", "type": "rabbitmq",
          "url": "amqp://h"}], "outbox_processor.sinks: sink names must be unique: 'a' is used twice"),
        ([{"name": "a", "type": "kafka"}], "outbox_processor.sinks[0]: Input tag 'kafka'"),
        ([{"name": "a", "type": "webhook"}], "outbox_processor.sinks[0].webhook.url: Field required"),
        ([{"name": "a", "type": "webhook", "url": "ftp://x"}],
         "outbox_processor.sinks[0].webhook.url: must be an http:// or https:// URL"),
        ([{"name": "a", "type": "rabbitmq", "url": f"http://u:{PASSWORD}@h"}],
         "outbox_processor.sinks[0].rabbitmq.url: must be an amqp:// or amqps:// URL"),
        ([{"name": "no spaces", "type": "webhook", "url": "https://x"}],
         "outbox_processor.sinks[0].webhook.name"),
        ([{"name": "a", "type": "webhook", "url": "https://x", "timeout": "2m"}],
         "outbox_processor: claim_timeout (0:01:00) must be longer than every sink's timeout (0:02:00)"),
        ([{"name": "a", "type": "webhook", "url": "https://x", "colour": "red"}],
         "outbox_processor.sinks[0].webhook.colour: unknown setting"),
    ],
)  # fmt: skip
def test_bad_outbox_sinks_name_the_key(sinks: list[dict[str, Any]], expected: str) -> None:
    message = config_error({"FLOWKEEPER__OUTBOX_PROCESSOR__SINKS": json.dumps(sinks)})
    assert expected in message
    assert PASSWORD not in message


def test_webhook_secrets_are_never_echoed() -> None:
    sinks = [{"name": "a", "type": "webhook", "url": "https://x", "secret": 12}]
    message = config_error({"FLOWKEEPER__OUTBOX_PROCESSOR__SINKS": json.dumps(sinks)})
    assert "outbox_processor.sinks[0].webhook.secret" in message
    assert "12" not in message.replace("[0]", "")
