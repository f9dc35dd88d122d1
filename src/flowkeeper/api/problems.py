"""RFC 9457 problem details: every error the API answers is ``application/problem+json``.

``ApiProblem`` is what routes raise for errors of their own; Flowkeeper's errors are
mapped by class (:data:`STATUS_BY_ERROR`); request validation errors become 422 with
one ``errors`` item per offending field; anything unexpected is logged and answered
500 without internals. ``problem_responses(...)`` documents the codes a route answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowkeeper.errors import (
    ConcurrencyConflict,
    ConfigurationError,
    DefinitionConflict,
    DefinitionError,
    DefinitionNotFound,
    FlowkeeperError,
    InputValidationError,
    InstanceConflict,
    InstanceNotFound,
    InvalidTransition,
    SchemaOutdated,
    StoreError,
    StoreUnavailable,
    WorkflowError,
)

log = logging.getLogger("flowkeeper.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://flowkeeper.dev/problems/"

#: HTTP status of each Flowkeeper error; the nearest class in the MRO wins.
STATUS_BY_ERROR: dict[type[FlowkeeperError], int] = {
    DefinitionError: 422,
    DefinitionNotFound: 404,
    DefinitionConflict: 409,
    InstanceNotFound: 404,
    InstanceConflict: 409,
    InvalidTransition: 409,
    InputValidationError: 422,
    ConfigurationError: 400,
    WorkflowError: 422,
    StoreUnavailable: 503,
    SchemaOutdated: 503,
    ConcurrencyConflict: 409,
    StoreError: 500,
    FlowkeeperError: 400,
}

_TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemError(BaseModel):
    """One thing wrong with a request: where (a JSON pointer into the body, or a
    parameter or header name) and what."""

    model_config = ConfigDict(extra="forbid")

    pointer: str | None = Field(default=None, description="JSON pointer into the request body.")
    parameter: str | None = Field(default=None, description="The query or path parameter at fault.")
    header: str | None = Field(default=None, description="The request header at fault.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI identifying the kind of problem, or `about:blank`.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="The request path.")
    code: str | None = Field(
        default=None, description="Flowkeeper's stable error code, e.g. `instance.not_found`."
    )
    errors: list[ProblemError] | None = None


class ApiProblem(Exception):
    """An error answered as a problem: raised by routes and body readers."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str,
        title: str | None = None,
        errors: Sequence[ProblemError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.title = title or _TITLES.get(status, "Error")
        self.errors = list(errors)
        self.headers = headers or {}


def problem_type(code: str) -> str:
    """The problem ``type`` URI of an error code: ``instance.not_found`` -> ``.../instance-not-found``."""
    return PROBLEM_BASE + code.replace(".", "-").replace("_", "-")


def problem_response(
    request: Request,
    status: int,
    detail: str | None,
    *,
    code: str | None,
    title: str | None = None,
    errors: Iterable[ProblemError] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response; ``errors`` is included when there is at least one."""
    body: dict[str, Any] = {
        "type": problem_type(code) if code else "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.url.path
    if code:
        body["code"] = code
    items = [e.model_dump(exclude_none=True) for e in errors]
    if items:
        body["errors"] = items
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def status_of(error: FlowkeeperError) -> int:
    """The HTTP status for a Flowkeeper error (by class, nearest ancestor first)."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500  # pragma: no cover - FlowkeeperError itself is mapped


def pointer_of(location: Sequence[int | str]) -> str:
    """A JSON pointer (RFC 6901) from a pydantic error location."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


def validation_items(errors: Sequence[Any]) -> list[ProblemError]:
    """``errors`` items for pydantic/FastAPI validation errors (``loc`` starts with where)."""
    items: list[ProblemError] = []
    for error in errors:
        loc = list(error.get("loc", ()))
        message = str(error.get("msg", "invalid value"))
        where = loc[0] if loc else "body"
        rest = loc[1:]
        if where == "body":
            items.append(ProblemError(pointer=pointer_of(rest), message=message))
        elif where == "header":
            items.append(ProblemError(header=str(rest[0]) if rest else "", message=message))
        else:
            items.append(ProblemError(parameter=str(rest[0]) if rest else str(where), message=message))
    return items


async def _on_api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(
        request,
        exc.status,
        exc.detail,
        code=exc.code,
        title=exc.title,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _on_flowkeeper_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlowkeeperError)
    status = status_of(exc)
    if status >= 500:
        # Store failures carry driver text: logged, never shown.
        log.error("Request %s %s failed: %s", request.method, request.url.path, exc.code, exc_info=exc)
        detail = "the database is unavailable; try again later" if status == 503 else "internal error"
        return problem_response(request, status, detail, code=exc.code, headers=_retry_after(status))
    errors: list[ProblemError] = []
    detail = exc.message
    if isinstance(exc, DefinitionError):
        errors = [ProblemError(pointer=p.pointer, message=p.message) for p in exc.problems]
        detail = "; ".join(str(p) for p in exc.problems[:3]) or "invalid workflow definition"
    elif isinstance(exc, WorkflowError):
        detail = exc.detail or exc.title or exc.type
    return problem_response(request, status, detail, code=exc.code, errors=errors)


def _retry_after(status: int) -> dict[str, str] | None:
    return {"Retry-After": "5"} if status == 503 else None


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next(
            (e.get("ctx", {}).get("error") for e in errors if e.get("type") == "json_invalid"), None
        )
        detail = f"the body is not valid JSON: {reason}" if reason else "the body is not valid JSON"
        return problem_response(request, 400, detail, code="request.malformed")
    items = validation_items(errors)
    detail = "; ".join(_describe(item) for item in items[:3]) or "the request is invalid"
    return problem_response(request, 422, detail, code="request.invalid", errors=items)


def _describe(item: ProblemError) -> str:
    where = item.pointer if item.pointer is not None else item.parameter or item.header or ""
    return f"{where or '/'}: {item.message}"


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    codes = {
        404: "route.not_found",
        405: "method.not_allowed",
        400: "request.malformed",
        413: "request.too_large",
    }
    detail = exc.detail if isinstance(exc.detail, str) else None
    if status == 404 and detail == "Not Found":
        detail = f"no route matches {request.url.path}"
    headers = dict(exc.headers or {})
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem_response(request, status, detail, code=codes.get(status, "http.error"), headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document lists at the request's path.

    (Starlette's own ``Allow`` names only the first route matching the path.)
    """
    patterns: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "allow_patterns", None
    )
    if patterns is None:
        patterns = []
        for template, operations in request.app.openapi().get("paths", {}).items():
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            patterns.append((re.compile(f"^{regex}$"), sorted(m.upper() for m in operations)))
        request.app.state.allow_patterns = patterns
    path = request.url.path
    return sorted({method for pattern, methods in patterns if pattern.match(path) for method in methods})


class LastResortMiddleware:
    """Catches what no handler did: logs it and answers a 500 problem without internals.

    A pure ASGI middleware rather than an ``Exception`` handler, which Starlette would
    re-raise after answering (to the server, which logs it a second time).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request = Request(scope)
            log.exception("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
            if started:
                raise  # too late to answer: the server closes the connection
            response = problem_response(request, 500, "internal error", code="internal.error")
            await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error as problem+json (the last-resort middleware logs and hides internals)."""
    app.add_exception_handler(ApiProblem, _on_api_problem)
    app.add_exception_handler(FlowkeeperError, _on_flowkeeper_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_middleware(LastResortMiddleware)


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


_DESCRIPTIONS = {
    400: "Malformed request (body syntax, bad cursor, missing CloudEvents attributes in binary mode)",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Body larger than `server.maxBodySize`",
    415: "Unsupported `Content-Type`",
    422: "Invalid request (failed validation); `errors` lists each problem",
    500: "Internal error (details are logged, not shown)",
    503: "Database unavailable",
}


def problem_responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, Any]:
    """OpenAPI ``responses`` entries for these problem statuses (plus 500 and 503, always possible)."""
    wanted = sorted({*statuses, 500, 503})
    texts = {**_DESCRIPTIONS, **(descriptions or {})}
    return {
        status: {"description": texts.get(status, "Error"), "content": _problem_content()}
        for status in wanted
    }
