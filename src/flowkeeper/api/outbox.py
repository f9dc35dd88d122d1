"""The outbox: list the events workflows emitted, read one, re-queue a dead one.

Delivery itself is the outbox processor's (a background service); these routes only
look at its rows and hand a dead event back to it: ``POST .../requeue`` makes it
``pending`` again (attempts 0, due at once), so every sink that did not get it yet
gets it, with the same event id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from flowkeeper.api.deps import EngineDep
from flowkeeper.api.outbox_schemas import OutboxEventList, OutboxEventOut
from flowkeeper.api.problems import ApiProblem, problem_responses
from flowkeeper.errors import InvalidTransition, OutboxEventNotFound
from flowkeeper.records import OutboxRecord, OutboxStatus
from flowkeeper.runtime import Engine

router = APIRouter(prefix="/api/v1/outbox", tags=["outbox"])

#: Event ids are chosen by workflows: any printable ASCII but ``/`` (a path segment).
OUTBOX_ID_PATTERN = r"^[!-.0-~][ -.0-~]{0,254}$"

OutboxIdPath = Annotated[
    str, Path(pattern=OUTBOX_ID_PATTERN, description="The outbox event's id (the CloudEvent `id`).")
]


def _not_found(exc: OutboxEventNotFound) -> ApiProblem:
    return ApiProblem(404, exc.message, code=exc.code)


async def _get(engine: Engine, outbox_id: str) -> OutboxRecord:
    try:
        return await engine.store.get_outbox(outbox_id)
    except OutboxEventNotFound as exc:
        raise _not_found(exc) from None


@router.get(
    "",
    response_model=OutboxEventList,
    summary="List outbox events",
    responses=problem_responses(400, 422, descriptions={400: "The cursor was not issued by this API"}),
)
async def list_outbox(
    engine: EngineDep,
    status: Annotated[
        OutboxStatus | None,
        Query(description="Only events in this status (`dead`: those that need an operator)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="`nextCursor` of the previous page.")
    ] = None,
) -> OutboxEventList:
    """Events emitted by workflows, oldest first, with their delivery state."""
    try:
        items, next_cursor = await engine.store.page_outbox(status=status, limit=limit, cursor=cursor)
    except ValueError:
        raise ApiProblem(
            400, "invalid cursor: pass back a nextCursor unchanged", code="request.invalid_cursor"
        ) from None
    return OutboxEventList(items=[OutboxEventOut.from_record(r) for r in items], next_cursor=next_cursor)


@router.get(
    "/{id}",
    response_model=OutboxEventOut,
    summary="Read an outbox event",
    operation_id="get_outbox_event",
    responses=problem_responses(404, 422),
)
async def get_outbox_event(id: OutboxIdPath, engine: EngineDep) -> OutboxEventOut:
    """One emitted event: the CloudEvent, its status, attempts, last error and the sinks it reached."""
    return OutboxEventOut.from_record(await _get(engine, id))


@router.post(
    "/{id}/requeue",
    response_model=OutboxEventOut,
    summary="Re-queue a dead outbox event",
    operation_id="requeue_outbox_event",
    responses=problem_responses(
        404, 409, 422, descriptions={409: "The event is not dead (only dead events can be re-queued)"}
    ),
)
async def requeue_outbox_event(id: OutboxIdPath, engine: EngineDep) -> OutboxEventOut:
    """Deliver a dead event again: ``pending``, attempts reset, due now (same event id)."""
    try:
        record = await engine.store.requeue_outbox(id)
    except OutboxEventNotFound as exc:
        raise _not_found(exc) from None
    except InvalidTransition as exc:
        raise ApiProblem(409, exc.message, code="outbox.invalid_transition") from None
    engine.outbox_written()  # this process's processor delivers it now, not at its next poll
    return OutboxEventOut.from_record(record)
