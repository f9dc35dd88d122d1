"""Events: receive CloudEvents (structured, binary and batch modes), list the kept ones.

The CloudEvents HTTP binding decides the mode:

- ``application/cloudevents-batch+json``: a JSON array of events (batch mode);
- ``application/cloudevents+json``: one event as JSON (structured mode);
- ``application/json`` without any of the ``ce-id``, ``ce-source``, ``ce-type``,
  ``ce-specversion`` headers: one event, structured mode, leniently;
- anything else: binary mode; the body is ``data``, ``Content-Type`` the
  ``datacontenttype``, every ``ce-*`` header an attribute (percent-decoded).

Each event needs ``id``, ``source``, ``type`` and ``specversion`` = ``1.0``; a problem
names every missing or invalid attribute. The answer (202) says how many events were
accepted, how many waiting instances they resumed, and how many were duplicates.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import Field, ValidationError

from flowkeeper.api.bodies import decode_text, is_json_media_type, media_type, parse_json, storable_problems
from flowkeeper.api.deps import EngineDep
from flowkeeper.api.problems import ApiProblem, ProblemError, pointer_of, problem_responses
from flowkeeper.api.schemas import CloudEvent, EventList, EventOut, PublishedEvent, PublishOut

router = APIRouter(prefix="/api/v1/events", tags=["events"])

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
#: The attributes every CloudEvent has.
REQUIRED = ("id", "source", "type", "specversion")
#: A batch larger than this is refused (each event is a few round trips to the database).
MAX_BATCH = 1000

_PUBLISH_BODY = {
    "requestBody": {
        "required": False,
        "description": "One event, a batch, or (binary mode, optional) the event's data.",
        "content": {
            STRUCTURED: {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
            BATCH: {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/CloudEvent"}}},
            "application/json": {
                "schema": {
                    "description": "Without ce-* headers: one CloudEvent (structured mode, leniently); "
                    "with them: the event's data, any JSON (binary mode)."
                },
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Binary mode: the body is the data; attributes come from ce-* headers.",
            },
        },
    },
}


CeAttribute = Annotated[str | None, Field(min_length=1, max_length=255)]


async def ce_headers(
    ce_id: Annotated[CeAttribute, Header(alias="ce-id", description="Binary mode: the event's `id`.")] = None,
    ce_source: Annotated[
        CeAttribute, Header(alias="ce-source", description="Binary mode: the event's `source`.")
    ] = None,
    ce_type: Annotated[
        CeAttribute, Header(alias="ce-type", description="Binary mode: the event's `type`.")
    ] = None,
    ce_specversion: Annotated[
        Literal["1.0"] | None, Header(alias="ce-specversion", description="Binary mode: `1.0`.")
    ] = None,
) -> dict[str, str]:
    """The required binary-mode attributes that came as headers (validated when present)."""
    given = {"id": ce_id, "source": ce_source, "type": ce_type, "specversion": ce_specversion}
    return {name: value for name, value in given.items() if value is not None}


CeHeaders = Annotated[dict[str, str], Depends(ce_headers)]


def _problem(errors: list[ProblemError], what: str = "the CloudEvent") -> ApiProblem:
    first = errors[0]
    where = first.header or (first.pointer or "/")
    return ApiProblem(
        422, f"{what} is invalid: {where}: {first.message}", code="event.invalid", errors=errors
    )


def validate_event(event: Any, where: tuple[str | int, ...] = ()) -> list[ProblemError]:
    """Problems of one structured event (pointers under ``where``)."""
    if not isinstance(event, dict):
        return [ProblemError(pointer=pointer_of(where), message="a CloudEvent must be a JSON object")]
    try:
        CloudEvent.model_validate(event)
    except ValidationError as error:
        return [
            ProblemError(
                pointer=pointer_of((*where, *e["loc"])),
                message=_attribute_message(e["loc"], e["msg"], event),
            )
            for e in error.errors(include_url=False)
        ]
    return storable_problems(event, where)


def _attribute_message(loc: tuple[Any, ...], message: str, event: dict[str, Any]) -> str:
    if len(loc) == 1 and loc[0] not in event:
        return f"the required attribute {loc[0]!r} is missing"
    if loc == ("specversion",):
        return f"specversion must be '1.0', not {event.get('specversion')!r}"
    return message


def binary_event(request: Request, body: bytes, required: dict[str, str]) -> dict[str, Any]:
    """The event of a binary-mode request: ``ce-*`` headers as attributes, the body as data."""
    event: dict[str, Any] = {}
    for name, value in request.headers.items():
        if name.startswith("ce-") and len(name) > 3:
            event[name[3:]] = unquote(value)
    event.update({name: unquote(value) for name, value in required.items()})
    errors = [
        ProblemError(header=f"ce-{attribute}", message=f"the required header ce-{attribute} is missing")
        for attribute in REQUIRED
        if not event.get(attribute)
    ]
    if event.get("specversion") not in (None, "", "1.0"):
        errors.append(ProblemError(header="ce-specversion", message="ce-specversion must be 1.0"))
    if errors:
        raise _problem(errors)
    content_type = request.headers.get("content-type")
    if content_type:
        event["datacontenttype"] = content_type
    if body:
        kind = media_type(request)
        if is_json_media_type(kind):
            event["data"] = parse_json(body)
        elif kind.startswith("text/"):
            event["data"] = decode_text(body)
        else:
            event["data_base64"] = base64.b64encode(body).decode("ascii")
    problems = validate_event(event)
    if problems:
        raise _problem(problems)
    return event


def read_events(request: Request, body: bytes, required: dict[str, str]) -> tuple[list[dict[str, Any]], bool]:
    """The events of a request and whether it was a batch."""
    kind = media_type(request)
    if kind == BATCH:
        events = parse_json(body)
        if not isinstance(events, list):
            raise ApiProblem(422, "a batch must be a JSON array of CloudEvents", code="event.invalid")
        if len(events) > MAX_BATCH:
            raise ApiProblem(422, f"a batch holds at most {MAX_BATCH} events", code="event.invalid")
        errors = [p for index, event in enumerate(events) for p in validate_event(event, (index,))]
        if errors:
            raise _problem(errors, "the batch")
        return events, True
    if kind in (STRUCTURED, "application/cloudevents") or (kind == "application/json" and not required):
        event = parse_json(body)
        problems = validate_event(event)
        if problems:
            raise _problem(problems)
        return [event], False
    return [binary_event(request, body, required)], False


@router.post(
    "",
    status_code=202,
    response_model=PublishOut,
    summary="Publish CloudEvents",
    openapi_extra=_PUBLISH_BODY,
    responses=problem_responses(
        400,
        413,
        422,
        descriptions={422: "An event lacks a required attribute (each one named in `errors`)"},
    ),
)
async def publish_events(request: Request, engine: EngineDep, required: CeHeaders) -> PublishOut:
    """Receive events and resume the waiting instances they match, each event exactly once."""
    events, _batch = read_events(request, await request.body(), required)
    outcomes: list[PublishedEvent] = []
    for event in events:
        result = await engine.publish(event)
        outcomes.append(
            PublishedEvent(
                id=event["id"], source=event["source"], matched=result.matched, duplicate=result.duplicate
            )
        )
    return PublishOut(
        accepted=len(outcomes),
        matched=sum(o.matched for o in outcomes),
        duplicates=sum(o.duplicate for o in outcomes),
        events=outcomes,
    )


@router.get(
    "",
    response_model=EventList,
    summary="List kept events",
    responses=problem_responses(400, 422, descriptions={400: "The cursor was not issued by this API"}),
)
async def list_events(
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="`nextCursor` of the previous page.")
    ] = None,
) -> EventList:
    """Received events still kept (``events.retention``), newest first."""
    try:
        items, next_cursor = await engine.store.list_events(limit=limit, cursor=cursor)
    except ValueError:
        raise ApiProblem(
            400, "invalid cursor: pass back a nextCursor unchanged", code="request.invalid_cursor"
        ) from None
    return EventList(items=[EventOut.from_record(r) for r in items], next_cursor=next_cursor)
