"""Instances: start (idempotently), list, read, read the log, cancel, suspend, resume, retry.

A start names its definition (the latest version unless ``version`` is given), the
input, and optionally a client-chosen ``id`` and/or an ``Idempotency-Key`` header: the
same id or key with the same request answers 200 with the existing instance, with
another request 409.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from flowkeeper.api.bodies import check_storable, is_json_media_type, media_type
from flowkeeper.api.deps import EngineDep
from flowkeeper.api.problems import ApiProblem, ProblemError, problem_responses
from flowkeeper.api.schemas import (
    ID_PATTERN,
    NAME_PATTERN,
    CancelInstance,
    InstanceList,
    InstanceOut,
    InstanceSummary,
    LogEntryOut,
    LogOut,
    StartInstance,
)
from flowkeeper.records import BookmarkRecord, InstanceRecord, InstanceStatus
from flowkeeper.runtime import Engine

router = APIRouter(prefix="/api/v1/instances", tags=["instances"])

#: Printable ASCII without spaces at either end (a header value), at most 255 characters.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]{0,253}[!-~])?$"

InstanceIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="The instance id.")]

_INSTANCE_LINKS = {
    "GetInstance": {"operationId": "get_instance", "parameters": {"id": "$response.body#/id"}},
    "GetInstanceLog": {"operationId": "get_instance_log", "parameters": {"id": "$response.body#/id"}},
    "CancelInstance": {"operationId": "cancel_instance", "parameters": {"id": "$response.body#/id"}},
    "SuspendInstance": {"operationId": "suspend_instance", "parameters": {"id": "$response.body#/id"}},
    "ResumeInstance": {"operationId": "resume_instance", "parameters": {"id": "$response.body#/id"}},
    "RetryInstance": {"operationId": "retry_instance", "parameters": {"id": "$response.body#/id"}},
}
_LOCATION = {"Location": {"description": "The instance's URL", "schema": {"type": "string"}}}


async def require_json(request: Request) -> None:
    """A body, if any, must be JSON (415 otherwise)."""
    content_type = media_type(request)
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if (content_type or has_body) and not is_json_media_type(content_type):
        raise ApiProblem(
            415,
            f"unsupported Content-Type {content_type or 'none'}; use application/json",
            code="request.unsupported_media_type",
        )


JsonBody = Depends(require_json)


async def instance_view(
    engine: Engine, record: InstanceRecord, bookmarks: Sequence[BookmarkRecord] | None = None
) -> InstanceOut:
    """An instance with its bookmarks (read unless given), as the API shows it."""
    if record.status in (InstanceStatus.COMPLETED, InstanceStatus.PENDING):
        # A completed instance has no bookmarks left; a pending one has none yet.
        return InstanceOut.build(record, [])
    if bookmarks is None:
        bookmarks = await engine.store.list_bookmarks(record.id)
    return InstanceOut.build(record, list(bookmarks))


@router.post(
    "",
    status_code=201,
    response_model=InstanceOut,
    summary="Start an instance",
    dependencies=[JsonBody],
    responses={
        200: {
            "model": InstanceOut,
            "description": "Started before with the same id or idempotency key and the same request",
            "headers": _LOCATION,
            "links": _INSTANCE_LINKS,
        },
        201: {"description": "Started", "headers": _LOCATION, "links": _INSTANCE_LINKS},
        **problem_responses(
            400,
            404,
            409,
            413,
            415,
            422,
            descriptions={
                404: "No such definition (or version)",
                409: "The id or idempotency key was used for another request",
                422: "Invalid request, or the input does not satisfy the definition's input schema",
            },
        ),
    },
)
async def start_instance(
    body: StartInstance,
    response: Response,
    engine: EngineDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Starting again with the same key and request answers the same instance.",
        ),
    ] = None,
) -> InstanceOut:
    """Start an instance of a definition; idempotent by ``id`` or ``Idempotency-Key``."""
    check_storable(body.input, ("input",), what="the input")
    ref = body.definition
    submitted = await engine.submit_detailed(
        ref.namespace, ref.name, ref.version, body.input, instance_id=body.id, idempotency_key=idempotency_key
    )
    record = submitted.record
    response.status_code = 201 if submitted.created else 200
    response.headers["Location"] = f"/api/v1/instances/{record.id}"
    return await instance_view(engine, record, submitted.bookmarks)


#: RFC 3339 ``date-time`` (the offset is required), as OpenAPI's ``format: date-time`` means.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
_TIMESTAMP: dict[str, Any] = {
    "description": "An RFC 3339 date-time with its offset, e.g. `2025-01-31T12:00:00Z`.",
    "json_schema_extra": {"format": "date-time"},
}


def _utc(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime; 422 naming the parameter otherwise."""
    if value is None:
        return None
    try:
        if not _RFC3339.match(value):
            raise ValueError(value)
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiProblem(
            422,
            f"{name} must be an RFC 3339 date-time with an offset, e.g. 2025-01-31T12:00:00Z",
            code="request.invalid",
            errors=[ProblemError(parameter=name, message="not an RFC 3339 date-time with an offset")],
        ) from None


@router.get(
    "",
    response_model=InstanceList,
    summary="List instances",
    responses=problem_responses(400, 422, descriptions={400: "The cursor was not issued by this API"}),
)
async def list_instances(
    engine: EngineDep,
    status: Annotated[InstanceStatus | None, Query(description="Only instances in this status.")] = None,
    namespace: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    created_after: Annotated[str | None, Query(alias="createdAfter", **_TIMESTAMP)] = None,
    created_before: Annotated[str | None, Query(alias="createdBefore", **_TIMESTAMP)] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="`nextCursor` of the previous page.")
    ] = None,
) -> InstanceList:
    """Instances newest first, one page at a time (keyset pagination, stable under inserts)."""
    try:
        page = await engine.store.list_instances(
            status=status,
            namespace=namespace,
            name=name,
            created_after=_utc(created_after, "createdAfter"),
            created_before=_utc(created_before, "createdBefore"),
            limit=limit,
            cursor=cursor,
        )
    except ValueError:
        raise ApiProblem(
            400, "invalid cursor: pass back a nextCursor unchanged", code="request.invalid_cursor"
        ) from None
    return InstanceList(
        items=[InstanceSummary.from_record(r) for r in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/{id}",
    response_model=InstanceOut,
    summary="Read an instance",
    operation_id="get_instance",
    responses=problem_responses(404, 422),
)
async def get_instance(id: InstanceIdPath, engine: EngineDep) -> InstanceOut:
    """An instance: status, data, position and what it waits for."""
    return await instance_view(engine, await engine.store.get_instance(id))


@router.get(
    "/{id}/log",
    response_model=LogOut,
    summary="Read an instance's execution log",
    operation_id="get_instance_log",
    responses=problem_responses(404, 422),
)
async def get_instance_log(id: InstanceIdPath, engine: EngineDep) -> LogOut:
    """Every activity and instance event of an instance, in order."""
    await engine.store.get_instance(id)  # 404 for an unknown id rather than an empty log
    return LogOut(items=[LogEntryOut.from_record(e) for e in await engine.store.get_log(id)])


_CONTROL_RESPONSES: dict[int | str, Any] = problem_responses(
    404,
    409,
    422,
    descriptions={409: "Not allowed from the instance's current status"},
)


async def _control(
    engine: Engine, action: Callable[[str], Awaitable[InstanceRecord]], instance_id: str
) -> InstanceOut:
    return await instance_view(engine, await action(instance_id))


@router.post(
    "/{id}/cancel",
    response_model=InstanceOut,
    summary="Cancel an instance",
    operation_id="cancel_instance",
    dependencies=[JsonBody],
    responses={**_CONTROL_RESPONSES, **problem_responses(400, 415)},
)
async def cancel_instance(
    id: InstanceIdPath, engine: EngineDep, body: CancelInstance | None = None
) -> InstanceOut:
    """Cancel a non-terminal instance (and its children); an optional ``reason`` is logged."""
    reason = body.reason if body is not None else None
    if reason is not None:
        check_storable(reason, ("reason",), what="the reason")
    return await instance_view(engine, await engine.cancel(id, reason))


@router.post(
    "/{id}/suspend",
    response_model=InstanceOut,
    summary="Suspend an instance",
    operation_id="suspend_instance",
    responses=_CONTROL_RESPONSES,
)
async def suspend_instance(id: InstanceIdPath, engine: EngineDep) -> InstanceOut:
    """Suspend a running or waiting instance until it is resumed."""
    return await _control(engine, engine.suspend, id)


@router.post(
    "/{id}/resume",
    response_model=InstanceOut,
    summary="Resume a suspended instance",
    operation_id="resume_instance",
    responses=_CONTROL_RESPONSES,
)
async def resume_instance(id: InstanceIdPath, engine: EngineDep) -> InstanceOut:
    """Undo a manual suspension."""
    return await _control(engine, engine.resume, id)


@router.post(
    "/{id}/retry",
    response_model=InstanceOut,
    summary="Retry a failed instance",
    operation_id="retry_instance",
    responses=_CONTROL_RESPONSES,
)
async def retry_instance(id: InstanceIdPath, engine: EngineDep) -> InstanceOut:
    """Run a failed instance again from the activity that failed."""
    return await _control(engine, engine.retry, id)
