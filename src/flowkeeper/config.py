"""Flowkeeper's settings: one typed model, read once at start-up by ``load_settings``.

Sources, from lowest to highest precedence:

1. Defaults: the operations guide's values (``Settings()`` gives exactly these).
2. A YAML (``.yaml``/``.yml``) or JSON (``.json``) file: the ``config_file`` argument
   (the CLI's ``--config``), else the path in ``FLOWKEEPER_CONFIG``. Keys may be
   snake_case, camelCase or the guide's PascalCase, and may sit inside a top-level
   ``WorkflowEngine`` block, so the guide's snippets can be pasted as they are.
3. Environment variables ``FLOWKEEPER__SECTION__KEY``: case-insensitive, one ``__`` per
   level (``FLOWKEEPER__OUTBOX_PROCESSOR__BATCH_SIZE=100``,
   ``FLOWKEEPER__RESILIENCE__EXTERNAL_CALLS__TIMEOUT=PT1M``); a value starting with
   ``[`` or ``{`` is read as JSON (``FLOWKEEPER__CORS__ALLOWED_ORIGINS='["https://a"]'``).

Unknown keys, in the file or the environment, are errors. Every error is a
``ConfigurationError`` naming the key path, e.g.
``outbox_processor.batch_size: must be greater than 0 (got -1)``. Durations accept the
forms of ``flowkeeper.durations.parse_duration`` (``00:00:10``, ``PT10S``, ``10s``, ...).

Secrets used by workflows are not settings: ``SecretsSettings.load`` reads them from
``FLOWKEEPER_SECRET_<NAME>`` variables and from files. Passwords in database and Redis
URLs are masked in ``repr``/``str`` and in error messages; ``auth.jwt_secret`` is a
``SecretStr``. ``model_dump()`` does return them in clear: never print it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flowkeeper import hosts
from flowkeeper.config_sources import (
    ENV_PREFIX as ENV_PREFIX,  # re-exported
)
from flowkeeper.config_sources import (
    deep_merge,
    describe,
    env_overrides,
    read_file,
    snake,
)
from flowkeeper.config_sources import mask_url as mask_url  # re-exported
from flowkeeper.durations import Duration, PositiveDuration
from flowkeeper.durations import parse_duration as parse_duration  # re-exported
from flowkeeper.errors import ConfigurationError

CONFIG_FILE_ENV = "FLOWKEEPER_CONFIG"

_S = timedelta(seconds=1)
_DAY = timedelta(days=1)
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The guide writes Serilog level names; accept them alongside Python's.
_LEVEL_ALIASES = {"information": "INFO", "verbose": "DEBUG", "trace": "DEBUG", "warn": "WARNING",
                  "fatal": "CRITICAL"}  # fmt: skip
_DEFAULT_LOG_OVERRIDES = {
    "flowkeeper": "INFO",
    "uvicorn": "WARNING",
    "sqlalchemy": "WARNING",
    "alembic": "WARNING",
}


def _log_level(value: object) -> str:
    name = str(value).strip()
    level = _LEVEL_ALIASES.get(name.lower(), name.upper())
    if level not in _LEVELS:
        raise ValueError(f"unknown log level {value!r}; use {', '.join(_LEVELS)}")
    return level


LogLevel = Annotated[str, BeforeValidator(_log_level)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if isinstance(value, str) else value


class DatabaseSettings(_Section):
    """Where instances live. ``url``: ``sqlite[+aiosqlite]://`` or ``postgres[ql][+asyncpg]://``."""

    url: str = "sqlite+aiosqlite:///./flowkeeper.db"
    min_pool_size: int = Field(default=10, ge=0)
    max_pool_size: int = Field(default=100, gt=0)
    connect_timeout: PositiveDuration = 30 * _S
    command_timeout: PositiveDuration = 60 * _S
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _supported_url(cls, url: str) -> str:
        _async_url(url)
        return url

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.min_pool_size > self.max_pool_size:
            pools = f"({self.min_pool_size} > {self.max_pool_size})"
            raise ValueError(f"min_pool_size must not exceed max_pool_size {pools}")
        return self

    @property
    def async_url(self) -> str:
        """The URL with the async driver SQLAlchemy needs (``+aiosqlite`` / ``+asyncpg``)."""
        return _async_url(self.url)

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return mask_url(self.url)

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        """Which database family the URL names."""
        return "sqlite" if self.async_url.startswith("sqlite") else "postgresql"


def _async_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    kind = scheme.lower()
    if sep and kind in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite+aiosqlite://" + rest
    if sep and kind in ("postgresql", "postgres", "postgresql+asyncpg"):
        return "postgresql+asyncpg://" + rest
    shown = repr(scheme) if sep else "(none)"
    raise ValueError(f"unsupported database URL scheme {shown}; use sqlite:///path or postgresql://host/db")


class _SinkSettings(_Section):
    """What every sink has: a unique name, the event types it takes, a delivery timeout."""

    #: Recorded in each outbox row's ``delivered_to`` and used as a metrics label:
    #: renaming a sink makes rows delivered before look undelivered to it.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    #: CloudEvent types this sink receives (shell-style wildcards, e.g. ``com.example.*``);
    #: empty: every event.
    event_types: list[str] = Field(default_factory=list)
    timeout: PositiveDuration = 10 * _S


class WebhookSinkSettings(_SinkSettings):
    """POST each event (structured CloudEvent JSON) to ``url``; signed when ``secret`` is set.

    Signatures follow Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature: v1,<base64 HMAC-SHA256>``). A secret written ``whsec_<base64>``
    is used base64-decoded, as that standard writes secrets; any other text as its UTF-8 bytes.
    """

    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.lower().startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
            raise ValueError("must be an http:// or https:// URL")
        return url


class RabbitMqSinkSettings(_SinkSettings):
    """Publish each event to a durable topic ``exchange`` (declared on connect), persistent and confirmed."""

    type: Literal["rabbitmq"]
    #: ``amqp[s]://user:password@host:port/vhost``; its password is masked wherever shown.
    url: str
    exchange: str = Field(default="flowkeeper.events", min_length=1, max_length=255)
    #: Default: the event's ``type``.
    routing_key: str | None = Field(default=None, max_length=255)

    @field_validator("url")
    @classmethod
    def _amqp_url(cls, url: str) -> str:
        if not url.lower().startswith(("amqp://", "amqps://")):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return url

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return mask_url(self.url)


SinkSettings = Annotated[WebhookSinkSettings | RabbitMqSinkSettings, Field(discriminator="type")]
"""One external sink of emitted events, by ``type``: ``webhook`` or ``rabbitmq``."""


class OutboxProcessorSettings(_Section):
    """Delivery of outbox rows (events emitted by workflows) to the external ``sinks``.

    A failed delivery is retried after ``min(max_retry_delay, retry_delay_base *
    retry_delay_multiplier ** (attempts - 1))``; after ``max_retry_attempts`` attempts
    (at least one) the row is dead, until re-queued. A claimed row that is not settled
    within ``claim_timeout`` (its processor crashed) is claimed again by any processor.
    """

    batch_size: int = Field(default=50, gt=0)
    processing_interval: PositiveDuration = 10 * _S
    max_retry_attempts: int = Field(default=5, ge=0)
    retry_delay_multiplier: float = Field(default=2.0, ge=1)
    max_retry_delay: PositiveDuration = 30 * _S
    retry_delay_base: PositiveDuration = _S
    claim_timeout: PositiveDuration = 60 * _S
    sinks: list[SinkSettings] = Field(default_factory=list)

    @field_validator("sinks", mode="before")
    @classmethod
    def _sink_keys(cls, value: Any) -> Any:
        # The loader normalises keys (camelCase, PascalCase) down through models only;
        # the items of this list are models it cannot see through.
        if not isinstance(value, list):
            return value
        return [
            {snake(str(k)): v for k, v in item.items()} if isinstance(item, Mapping) else item
            for item in value
        ]

    @field_validator("sinks")
    @classmethod
    def _unique_names(cls, sinks: list[WebhookSinkSettings | RabbitMqSinkSettings]) -> list[Any]:
        seen: set[str] = set()
        for sink in sinks:
            if sink.name in seen:
                raise ValueError(f"sink names must be unique: {sink.name!r} is used twice")
            seen.add(sink.name)
        return sinks

    @model_validator(mode="after")
    def _claim_outlasts_deliveries(self) -> OutboxProcessorSettings:
        # A claim running out while its delivery is still going would hand the row to
        # another processor: a duplicate for every slow delivery.
        slowest = max((s.timeout for s in self.sinks), default=None)
        if slowest is not None and self.claim_timeout <= slowest:
            raise ValueError(
                f"claim_timeout ({self.claim_timeout}) must be longer than every sink's timeout ({slowest})"
            )
        return self


class TimerServiceSettings(_Section):
    """Firing of due timers."""

    batch_size: int = Field(default=100, gt=0)
    processing_interval: PositiveDuration = 30 * _S
    long_running_threshold: PositiveDuration = _DAY


class CleanupServiceSettings(_Section):
    """Deletion of old rows."""

    processing_interval: PositiveDuration = 2 * 3600 * _S
    #: Rows deleted per statement (one short transaction each), so a pass never holds
    #: locks on a large part of a table at once.
    batch_size: int = Field(default=1000, gt=0)
    completed_workflow_retention: PositiveDuration = 90 * _DAY
    execution_log_retention: PositiveDuration = 365 * _DAY
    outbox_event_retention: PositiveDuration = 7 * _DAY


class RetrySettings(_Section):
    """Exponential back-off: ``delay_base * delay_multiplier ** (attempt - 1)``."""

    max_attempts: int = Field(default=3, ge=1)
    delay_base: Duration = 100 * _S / 1000
    delay_multiplier: float = Field(default=2.0, ge=1)


class ExternalRetrySettings(RetrySettings):
    """``RetrySettings`` with the guide's defaults for external calls."""

    # Own class rather than a default instance, so that a file setting only
    # ``max_attempts`` keeps these defaults instead of the database ones.
    delay_base: Duration = _S
    delay_multiplier: float = Field(default=1.5, ge=1)


class CircuitBreakerSettings(_Section):
    """Opens when ``failure_threshold`` of at least ``minimum_throughput`` calls in the window fail."""

    failure_threshold: float = Field(default=0.5, gt=0, le=1)
    minimum_throughput: int = Field(default=10, ge=1)
    sampling_duration: PositiveDuration = 60 * _S
    break_duration: PositiveDuration = 30 * _S


class DatabaseOperationsSettings(_Section):
    """Retry and timeout of database calls."""

    retry: RetrySettings = RetrySettings()
    timeout: PositiveDuration = 30 * _S


class ExternalCallsSettings(_Section):
    """Retry, circuit breaker and timeout of calls leaving the process (HTTP, functions)."""

    retry: ExternalRetrySettings = ExternalRetrySettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    timeout: PositiveDuration = 120 * _S


class ResilienceSettings(_Section):
    """Retry, timeout and circuit-breaker policies for database and external calls."""

    database_operations: DatabaseOperationsSettings = DatabaseOperationsSettings()
    external_calls: ExternalCallsSettings = ExternalCallsSettings()


class LoggingSettings(_Section):
    """Log level, format and sinks; the last three flags are the guide's Debug Mode."""

    level: LogLevel = "INFO"
    format: Literal["console", "json"] = "console"
    file_path: str | None = None
    retained_file_count_limit: int = Field(default=30, ge=1)
    overrides: dict[str, LogLevel] = Field(default_factory=lambda: dict(_DEFAULT_LOG_OVERRIDES))
    enable_detailed_logging: bool = False
    log_activity_input_output: bool = False
    log_state_transitions: bool = False

    @field_validator("overrides")
    @classmethod
    def _keep_default_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        # Tuning one logger must not silently un-quiet the noisy ones.
        return {**_DEFAULT_LOG_OVERRIDES, **value}


class AuthSettings(_Section):
    """JWT bearer authentication of the REST API (off by default)."""

    enabled: bool = False
    authority: str | None = None
    audience: str = "workflow-api"
    require_https_metadata: bool = True
    jwt_secret: SecretStr | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "HS256"], min_length=1)

    @model_validator(mode="after")
    def _usable(self) -> AuthSettings:
        if self.enabled and self.authority is None and self.jwt_secret is None:
            raise ValueError("enabled needs authority (OIDC issuer) or jwt_secret")
        if self.authority and self.require_https_metadata and not self.authority.startswith("https://"):
            raise ValueError("authority must be https:// while require_https_metadata is true")
        return self


class CorsSettings(_Section):
    """Cross-origin access to the REST API; no origin is allowed by default."""

    allowed_origins: list[str] = Field(default_factory=list)
    allowed_headers: list[str] = Field(default_factory=lambda: ["Content-Type", "Authorization"])
    allowed_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "PUT", "DELETE"])


class RateLimitSettings(_Section):
    """Per-client request limit of the REST API (off by default)."""

    enabled: bool = False
    requests_per_minute: int = Field(default=600, gt=0)
    burst: int = Field(default=100, gt=0)


class CacheSettings(_Section):
    """Definition cache in process; ``redis_url`` adds a shared one."""

    definition_cache_size: int = Field(default=1000, ge=0)
    definition_cache_ttl: PositiveDuration = 30 * 60 * _S
    redis_url: str | None = None
    instance_name: str = "flowkeeper"


class EngineSettings(_Section):
    """Workers: leases on instances, concurrency, polling."""

    worker_id: str | None = None
    lease_duration: PositiveDuration = 30 * _S
    concurrency: int = Field(default=64, gt=0)
    poll_interval: PositiveDuration = _S
    runtime_name: str = "flowkeeper"
    #: Python modules imported at start-up so that their ``@function`` decorators register
    #: custom functions (besides the ``flowkeeper.functions`` entry points).
    function_modules: list[str] = Field(default_factory=list)

    def effective_worker_id(self) -> str:
        """``worker_id``, else ``<hostname>-<pid>`` (unique per process on a host)."""
        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}"


class HttpSettings(_Section):
    """Outbound HTTP from workflows. ``timeout`` None means ``resilience.external_calls.timeout``.

    Host patterns: a host name (``api.example.com``), a wildcard (``*.example.com``:
    any subdomain, not the apex), an IP address or a CIDR range (``10.0.0.0/8``).
    """

    timeout: PositiveDuration | None = None
    connect_timeout: PositiveDuration = 10 * _S
    max_redirects: int = Field(default=10, ge=0)
    verify_tls: bool = True
    allow_hosts: list[str] = Field(default_factory=list)
    deny_hosts: list[str] = Field(default_factory=lambda: ["169.254.169.254"])

    @field_validator("allow_hosts", "deny_hosts")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        return hosts.check_patterns(patterns)

    def is_destination_allowed(self, host: str) -> bool:
        """May a workflow call ``host``? Deny wins; a non-empty allow list must match.

        Pure: names are not resolved. An IP pattern only matches a host written as an
        IP (legacy forms like ``2852039166`` included), so callers must also check the
        address a name resolves to.
        """
        return hosts.is_allowed(host, self.allow_hosts, self.deny_hosts)


class ProcessesSettings(_Section):
    """``run: shell`` and ``run: script`` are off unless enabled: they run code on the host."""

    shell_enabled: bool = False
    script_enabled: bool = False
    timeout: PositiveDuration = 60 * _S
    python_executable: str = Field(default_factory=lambda: sys.executable)
    node_executable: str | None = None

    def resolve_node_executable(self) -> str | None:
        """``node_executable``, else ``node`` found on ``PATH`` now, else None."""
        return self.node_executable or shutil.which("node")


class SecretValues(dict[str, Any]):
    """Secrets by name. Its repr shows names only, so a stray log line leaks nothing."""

    def __repr__(self) -> str:
        return f"SecretValues(names={sorted(self)!r})"

    __str__ = __repr__


class SecretsSettings(_Section):
    """Where workflow secrets (``$secrets``) come from."""

    env_prefix: str = Field(default="FLOWKEEPER_SECRET_", min_length=1)
    files_dir: str | None = None

    def load(self, env: Mapping[str, str] | None = None) -> SecretValues:
        """Read the secrets: one per file in ``files_dir``, one per ``<env_prefix><NAME>`` variable.

        A name is kept as written (file name, or the variable name after the prefix);
        a value is parsed as JSON when it is valid JSON, else kept as a string. A file's
        trailing newline is dropped. The environment wins over a file of the same name.
        """
        secrets = SecretValues()
        if self.files_dir is not None:
            folder = Path(self.files_dir)
            if not folder.is_dir():
                raise ConfigurationError(f"secrets.files_dir: not a directory: {folder}")
            # Dot-names are skipped: Kubernetes mounts keep their bookkeeping there.
            for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
                secrets[path.name] = _json_or_text(path.read_text(encoding="utf-8").rstrip("\r\n"))
        for name, value in (os.environ if env is None else env).items():
            if name.startswith(self.env_prefix) and len(name) > len(self.env_prefix):
                secrets[name[len(self.env_prefix) :]] = _json_or_text(value)
        return secrets


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class ServerSettings(_Section):
    """The HTTP listener of ``flowkeeper serve``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_size: int = Field(default=1_048_576, gt=0)
    shutdown_grace_period: Duration = 30 * _S


class EventsSettings(_Section):
    """Incoming CloudEvents."""

    #: Received events are kept this long, so that a ``listen`` reached shortly after
    #: its event arrived still gets it (and ``GET /api/v1/events`` can list them).
    retention: PositiveDuration = 3600 * _S


class Settings(BaseSettings):
    """All of Flowkeeper's settings; build it with ``load_settings``."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    database: DatabaseSettings = DatabaseSettings()
    outbox_processor: OutboxProcessorSettings = OutboxProcessorSettings()
    timer_service: TimerServiceSettings = TimerServiceSettings()
    cleanup_service: CleanupServiceSettings = CleanupServiceSettings()
    resilience: ResilienceSettings = ResilienceSettings()
    logging: LoggingSettings = LoggingSettings()
    auth: AuthSettings = AuthSettings()
    cors: CorsSettings = CorsSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    cache: CacheSettings = CacheSettings()
    engine: EngineSettings = EngineSettings()
    http: HttpSettings = HttpSettings()
    processes: ProcessesSettings = ProcessesSettings()
    secrets: SecretsSettings = SecretsSettings()
    server: ServerSettings = ServerSettings()
    events: EventsSettings = EventsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges file and environment itself: precedence lives in one
        # place, the environment can be injected, and unknown FLOWKEEPER__ variables
        # are reported (pydantic-settings ignores them).
        return (init_settings,)

    @property
    def outbound_timeout(self) -> timedelta:
        """Timeout of a workflow's HTTP call: ``http.timeout``, else the external-calls one."""
        if self.http.timeout is not None:
            return self.http.timeout
        return self.resilience.external_calls.timeout


# The guide puts its Debug Mode flags directly under WorkflowEngine.
_GUIDE_LOGGING_KEYS = ("enable_detailed_logging", "log_activity_input_output", "log_state_transitions")


def load_settings(config_file: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings: defaults, then the file, then ``FLOWKEEPER__`` variables.

    ``config_file`` defaults to ``$FLOWKEEPER_CONFIG``; ``env`` to ``os.environ``.
    Raises ``ConfigurationError`` naming the key path of every invalid or unknown setting.
    """
    environ = os.environ if env is None else env
    path = config_file if config_file is not None else environ.get(CONFIG_FILE_ENV) or None
    data = read_file(Path(path), Settings, _GUIDE_LOGGING_KEYS) if path is not None else {}
    overrides, sources = env_overrides(environ)
    deep_merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        # "from None": the pydantic error would print input values, passwords included.
        raise ConfigurationError(describe(exc, sources)) from None
