"""Health checks in the operations guide's shape, and the probe the services host implements.

- ``GET /health``: the database (reachable, migrations applied) and the background
  services (``outbox-processor``, ``timer-service``, ``dispatcher``) as the
  :class:`HealthProbe` reports them.
- ``GET /health/ready``: the database only; 503 while it is unreachable or migrations
  are pending.
- ``GET /health/live``: no I/O at all; answers as long as the event loop does.

The overall status is the worst entry's; HTTP 200 for Healthy and Degraded, 503 for
Unhealthy. Durations are written ``hh:mm:ss.fffffff`` as in the guide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flowkeeper.api.schemas import HealthEntry, HealthReport, HealthStatus
from flowkeeper.errors import FlowkeeperError

router = APIRouter(tags=["health"])

SERVICES = ("outbox-processor", "timer-service", "dispatcher")
#: A check taking longer than this counts as failed.
CHECK_TIMEOUT = 5.0
_RANK: dict[str, int] = {"Healthy": 0, "Degraded": 1, "Unhealthy": 2}


class ComponentHealth(Protocol):
    """One background service's health, as a :class:`HealthProbe` reports it.

    Any object with these attributes will do (e.g. the services host's own dataclass);
    :class:`ServiceHealth` is one.
    """

    @property
    def status(self) -> HealthStatus:
        """``Healthy``, ``Degraded`` or ``Unhealthy``."""
        ...

    @property
    def description(self) -> str | None:
        """Why, in a few words (optional)."""
        ...


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """A plain :class:`ComponentHealth`."""

    status: HealthStatus
    description: str | None = None


class HealthProbe(Protocol):
    """Reports the background services' health (implemented by the services host)."""

    async def check(self) -> Mapping[str, ComponentHealth]:
        """Each service's health, by the guide's entry name (``outbox-processor``, ...)."""
        ...


class NotRunningProbe:
    """The probe of an API running without background services in its process."""

    async def check(self) -> Mapping[str, ComponentHealth]:
        """Every service Healthy, described as not running here."""
        return {name: ServiceHealth("Healthy", "not running in this process") for name in SERVICES}


def format_duration(seconds: float) -> str:
    """``hh:mm:ss.fffffff`` (100-nanosecond ticks), as .NET writes a TimeSpan."""
    ticks = max(0, round(seconds * 10_000_000))
    whole, fraction = divmod(ticks, 10_000_000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{fraction:07d}"


async def database_entry(request: Request, *, migrations: bool = True) -> HealthEntry:
    """Ping the database and (optionally) compare its migration with the code's."""
    engine = request.app.state.engine
    started = time.perf_counter()
    status: HealthStatus = "Healthy"
    description: str | None = None
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await engine.store.ping()
            if migrations:
                schema = await engine.store.schema_status()
                if not schema.up_to_date:
                    status = "Unhealthy"
                    description = (
                        f"migrations pending: at {schema.current or 'none'}, code expects {schema.head}"
                    )
    except TimeoutError:
        status, description = "Unhealthy", f"no answer within {CHECK_TIMEOUT:g} s"
    except FlowkeeperError as error:
        status, description = "Unhealthy", f"unreachable ({error.code})"
    except Exception as error:  # a health check answers, whatever the driver raised
        status, description = "Unhealthy", f"check failed ({type(error).__name__})"
    return HealthEntry(
        status=status, duration=format_duration(time.perf_counter() - started), description=description
    )


async def service_entries(request: Request) -> dict[str, HealthEntry]:
    """The probe's entries; a probe that fails or hangs makes every service Unhealthy."""
    probe: HealthProbe = request.app.state.health_probe
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            reported = dict(await probe.check())
    except Exception as error:  # a broken probe is a health finding, not a 500
        elapsed = format_duration(time.perf_counter() - started)
        reason = "no answer" if isinstance(error, TimeoutError) else f"probe failed ({type(error).__name__})"
        return {
            name: HealthEntry(status="Unhealthy", duration=elapsed, description=reason) for name in SERVICES
        }
    elapsed = format_duration(time.perf_counter() - started)
    entries: dict[str, HealthEntry] = {}
    for name, health in reported.items():
        status = health.status if health.status in _RANK else "Unhealthy"
        entries[name] = HealthEntry(status=status, duration=elapsed, description=health.description)
    return entries


def report(entries: dict[str, HealthEntry], started: float) -> JSONResponse:
    """The guide's JSON: overall status = the worst entry's; 503 when Unhealthy."""
    worst: HealthStatus = "Healthy"
    for entry in entries.values():
        if _RANK[entry.status] > _RANK[worst]:
            worst = entry.status
    body = HealthReport(
        status=worst, total_duration=format_duration(time.perf_counter() - started), entries=entries
    )
    content: dict[str, Any] = body.model_dump(by_alias=True, exclude_none=True)
    return JSONResponse(content, status_code=503 if worst == "Unhealthy" else 200)


_RESPONSES: dict[int | str, Any] = {
    200: {"description": "Healthy or Degraded"},
    503: {"description": "Unhealthy", "model": HealthReport},
}


@router.get("/health", response_model=HealthReport, summary="Overall health", responses=_RESPONSES)
async def health(request: Request) -> JSONResponse:
    """The database and every background service."""
    started = time.perf_counter()
    entries = {"database": await database_entry(request)}
    entries.update(await service_entries(request))
    return report(entries, started)


@router.get("/health/ready", response_model=HealthReport, summary="Readiness", responses=_RESPONSES)
async def ready(request: Request) -> JSONResponse:
    """Ready to serve: the database answers and its schema is at the code's migration."""
    started = time.perf_counter()
    return report({"database": await database_entry(request)}, started)


@router.get("/health/live", response_model=HealthReport, summary="Liveness", responses=_RESPONSES)
async def live() -> JSONResponse:
    """Alive: the process answers (no database, no I/O)."""
    return report({}, time.perf_counter())
