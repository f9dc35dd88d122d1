"""``call: http``: build the request, send it under the destination policy, shape the output.

Every request carries ``Idempotency-Key`` (the effect's stable key) so a receiver can
de-duplicate the repeat that follows a crash between the call and the checkpoint.
Answers outside 200-299 (200-399 when ``redirect`` is set) raise the DSL's
communication error with the HTTP status; timeouts raise the timeout error (408).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx

from flowkeeper.activities.auth import Authenticator
from flowkeeper.activities.options import ActivityOptions
from flowkeeper.engine.effects import HttpCall
from flowkeeper.errors import standard_error

_MASKED_HEADERS = frozenset({"authorization", "proxy-authorization"})
#: How much of an error answer's body goes into the DSL error's ``detail``.
_DETAIL_LIMIT = 500


@asynccontextmanager
async def deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound a whole outside call (tokens, documents, redirects); expiry is the DSL timeout error."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise standard_error("timeout", f"{what} did not complete within {seconds:g}s", status=408) from None


class HttpClient:
    """The one pooled :class:`httpx.AsyncClient` of a process, created on first use.

    :meth:`send` is the only way out: it applies the destination policy before
    connecting and maps transport failures to DSL errors. It never raises for an
    HTTP status; callers decide what an answer means.
    """

    def __init__(self, options: ActivityOptions) -> None:
        self._options = options
        self._client: httpx.AsyncClient | None = None

    def _get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                http1=True,
                http2=False,
                verify=self._options.verify_tls,
                timeout=httpx.Timeout(self._options.timeout, connect=self._options.connect_timeout),
                # Sized for ~64 calls in flight (fork branches, many instances per worker).
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                # Redirects are followed by HttpActivity, hop by hop, so each hop's
                # destination is checked before connecting.
                follow_redirects=False,
                headers={"User-Agent": self._options.user_agent},
            )
        return self._client

    def check_destination(self, url: httpx.URL) -> None:
        """Raise unless ``url`` is an http(s) URL whose host the configuration allows."""
        if url.scheme not in ("http", "https"):
            raise standard_error(
                "configuration", f"unsupported URI scheme {url.scheme!r} (http or https only)", status=400
            )
        if not url.host:
            raise standard_error("configuration", "the URI has no host", status=400)
        if not self._options.is_destination_allowed(url.host):
            raise standard_error(
                "communication", f"destination host {url.host} is not allowed by configuration", status=403
            )

    async def send(self, request: httpx.Request, auth: httpx.Auth | None = None) -> httpx.Response:
        """Send one request (no redirect following); the body is read before returning."""
        self.check_destination(request.url)
        host = request.url.host
        client = self._get()
        # Requests are built outside the client, so its defaults (User-Agent, Accept,
        # Accept-Encoding) are merged here, under anything the caller set.
        for name, value in client.headers.items():
            request.headers.setdefault(name, value)
        try:
            return await client.send(request, auth=auth, follow_redirects=False)
        except httpx.UnsupportedProtocol as exc:
            raise standard_error("configuration", f"unsupported URI: {exc}", status=400) from None
        except httpx.TimeoutException:
            raise standard_error("timeout", f"HTTP request to {host} timed out", status=408) from None
        except httpx.ConnectError as exc:
            raise standard_error("communication", f"connection failed: {host}: {exc}", status=503) from None
        except httpx.TransportError as exc:
            # Dropped connections and malformed answers are transient as far as a
            # retry policy is concerned: same status as a refused connection.
            raise standard_error(
                "communication", f"request to {host} failed: {type(exc).__name__}: {exc}", status=503
            ) from None

    async def aclose(self) -> None:
        """Close pooled connections; a later :meth:`send` opens a new client."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class HttpActivity:
    """Performs :class:`HttpCall` effects (and OpenAPI calls once resolved to one)."""

    def __init__(self, client: HttpClient, authenticator: Authenticator, options: ActivityOptions) -> None:
        self._client = client
        self._authenticator = authenticator
        self._options = options

    async def perform(self, effect: HttpCall) -> Any:
        """Send the call and return its output (``content``, ``response`` or ``raw``)."""
        async with deadline(self._options.timeout, f"HTTP call to {_host_of(effect.uri)}"):
            return await self.perform_without_deadline(effect)

    async def perform_without_deadline(self, effect: HttpCall) -> Any:
        """:meth:`perform` for callers that already run under a :func:`deadline`."""
        request = build_request(effect)
        self._client.check_destination(request.url)  # before even fetching a token
        credentials = await self._authenticator.credentials(effect.authentication, self._client.send)
        request.headers.update(credentials.headers)
        response = await self._client.send(request, auth=credentials.auth)
        hops = 0
        while effect.redirect and response.next_request is not None:
            if hops >= self._options.max_redirects:
                raise standard_error(
                    "communication",
                    f"too many redirects (more than {self._options.max_redirects})",
                    status=response.status_code,
                    title=response.reason_phrase or None,
                )
            follow = response.next_request
            # httpx already dropped Authorization for a cross-origin hop; the digest
            # flow must not answer another origin's challenge either.
            same_origin = _origin(follow.url) == _origin(request.url)
            response = await self._client.send(follow, auth=credentials.auth if same_origin else None)
            hops += 1
        status = response.status_code
        if not (200 <= status < 300 or (effect.redirect and 300 <= status < 400)):
            if status == 401:
                self._authenticator.forget(credentials.token_key)
            detail = response.text[:_DETAIL_LIMIT] if response.content else None
            raise standard_error("communication", detail, status=status, title=response.reason_phrase or None)
        return shape_output(effect.output, response)


def build_request(effect: HttpCall) -> httpx.Request:
    """The httpx request for an evaluated ``call: http`` (no credentials yet)."""
    try:
        url = httpx.URL(effect.uri)
    except httpx.InvalidURL as exc:
        raise standard_error("configuration", f"invalid URI: {exc}", status=400) from None
    if effect.query:
        # Parameters given in ``query`` replace same-named ones already in the URI.
        url = url.copy_merge_params(tuple(_query_params(effect.query)))
    headers = httpx.Headers({name: _header_value(value) for name, value in effect.headers.items()})
    if "idempotency-key" not in headers:
        headers["Idempotency-Key"] = effect.idempotency_key
    content = _encode_body(effect.body, headers)
    return httpx.Request(effect.method.upper(), url, headers=headers, content=content)


def _query_params(query: dict[str, Any]) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for name, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:  # an absent optional value, not the string "None"
                params.append((name, _scalar(item)))
    return params


def _scalar(value: Any) -> str:
    """A query/header value as text: strings as is, everything else as JSON (true, 1.5, {...})."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _header_value(value: Any) -> str:
    return ", ".join(_scalar(v) for v in value) if isinstance(value, list) else _scalar(value)


def _encode_body(body: Any, headers: httpx.Headers) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded" and isinstance(body, dict):
        return urlencode(_query_params(body)).encode()
    if not content_type:
        headers["Content-Type"] = "application/json"
    return json.dumps(body, separators=(",", ":")).encode()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _host_of(uri: str) -> str:
    try:
        return httpx.URL(uri).host or "?"
    except httpx.InvalidURL:
        return "?"


# -- output ------------------------------------------------------------------------


def shape_output(output: str, response: httpx.Response) -> Any:
    """The call's output in the DSL's ``content``, ``response`` or ``raw`` form."""
    if output == "raw":
        return base64.b64encode(response.content).decode("ascii") if response.content else None
    if output == "response":
        request = response.request
        return {
            "request": {
                "method": request.method,
                "uri": str(request.url),
                "headers": {
                    name.lower(): "***" if name.lower() in _MASKED_HEADERS else value
                    for name, value in request.headers.items()
                },
            },
            "headers": _headers(response.headers),
            "statusCode": response.status_code,
            "content": decode_content(response),
        }
    if output == "content":
        return decode_content(response)
    raise standard_error("configuration", f"unknown HTTP output format {output!r}", status=400)


def _headers(headers: httpx.Headers) -> dict[str, str]:
    # Repeated headers are joined as RFC 9110 allows, so the map stays name -> string.
    out: dict[str, str] = {}
    for name, value in headers.multi_items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def decode_content(response: httpx.Response) -> Any:
    """JSON for JSON media types, text for text, base64 for bytes that are not text; ``None`` if empty."""
    body = response.content
    if not body:
        return None
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            return response.json()
        except ValueError:
            pass  # mislabelled: hand over the text rather than fail the call
    if response.charset_encoding or media_type.startswith("text/"):
        return response.text
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        # The DSL's rule for content it cannot deserialise: base64.
        return base64.b64encode(body).decode("ascii")
