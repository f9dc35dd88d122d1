"""Runtime hooks: interceptors that observe (and may wrap) what the runtime does.

Modelled on Temporal's Python SDK: one input dataclass per hook, and an interceptor
that receives it with the ``next`` callable to continue the chain. Metrics, tracing
and logging attach here instead of being sprinkled through the runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowkeeper.engine.effects import Effect
from flowkeeper.records import Checkpoint, InstanceRecord, LogEntry

JSON = Any


@dataclass(frozen=True, slots=True)
class ActivityInput:
    """An outside effect about to be performed for an instance."""

    instance_id: str
    definition: str
    effect: Effect


@dataclass(frozen=True, slots=True)
class CheckpointInput:
    """A checkpoint about to be written."""

    instance: InstanceRecord
    checkpoint: Checkpoint


class Interceptor:
    """Base interceptor: every hook passes straight through. Override what you need."""

    async def execute_activity(
        self, input: ActivityInput, next: Callable[[ActivityInput], Awaitable[JSON]]
    ) -> JSON:
        return await next(input)

    async def write_checkpoint(
        self, input: CheckpointInput, next: Callable[[CheckpointInput], Awaitable[InstanceRecord]]
    ) -> InstanceRecord:
        return await next(input)

    def instance_started(self, instance: InstanceRecord) -> None:
        """Called once an instance has been accepted (stored)."""

    def log_written(self, instance: InstanceRecord, entries: Sequence[LogEntry]) -> None:
        """Called after a write committed these execution-log rows (task and instance events)."""

    def instance_finished(self, instance: InstanceRecord) -> None:
        """Called once an instance reached a terminal status."""


def chain_activity(
    interceptors: Sequence[Interceptor], last: Callable[[ActivityInput], Awaitable[JSON]]
) -> Callable[[ActivityInput], Awaitable[JSON]]:
    """Compose the ``execute_activity`` hooks around ``last`` (first interceptor outermost)."""
    call = last
    for interceptor in reversed(interceptors):
        call = _bind_activity(interceptor, call)
    return call


def _bind_activity(
    interceptor: Interceptor, nxt: Callable[[ActivityInput], Awaitable[JSON]]
) -> Callable[[ActivityInput], Awaitable[JSON]]:
    async def call(input: ActivityInput) -> JSON:
        return await interceptor.execute_activity(input, nxt)

    return call


def chain_checkpoint(
    interceptors: Sequence[Interceptor], last: Callable[[CheckpointInput], Awaitable[InstanceRecord]]
) -> Callable[[CheckpointInput], Awaitable[InstanceRecord]]:
    """Compose the ``write_checkpoint`` hooks around ``last``."""
    call = last
    for interceptor in reversed(interceptors):
        call = _bind_checkpoint(interceptor, call)
    return call


def _bind_checkpoint(
    interceptor: Interceptor, nxt: Callable[[CheckpointInput], Awaitable[InstanceRecord]]
) -> Callable[[CheckpointInput], Awaitable[InstanceRecord]]:
    async def call(input: CheckpointInput) -> InstanceRecord:
        return await interceptor.write_checkpoint(input, nxt)

    return call
