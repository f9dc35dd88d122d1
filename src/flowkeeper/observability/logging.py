"""Logging: structlog's processors formatting stdlib ``logging`` records, the guide's templates.

``configure_logging(settings)`` installs on the root logger:

- a stream handler (stderr by default), ``format: console`` with the guide's console
  template ``[HH:mm:ss LVL] source: message`` (+ the exception on the next lines), or
  ``format: json``: one JSON object per line with ``timestamp`` (ISO 8601 UTC,
  milliseconds), ``level``, ``logger``, ``message``, every bound field, and
  ``exception`` when there is one;
- with ``file_path``, a file rolled over daily at midnight keeping
  ``retained_file_count_limit`` old files, in the guide's file template
  ``yyyy-MM-dd HH:mm:ss.fff zzz [LVL] source: message {properties as JSON}``.
  Rolled files are named ``<stem>.<yyyy-mm-dd><suffix>`` (``workflow-.log`` rolls to
  ``workflow-.2024-05-01.log``), so the guide's ``grep … workflow-*.log`` finds them all.

``LVL`` is Serilog's three letters: ``DBG INF WRN ERR FTL``. ``source`` is the logger name.
The level is ``settings.level`` with per-logger ``overrides`` (a logger and its children).
The debug-mode flags switch on DEBUG for the loggers the :class:`LoggingInterceptor`
writes them to (``flowkeeper.engine.transitions``, ``.activity_io``, ``.detail``); an
override naming one of those wins.

Plain ``logging.getLogger(...)`` calls and ``structlog.get_logger(...)`` both end up
here; ``extra={...}`` fields and ``structlog.contextvars`` bindings become properties.
Every event goes through a :class:`~flowkeeper.observability.redaction.Redactor` last:
secrets never reach a sink.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from flowkeeper.config import LoggingSettings
from flowkeeper.observability.redaction import MASK, Redactor, is_sensitive_key

#: Loggers the debug-mode flags switch to DEBUG (see ``LoggingInterceptor``).
TRANSITIONS_LOGGER = "flowkeeper.engine.transitions"
ACTIVITY_IO_LOGGER = "flowkeeper.engine.activity_io"
DETAIL_LOGGER = "flowkeeper.engine.detail"

_U3 = {logging.DEBUG: "DBG", logging.INFO: "INF", logging.WARNING: "WRN", logging.ERROR: "ERR",
       logging.CRITICAL: "FTL"}  # fmt: skip
# Keys of the event dict that are not properties ("message" and "asctime" are what another
# handler's formatter may have left on a record before ours saw it).
_RESERVED = frozenset(
    {"event", "level", "logger", "timestamp", "exception", "exc_info", "stack_info", "stack",
     "positional_args", "_record", "_from_structlog", "message", "asctime"}
)  # fmt: skip
_HANDLER_MARK = "_flowkeeper_handler"

# Loggers whose level configure_logging set, so a second call starts clean.
_configured_levels: set[str] = set()


def level_letters(levelno: int) -> str:
    """Serilog's ``{Level:u3}``: ``DBG INF WRN ERR FTL`` (the nearest level below for others)."""
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _U3[threshold]
    return "DBG"


def configure_logging(
    settings: LoggingSettings,
    *,
    stream: TextIO | None = None,
    secret_values: Iterable[Any] = (),
) -> None:
    """Route every log record of the process through the configured sinks (see module doc).

    ``stream`` defaults to ``sys.stderr`` (logs never go to stdout). ``secret_values``
    (e.g. the loaded workflow secrets) are masked wherever they appear. Calling it again
    replaces what an earlier call installed.
    """
    reset_logging()
    redactor = Redactor(secret_values)
    console = _stream_renderer(settings.format)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_formatter(console, redactor))
    handlers: list[logging.Handler] = [handler]
    if settings.file_path:
        handlers.append(_file_handler(settings.file_path, settings.retained_file_count_limit, redactor))
    root = logging.getLogger()
    for h in handlers:
        setattr(h, _HANDLER_MARK, True)
        root.addHandler(h)
    root.setLevel(settings.level)
    levels = dict.fromkeys(_flag_loggers(settings), "DEBUG")
    levels.update(settings.overrides)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
        _configured_levels.add(name)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.PositionalArgumentsFormatter(),
            add_trace_context,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Remove (and close) the handlers ``configure_logging`` installed and undo its levels."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    for name in _configured_levels:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _configured_levels.clear()
    structlog.reset_defaults()


def _flag_loggers(settings: LoggingSettings) -> list[str]:
    names = []
    if settings.log_state_transitions:
        names.append(TRANSITIONS_LOGGER)
    if settings.log_activity_input_output:
        names.append(ACTIVITY_IO_LOGGER)
    if settings.enable_detailed_logging:
        names.append(DETAIL_LOGGER)
    return names


def _formatter(renderer: Processor, redactor: Redactor) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.ExtraAdder(),
            add_trace_context,
        ],
        processors=[structlog.processors.format_exc_info, _Mask(redactor), renderer],
    )


def _file_handler(path: str, keep: int, redactor: Redactor) -> logging.Handler:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.TimedRotatingFileHandler(
        path, when="midnight", backupCount=keep, encoding="utf-8", delay=True
    )
    handler.namer = rolled_file_name
    handler.setFormatter(_formatter(render_file, redactor))
    return handler


def rolled_file_name(default_name: str) -> str:
    """``dir/workflow-.log.2024-05-01`` -> ``dir/workflow-.2024-05-01.log`` (the stdlib's
    retention still finds it: it looks for ``<stem>.<date>`` in names)."""
    base, _, date = default_name.rpartition(".")
    stem, suffix = os.path.splitext(base)
    if not suffix or not date[:1].isdigit():
        return default_name
    return f"{stem}.{date}{suffix}"


# -- processors ------------------------------------------------------------------------------


class _Mask:
    """Masks secrets in the message, the exception text and every property (last but one)."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        for key, value in list(event_dict.items()):
            if key in _META:
                continue
            if not isinstance(value, _PLAIN):
                value = str(value)  # an object's repr may carry secrets too: mask it as text
            if key not in _RESERVED and is_sensitive_key(key) and value not in (None, ""):
                event_dict[key] = MASK
            else:
                event_dict[key] = self.redactor.value(value)
        return event_dict


_META = frozenset({"_record", "_from_structlog", "exc_info"})
_PLAIN = (str, int, float, bool, type(None), dict, list, tuple)


def add_trace_context(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """``trace_id``/``span_id`` of the current sampled span, if OpenTelemetry is loaded at all."""
    if "opentelemetry.trace" not in sys.modules:  # never import it just for logging
        return event_dict
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def _parts(event_dict: EventDict) -> tuple[datetime, int, str, str, dict[str, Any], str | None]:
    """(local time, level number, source, message, properties, exception text) of an event."""
    record: logging.LogRecord | None = event_dict.get("_record")
    created = record.created if record is not None else datetime.now(UTC).timestamp()
    levelno = record.levelno if record is not None else logging.INFO
    source = record.name if record is not None else str(event_dict.get("logger", "root"))
    message = str(event_dict.get("event", ""))
    properties = {k: v for k, v in event_dict.items() if k not in _RESERVED}
    exception = event_dict.get("exception")
    stack = event_dict.get("stack_info")
    if isinstance(stack, str):
        exception = f"{exception}\n{stack}" if exception else stack
    return datetime.fromtimestamp(created).astimezone(), levelno, source, message, properties, exception


def render_console(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    """``[HH:mm:ss LVL] source: message`` (+ exception)."""
    at, levelno, source, message, _, exception = _parts(event_dict)
    line = f"[{at:%H:%M:%S} {level_letters(levelno)}] {source}: {message}"
    return f"{line}\n{exception}" if exception else line


def render_file(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    """``yyyy-MM-dd HH:mm:ss.fff zzz [LVL] source: message {properties}`` (+ exception)."""
    at, levelno, source, message, properties, exception = _parts(event_dict)
    offset = at.strftime("%z")
    zone = f"{offset[:3]}:{offset[3:]}" if offset else "+00:00"
    stamp = f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} {zone}"
    line = f"{stamp} [{level_letters(levelno)}] {source}: {message} {_json(properties)}"
    return f"{line}\n{exception}" if exception else line


def render_json(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    """One JSON object: timestamp, level, logger, message, properties (+ exception)."""
    at, levelno, source, message, properties, exception = _parts(event_dict)
    out: MutableMapping[str, Any] = {
        "timestamp": at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": logging.getLevelName(levelno).lower(),
        "logger": source,
        "message": message,
    }
    for key, value in properties.items():
        out.setdefault(key, value)
    if exception:
        out["exception"] = exception
    return _json(out)


def _stream_renderer(kind: str) -> Processor:
    return render_json if kind == "json" else render_console


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
