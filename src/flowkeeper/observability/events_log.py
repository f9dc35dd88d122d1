"""The log lines operators grep for (the guide's "Common Log Patterns"), from runtime hooks.

Always, on the ``flowkeeper.engine`` logger:

- ERROR ``ENGINE: Critical error in workflow {namespace/name/version} instance {id}: {error type} {title}``
  when an instance ends ``failed`` (the runtime itself logs ``ENGINE: Critical error in
  instance {id}`` for an interpreter defect, and ``Concurrency conflict on instance {id}``);
- INFO ``Successfully completed execution of activity {activity id} ({kind}) of workflow {id} in {N}ms``
  for each outside effect (kind: ``http``, ``openapi``, ``function``, ``process``);
- WARNING ``External call {activity id} of workflow {id} failed: {status} {title}`` when one
  fails. Never the request, its headers, its body, or the error's detail.

With the guide's debug-mode settings (each on its own DEBUG logger, see ``configure_logging``):

- ``log_state_transitions`` (``flowkeeper.engine.transitions``): instance started, its
  status changes at checkpoints, every execution-log row (workflow and activity started,
  completed, faulted, retried …), and cancellations;
- ``log_activity_input_output`` (``flowkeeper.engine.activity_io``): what each outside
  effect sends (credentials left out) and what it returned, masked and truncated to
  ``max_payload_chars``;
- ``enable_detailed_logging`` (``flowkeeper.engine.detail``): each activity as it starts,
  and a summary of each checkpoint (row counts, never contents).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from flowkeeper.config import LoggingSettings
from flowkeeper.observability.labels import (
    effect_input,
    effect_kind,
    error_parts,
    instance_definition,
)
from flowkeeper.observability.logging import ACTIVITY_IO_LOGGER, DETAIL_LOGGER, TRANSITIONS_LOGGER
from flowkeeper.observability.redaction import mask_value
from flowkeeper.records import InstanceRecord, InstanceStatus, LogEntry
from flowkeeper.runtime.hooks import ActivityInput, CheckpointInput, Interceptor

JSON = Any

engine_log = logging.getLogger("flowkeeper.engine")
transitions_log = logging.getLogger(TRANSITIONS_LOGGER)
activity_io_log = logging.getLogger(ACTIVITY_IO_LOGGER)
detail_log = logging.getLogger(DETAIL_LOGGER)


class LoggingInterceptor(Interceptor):
    """Writes the engine's operator-facing log lines; ``settings`` holds the debug-mode flags."""

    def __init__(
        self,
        settings: LoggingSettings | None = None,
        *,
        max_payload_chars: int = 4096,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        settings = settings if settings is not None else LoggingSettings()
        self.state_transitions = settings.log_state_transitions
        self.activity_input_output = settings.log_activity_input_output
        self.detailed = settings.enable_detailed_logging
        self.max_payload_chars = max_payload_chars
        self.clock = clock

    # -- activities --------------------------------------------------------------------------
    async def execute_activity(
        self, input: ActivityInput, next: Callable[[ActivityInput], Awaitable[JSON]]
    ) -> JSON:
        effect = input.effect
        kind = effect_kind(effect)
        fields = {"workflow_id": input.instance_id, "definition": input.definition,
                  "activity_id": effect.activity_id, "activity_type": kind}  # fmt: skip
        if self.detailed:
            detail_log.debug(
                "Executing activity %s (%s) of workflow %s", effect.activity_id, kind, input.instance_id,
                extra=fields,
            )  # fmt: skip
        if self.activity_input_output:
            activity_io_log.debug(
                "Activity %s (%s) of workflow %s input: %s",
                effect.activity_id, kind, input.instance_id, self._payload(effect_input(effect)),
                extra=fields,
            )  # fmt: skip
        started = self.clock()
        try:
            result = await next(input)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error_type, status, title = error_parts(exc)
            engine_log.warning(
                "External call %s of workflow %s failed: %s %s",
                effect.activity_id, input.instance_id, status, title,
                extra={**fields, "error_type": error_type, "status": status,
                       "duration_ms": self._elapsed_ms(started)},
            )  # fmt: skip
            raise
        elapsed = self._elapsed_ms(started)
        engine_log.info(
            "Successfully completed execution of activity %s (%s) of workflow %s in %dms",
            effect.activity_id, kind, input.instance_id, elapsed,
            extra={**fields, "duration_ms": elapsed},
        )  # fmt: skip
        if self.activity_input_output:
            activity_io_log.debug(
                "Activity %s (%s) of workflow %s output: %s",
                effect.activity_id, kind, input.instance_id, self._payload(result),
                extra=fields,
            )  # fmt: skip
        return result

    # -- checkpoints and instance events -------------------------------------------------------
    async def write_checkpoint(
        self, input: CheckpointInput, next: Callable[[CheckpointInput], Awaitable[InstanceRecord]]
    ) -> InstanceRecord:
        stored = await next(input)
        before = input.instance.status
        if self.state_transitions and stored.status != before:
            transitions_log.debug(
                "Workflow %s instance %s: %s -> %s",
                instance_definition(stored), stored.id, before.value, stored.status.value,
                extra=_instance_fields(stored),
            )  # fmt: skip
        if self.detailed:
            c = input.checkpoint
            detail_log.debug(
                "Checkpoint of workflow %s instance %s: %s, row version %d, %d log rows, %d bookmarks, "
                "%d timers, %d outbox events, %d child instances",
                instance_definition(stored), stored.id, stored.status.value, stored.row_version,
                len(c.log), len(c.new_bookmarks), len(c.new_timers), len(c.outbox), len(c.new_instances),
                extra=_instance_fields(stored),
            )  # fmt: skip
        return stored

    def instance_started(self, instance: InstanceRecord) -> None:
        if self.state_transitions:
            transitions_log.debug(
                "Workflow %s instance %s started (%s)",
                instance_definition(instance), instance.id, instance.status.value,
                extra=_instance_fields(instance),
            )  # fmt: skip

    def log_written(self, instance: InstanceRecord, entries: Sequence[LogEntry]) -> None:
        if not self.state_transitions:
            return
        for entry in entries:
            if entry.reference == "/":
                transitions_log.debug(
                    "Workflow %s instance %s %s",
                    instance_definition(instance), instance.id, entry.event.value,
                    extra=_instance_fields(instance),
                )  # fmt: skip
            else:
                transitions_log.debug(
                    "Activity %s (%s) of workflow %s %s",
                    entry.reference, entry.task_type, instance.id, entry.event.value,
                    extra={**_instance_fields(instance), "activity_id": entry.reference,
                           "activity_type": entry.task_type},
                )  # fmt: skip

    def instance_finished(self, instance: InstanceRecord) -> None:
        definition = instance_definition(instance)
        if instance.status == InstanceStatus.FAILED:
            error = instance.error or {}
            error_type = str(error.get("type", "unknown"))
            title = error.get("title") or error_type.rsplit("/", 1)[-1]
            engine_log.error(
                "ENGINE: Critical error in workflow %s instance %s: %s %s",
                definition, instance.id, error_type, title,
                extra={**_instance_fields(instance), "error_type": error_type,
                       "status": error.get("status"), "activity_id": error.get("instance")},
            )  # fmt: skip
        elif self.state_transitions and instance.status == InstanceStatus.CANCELLED:
            # (completed and failed are seen as log rows; a cancellation's row is the store's own)
            transitions_log.debug(
                "Workflow %s instance %s cancelled", definition, instance.id, extra=_instance_fields(instance)
            )

    # -- helpers -------------------------------------------------------------------------------
    def _elapsed_ms(self, started: float) -> int:
        return max(round((self.clock() - started) * 1000), 0)

    def _payload(self, value: JSON) -> str:
        text = json.dumps(mask_value(value), default=str, ensure_ascii=False)
        if len(text) > self.max_payload_chars:
            more = len(text) - self.max_payload_chars
            text = f"{text[: self.max_payload_chars]}… ({more} more characters)"
        return text


def _instance_fields(instance: InstanceRecord) -> dict[str, Any]:
    return {"workflow_id": instance.id, "definition": instance_definition(instance)}
