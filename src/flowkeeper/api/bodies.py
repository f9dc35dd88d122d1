"""Request bodies: the size limit, content negotiation, JSON parsing, storable values.

- :class:`BodyLimitMiddleware` answers 413 before any route runs when ``Content-Length``
  announces more than ``server.max_body_size`` bytes, or when the streamed body turns
  out longer (chunked uploads, lying headers): the body is read in full, counted, and
  only then handed to the app.
- :func:`media_type` reads ``Content-Type``; :func:`parse_json` parses strictly (no
  ``NaN``, no duplicate keys, bounded nesting) and reports syntax errors by position.
- :func:`check_storable` refuses values the databases cannot keep (NUL characters,
  lone surrogates, non-finite numbers) with a pointer to where they are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowkeeper.api.problems import ApiProblem, ProblemError, pointer_of, problem_response

#: Deeper JSON than this is refused (Python's parser would overflow its stack far later).
MAX_DEPTH = 200


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes with a 413 problem, before the app sees them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                response = problem_response(
                    request, 400, "Content-Length must be a non-negative integer", code="request.malformed"
                )
                await response(scope, receive, send)
                return
            if int(declared) > self.limit:
                await self._too_large(request, scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(request, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, request: Request, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            request,
            413,
            f"the request body is larger than {self.limit} bytes (server.max_body_size)",
            code="request.too_large",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json_media_type(value: str) -> bool:
    """``application/json`` or any ``application/*+json``."""
    return value == "application/json" or (value.startswith("application/") and value.endswith("+json"))


def decode_text(body: bytes) -> str:
    """The body as UTF-8 text (a byte-order mark is dropped); 400 when it is not UTF-8."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ApiProblem(
            400,
            f"the body is not UTF-8 text (invalid byte at offset {error.start})",
            code="request.malformed",
        ) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json(body: bytes | str) -> Any:
    """Parse a JSON body strictly; a 400 problem names what is wrong and where."""
    text = decode_text(body) if isinstance(body, bytes) else body
    if not text.strip():
        raise ApiProblem(400, "the body is empty; a JSON document is expected", code="request.malformed")
    if _nesting(text) > MAX_DEPTH:
        raise ApiProblem(
            400, f"the JSON document is nested deeper than {MAX_DEPTH} levels", code="request.malformed"
        )
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise ApiProblem(
            400,
            f"the body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}",
            code="request.malformed",
        ) from None
    except (ValueError, RecursionError) as error:
        raise ApiProblem(400, f"the body is not valid JSON: {error}", code="request.malformed") from None


def _nesting(text: str) -> int:
    """An upper bound of the nesting depth (brackets inside strings count too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _bad_string(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character (U+0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not valid Unicode"
    return None


def storable_problems(value: Any, where: Sequence[str | int] = ()) -> list[ProblemError]:
    """Strings (values and keys) in ``value`` that a database would refuse, with pointers."""
    problems: list[ProblemError] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, tuple(where))]
    while stack and len(problems) < 20:
        item, path = stack.pop()
        if isinstance(item, str):
            reason = _bad_string(item)
            if reason:
                problems.append(ProblemError(pointer=pointer_of(path), message=f"the string {reason}"))
        elif isinstance(item, dict):
            for key, child in item.items():
                reason = _bad_string(str(key))
                if reason:
                    problems.append(ProblemError(pointer=pointer_of(path), message=f"a key {reason}"))
                stack.append((child, (*path, str(key))))
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append(
                ProblemError(
                    pointer=pointer_of(path), message="numbers must be finite (JSON has no NaN or Infinity)"
                )
            )
        elif isinstance(item, list):
            stack.extend((child, (*path, index)) for index, child in enumerate(item))
    return problems


def check_storable(value: Any, where: Sequence[str | int] = (), *, what: str = "the body") -> None:
    """Raise a 422 problem when ``value`` holds strings a database cannot keep."""
    problems = storable_problems(value, where)
    if problems:
        raise ApiProblem(
            422,
            f"{what} holds text that cannot be stored: {problems[0].message}",
            code="request.invalid",
            errors=problems,
        )
