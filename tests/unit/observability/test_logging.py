"""configure_logging: the guide's console and file templates, JSON lines, levels, rotation."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import re
from datetime import datetime
from pathlib import Path

import pytest
import structlog

from flowkeeper.config import LoggingSettings
from flowkeeper.observability import configure_logging
from flowkeeper.observability.logging import (
    ACTIVITY_IO_LOGGER,
    DETAIL_LOGGER,
    TRANSITIONS_LOGGER,
    level_letters,
    rolled_file_name,
)

# 2024-05-01 12:34:56.789 UTC
FIXED = datetime.fromisoformat("2024-05-01T12:34:56.789+00:00").timestamp()


def emit(name: str, level: int, message: str, *args: object, **extra: object) -> None:
    """Log through the logging machinery with a fixed creation time."""
    logger = logging.getLogger(name)
    record = logger.makeRecord(name, level, __file__, 1, message, args, None, extra=extra or None)
    record.created = FIXED
    record.msecs = 789.0
    logger.handle(record)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_console_lines_follow_the_guide_template_exactly(log_stream: io.StringIO) -> None:
    configure_logging(LoggingSettings(), stream=log_stream)
    emit(
        "flowkeeper.runtime",
        logging.WARNING,
        "Concurrency conflict on instance %s: another worker owns it now",
        "i-1",
    )
    local = datetime.fromtimestamp(FIXED).strftime("%H:%M:%S")
    assert lines(log_stream) == [
        f"[{local} WRN] flowkeeper.runtime: Concurrency conflict on instance i-1: another worker owns it now"
    ]


@pytest.mark.parametrize(
    ("level", "letters"),
    [(logging.DEBUG, "DBG"), (logging.INFO, "INF"), (logging.WARNING, "WRN"), (logging.ERROR, "ERR"),
     (logging.CRITICAL, "FTL")],
)  # fmt: skip
def test_levels_are_three_upper_case_letters(level: int, letters: str, log_stream: io.StringIO) -> None:
    configure_logging(LoggingSettings(level="DEBUG", overrides={"app": "DEBUG"}), stream=log_stream)
    logging.getLogger("app").log(level, "message")
    assert re.fullmatch(rf"\[\d\d:\d\d:\d\d {letters}\] app: message", log_stream.getvalue().strip())
    assert level_letters(level) == letters


def test_an_exception_follows_its_line_and_properties_stay_off_the_console(log_stream: io.StringIO) -> None:
    configure_logging(LoggingSettings(), stream=log_stream)
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("app").exception("it failed", extra={"workflow_id": "w-1"})
    first, *rest = lines(log_stream)
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d ERR\] app: it failed", first)
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: bad value"
    assert "w-1" not in log_stream.getvalue()


def test_json_format_writes_one_object_per_line_with_bound_fields(log_stream: io.StringIO) -> None:
    configure_logging(LoggingSettings(format="json"), stream=log_stream)
    emit("flowkeeper.engine", logging.INFO, "Activity %s done", "/do/0/a", workflow_id="w-1", duration_ms=12)
    structlog.contextvars.bind_contextvars(request_id="r-9")
    try:
        structlog.get_logger("flowkeeper.api").warning("request %s", "GET /x", status=503)
    finally:
        structlog.contextvars.clear_contextvars()
    first, second = (json.loads(line) for line in lines(log_stream))
    assert first == {
        "timestamp": "2024-05-01T12:34:56.789Z",
        "level": "info",
        "logger": "flowkeeper.engine",
        "message": "Activity /do/0/a done",
        "workflow_id": "w-1",
        "duration_ms": 12,
    }
    assert {k: second[k] for k in ("level", "logger", "message", "status", "request_id")} == {
        "level": "warning",
        "logger": "flowkeeper.api",
        "message": "request GET /x",
        "status": 503,
        "request_id": "r-9",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", second["timestamp"])


def test_json_format_carries_the_exception_as_a_field(log_stream: io.StringIO) -> None:
    configure_logging(LoggingSettings(format="json"), stream=log_stream)
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("app").exception("lookup failed")
    [line] = lines(log_stream)
    event = json.loads(line)
    assert event["message"] == "lookup failed"
    assert event["level"] == "error"
    assert event["exception"].startswith("Traceback (most recent call last):")
    assert event["exception"].endswith("KeyError: 'k'")


def test_the_file_sink_uses_the_guide_file_template(tmp_path: Path, log_stream: io.StringIO) -> None:
    path = tmp_path / "logs" / "workflow-.log"
    configure_logging(LoggingSettings(file_path=str(path)), stream=log_stream)
    emit("flowkeeper.engine", logging.INFO, "Successfully completed %s", "x", workflow_id="w-1", status=200)
    [line] = path.read_text(encoding="utf-8").splitlines()
    at = datetime.fromtimestamp(FIXED).astimezone()
    offset = at.strftime("%z")
    stamp = f"{at:%Y-%m-%d %H:%M:%S}.789 {offset[:3]}:{offset[3:]}"
    properties = '{"workflow_id": "w-1", "status": 200}'
    assert line == f"{stamp} [INF] flowkeeper.engine: Successfully completed x {properties}"
    # The console still gets its own template.
    assert lines(log_stream)[0].endswith("] flowkeeper.engine: Successfully completed x")


def test_the_file_sink_without_properties_writes_an_empty_object(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    path = tmp_path / "flowkeeper.log"
    configure_logging(LoggingSettings(file_path=str(path)), stream=log_stream)
    logging.getLogger("app").warning("plain")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d\d:\d\d \[WRN\] app: plain \{\}\n",
        path.read_text(encoding="utf-8"),
    )


def test_the_file_rolls_daily_and_keeps_the_configured_number_of_files(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    path = tmp_path / "workflow-.log"
    configure_logging(LoggingSettings(file_path=str(path), retained_file_count_limit=2), stream=log_stream)
    [handler] = [
        h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.TimedRotatingFileHandler)
    ]
    assert (handler.when, handler.interval, handler.backupCount) == ("MIDNIGHT", 86400, 2)
    # Three old days already on disk; rolling over adds one and leaves the newest two.
    for day in ("2020-01-01", "2020-01-02", "2020-01-03"):
        (tmp_path / f"workflow-.{day}.log").write_text(f"{day}\n", encoding="utf-8")
    logging.getLogger("app").warning("today")
    handler.doRollover()
    logging.getLogger("app").warning("after the roll")
    rolled = sorted(p.name for p in tmp_path.iterdir() if p.name != "workflow-.log")
    assert len(rolled) == 2
    assert "workflow-.2020-01-03.log" in rolled
    assert all(re.fullmatch(r"workflow-\.\d{4}-\d\d-\d\d\.log", name) for name in rolled)
    assert "after the roll" in path.read_text(encoding="utf-8")


def test_rolled_file_names_keep_the_suffix_last() -> None:
    assert (
        rolled_file_name("/var/log/workflow/workflow-.log.2024-05-01")
        == "/var/log/workflow/workflow-.2024-05-01.log"
    )
    assert rolled_file_name("/tmp/flowkeeper.log.2024-05-01") == "/tmp/flowkeeper.2024-05-01.log"
    assert rolled_file_name("/tmp/noext.2024-05-01") == "/tmp/noext.2024-05-01"


def test_overrides_set_per_logger_levels(log_stream: io.StringIO) -> None:
    settings = LoggingSettings(level="INFO", overrides={"noisy": "ERROR", "flowkeeper.engine": "DEBUG"})
    configure_logging(settings, stream=log_stream)
    logging.getLogger("noisy.child").warning("hidden: below the noisy override")
    logging.getLogger("noisy").error("shown: noisy error")
    logging.getLogger("sqlalchemy.engine").info("hidden: default sqlalchemy override is WARNING")
    logging.getLogger("flowkeeper.runtime").debug("hidden: flowkeeper stays INFO")
    logging.getLogger("flowkeeper.engine").debug("shown: engine debug")
    logging.getLogger("other").info("shown: root level")
    logging.getLogger("other").debug("hidden: below root level")
    messages = [line.split(": ", 1)[1] for line in lines(log_stream)]
    assert messages == ["shown: noisy error", "shown: engine debug", "shown: root level"]


def test_debug_mode_flags_switch_their_loggers_to_debug_and_an_override_wins(log_stream: io.StringIO) -> None:
    configure_logging(LoggingSettings(), stream=log_stream)
    assert not logging.getLogger(TRANSITIONS_LOGGER).isEnabledFor(logging.DEBUG)
    settings = LoggingSettings(
        log_state_transitions=True,
        log_activity_input_output=True,
        enable_detailed_logging=True,
        overrides={DETAIL_LOGGER: "INFO"},
    )
    configure_logging(settings, stream=log_stream)
    assert logging.getLogger(TRANSITIONS_LOGGER).isEnabledFor(logging.DEBUG)
    assert logging.getLogger(ACTIVITY_IO_LOGGER).isEnabledFor(logging.DEBUG)
    assert not logging.getLogger(DETAIL_LOGGER).isEnabledFor(logging.DEBUG)
    configure_logging(LoggingSettings(), stream=log_stream)  # switched off again
    assert not logging.getLogger(TRANSITIONS_LOGGER).isEnabledFor(logging.DEBUG)


def test_configuring_again_replaces_the_handlers(log_stream: io.StringIO) -> None:
    other = io.StringIO()
    configure_logging(LoggingSettings(), stream=other)
    configure_logging(LoggingSettings(), stream=log_stream)
    logging.getLogger("app").warning("once")
    assert other.getvalue() == ""
    assert len(lines(log_stream)) == 1


def test_logs_go_to_stderr_never_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings())
    logging.getLogger("app").warning("to stderr")
    structlog.get_logger("app").warning("structlog too")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "app: to stderr" in captured.err
    assert "app: structlog too" in captured.err
