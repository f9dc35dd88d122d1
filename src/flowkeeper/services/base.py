"""What every background service of a process looks like to its host.

A service is a long-running loop (``run``) that ends when the host's ``stop`` event is
set, reports its state for ``/health`` (``health``) and can be woken early (``wake``)
when the engine commits work it cares about (a new outbox row, a new timer).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal, Protocol

Status = Literal["Healthy", "Degraded", "Unhealthy"]


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One background service's state, as the health endpoint reports it."""

    status: Status
    description: str | None = None


class BackgroundService(Protocol):
    """A loop run by :class:`~flowkeeper.services.host.ServiceHost`."""

    #: The health entry's name (``dispatcher``, ``timer-service``, ``outbox-processor``, ...).
    name: str

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set. Database failures are reported through ``health``
        and retried with back-off; the loop itself only ends on ``stop`` or cancellation."""

    def wake(self) -> None:
        """Something changed that the service should look at now, not at its next poll."""

    def health(self) -> ServiceHealth:
        """The service's current state."""
