"""``call: openapi``: resolve an operation of a Swagger 2.0 / OpenAPI 3.x document to an HTTP call.

The document is fetched once per URI and kept for the life of the process (an
:class:`OpenApiActivity` lives as long as its :class:`~flowkeeper.activities.Activities`).
The resolved call then goes through :class:`~flowkeeper.activities.http.HttpActivity`,
so authentication, output shapes, errors, destination checks and ``Idempotency-Key``
are exactly those of ``call: http``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import yaml

from flowkeeper.activities.http import HttpActivity, deadline
from flowkeeper.activities.options import ActivityOptions
from flowkeeper.engine.effects import HttpCall, OpenApiCall
from flowkeeper.errors import standard_error

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_DOCUMENT_ACCEPT = "application/json, application/yaml;q=0.9, */*;q=0.5"
_COLLECTION_SEPARATORS = {"csv": ",", "ssv": " ", "tsv": "\t", "pipes": "|"}
_STYLE_SEPARATORS = {"form": ",", "spaceDelimited": " ", "pipeDelimited": "|"}


class OpenApiActivity:
    """Performs :class:`OpenApiCall` effects; caches parsed documents per URI."""

    def __init__(self, http: HttpActivity, options: ActivityOptions) -> None:
        self._http = http
        self._options = options
        self._documents: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def perform(self, effect: OpenApiCall) -> Any:
        """Fetch the document (once), resolve ``operationId``, perform the HTTP call."""
        async with deadline(self._options.timeout, f"OpenAPI call {effect.operation_id}"):
            document = await self.document(effect)
            call = resolve_operation(document, effect)
            return await self._http.perform_without_deadline(call)

    async def document(self, effect: OpenApiCall) -> dict[str, Any]:
        """The parsed document at ``effect.document_uri``; concurrent callers fetch it once."""
        uri = effect.document_uri
        if (cached := self._documents.get(uri)) is not None:
            return cached
        async with self._locks.setdefault(uri, asyncio.Lock()):
            if (cached := self._documents.get(uri)) is not None:
                return cached
            fetch = HttpCall(
                id=effect.id,
                activity_id=effect.activity_id,
                method="GET",
                uri=uri,
                headers={"Accept": _DOCUMENT_ACCEPT},
                redirect=True,
                authentication=effect.document_authentication,
            )
            content = await self._http.perform_without_deadline(fetch)
            document = _parse_document(content, uri)
            self._documents[uri] = document  # failures are not cached: the next call tries again
            return document


def _parse_document(content: Any, uri: str) -> dict[str, Any]:
    document: Any = content
    if isinstance(content, str):
        try:
            document = json.loads(content)
        except ValueError:
            try:
                document = yaml.safe_load(content)
            except yaml.YAMLError:
                document = None
    if not isinstance(document, dict) or not (
        str(document.get("swagger", "")).startswith("2") or str(document.get("openapi", "")).startswith("3")
    ):
        raise standard_error(
            "configuration", f"{_display(uri)} is not a Swagger 2.0 or OpenAPI 3.x document", status=400
        )
    return document


def resolve_operation(document: dict[str, Any], effect: OpenApiCall) -> HttpCall:
    """The HTTP call that performs ``effect.operation_id`` with ``effect.parameters``."""
    found = _find_operation(document, effect.operation_id)
    if found is None:
        raise standard_error(
            "configuration",
            f"operation {effect.operation_id} not found in {_display(effect.document_uri)}",
            status=400,
        )
    path, method, path_item, operation = found
    swagger2 = "swagger" in document
    values = effect.parameters
    consumed: set[str] = set()
    query: dict[str, Any] = {}
    headers: dict[str, str] = {}
    cookies: list[str] = []
    form: dict[str, Any] = {}
    body_parameter: dict[str, Any] | None = None

    for param in _parameters(document, path_item, operation):
        name, where = str(param.get("name")), param.get("in")
        if where == "body":
            body_parameter = param
            continue
        value = values.get(name)
        if value is None:
            if param.get("required") or where == "path":
                _missing(name, where, effect.operation_id)
            continue
        consumed.add(name)
        if where == "path":
            path = path.replace("{" + name + "}", quote(_simple(value), safe=""))
        elif where == "query":
            query.update(_query_value(name, value, param, swagger2))
        elif where == "header":
            headers[name] = _simple(value)
        elif where == "cookie":
            cookies.append(f"{name}={_simple(value)}")
        elif where == "formData":
            form[name] = value

    body: Any = None
    if form:
        body = form
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif swagger2 and body_parameter is not None:
        body = _body_value(values, str(body_parameter.get("name")), consumed)
        if body is None and body_parameter.get("required"):
            _missing(str(body_parameter.get("name")), "body", effect.operation_id)
        consumes = operation.get("consumes") or document.get("consumes") or []
        headers["Content-Type"] = _prefer_json(consumes) or "application/json"
    elif not swagger2 and "requestBody" in operation:
        request_body = _deref(document, operation["requestBody"])
        body = _body_value(values, "body", consumed)
        if body is None and request_body.get("required"):
            _missing("body", "requestBody", effect.operation_id)
        media_type = _prefer_json(list(request_body.get("content") or {})) or "application/json"
        if media_type.startswith("multipart/"):
            raise standard_error(
                "configuration", f"request body media type {media_type} is not supported", status=400
            )
        headers["Content-Type"] = media_type
    if body is None:
        headers.pop("Content-Type", None)
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    if accept := _prefer_json(_produces(document, operation, swagger2)):
        headers.setdefault("Accept", accept)

    return HttpCall(
        id=effect.id,
        activity_id=effect.activity_id,
        method=method.upper(),
        uri=_base_url(document, path_item, operation, effect.document_uri, swagger2).rstrip("/") + path,
        headers=headers,
        query=query,
        body=body,
        output=effect.output,
        redirect=effect.redirect,
        authentication=effect.authentication,
    )


def _find_operation(
    document: dict[str, Any], operation_id: str
) -> tuple[str, str, dict[str, Any], dict[str, Any]] | None:
    for path, item in (document.get("paths") or {}).items():
        path_item = _deref(document, item)
        for method in _METHODS:
            operation = path_item.get(method)
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return str(path), method, path_item, operation
    return None


def _parameters(
    document: dict[str, Any], path_item: dict[str, Any], operation: dict[str, Any]
) -> list[dict[str, Any]]:
    """Path-level parameters overridden by operation-level ones with the same name and location."""
    merged: dict[tuple[Any, Any], dict[str, Any]] = {}
    for raw in [*(path_item.get("parameters") or []), *(operation.get("parameters") or [])]:
        param = _deref(document, raw)
        merged[(param.get("name"), param.get("in"))] = param
    return list(merged.values())


def _deref(document: dict[str, Any], node: Any) -> dict[str, Any]:
    """Follow local ``$ref`` pointers (``#/components/...``, ``#/parameters/...``)."""
    for _ in range(32):  # a bound, because a document may (wrongly) contain a cycle
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
            return node if isinstance(node, dict) else {}
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise standard_error("configuration", f"external reference {ref} is not supported", status=400)
        target: Any = document
        for token in ref[2:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            target = target.get(token) if isinstance(target, dict) else None
        if target is None:
            raise standard_error("configuration", f"unresolvable reference {ref}", status=400)
        node = target
    raise standard_error("configuration", "reference cycle in the OpenAPI document", status=400)


def _missing(name: str, where: Any, operation_id: str) -> None:
    raise standard_error(
        "validation",
        f"missing required parameter {name!r} (in: {where}) of operation {operation_id}",
        status=400,
    )


def _body_value(values: dict[str, Any], name: str, consumed: set[str]) -> Any:
    """The parameter named like the body, else the parameters no other location took."""
    if values.get(name) is not None:
        consumed.add(name)
        return values[name]
    rest = {key: value for key, value in values.items() if key not in consumed}
    return rest or None


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _simple(value: Any) -> str:
    """OpenAPI ``simple`` style: arrays and objects as comma-separated values."""
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k},{_scalar(v)}" for k, v in value.items())
    return _scalar(value)


def _query_value(name: str, value: Any, param: dict[str, Any], swagger2: bool) -> dict[str, Any]:
    """Query entries for one parameter; a list value means a repeated parameter."""
    if swagger2:
        if not isinstance(value, list):
            return {name: _scalar(value)}
        fmt = param.get("collectionFormat", "csv")
        if fmt == "multi":
            return {name: [_scalar(v) for v in value]}
        return {name: _COLLECTION_SEPARATORS.get(fmt, ",").join(_scalar(v) for v in value)}
    style = param.get("style", "form")
    explode = param.get("explode", style == "form")
    if isinstance(value, dict):
        if style == "deepObject":
            return {f"{name}[{k}]": _scalar(v) for k, v in value.items()}
        if explode:
            return {str(k): _scalar(v) for k, v in value.items()}
        return {name: _simple(value)}
    if isinstance(value, list):
        if explode:
            return {name: [_scalar(v) for v in value]}
        return {name: _STYLE_SEPARATORS.get(style, ",").join(_scalar(v) for v in value)}
    return {name: _scalar(value)}


def _produces(document: dict[str, Any], operation: dict[str, Any], swagger2: bool) -> list[str]:
    if swagger2:
        return list(operation.get("produces") or document.get("produces") or [])
    types: list[str] = []
    for status, response in (operation.get("responses") or {}).items():
        if str(status).startswith("2"):
            types.extend(_deref(document, response).get("content") or {})
    return types


def _prefer_json(media_types: list[str]) -> str | None:
    for media_type in media_types:
        base = media_type.split(";")[0].strip().lower()
        if base == "application/json" or base.endswith("+json"):
            return media_type
    return media_types[0] if media_types else None


def _base_url(
    document: dict[str, Any],
    path_item: dict[str, Any],
    operation: dict[str, Any],
    document_uri: str,
    swagger2: bool,
) -> str:
    origin = urlsplit(document_uri)
    if swagger2:
        schemes = [str(s) for s in document.get("schemes") or []]
        scheme = origin.scheme if not schemes or origin.scheme in schemes else schemes[0]
        # No ``host``: the API is served where the document is (Swagger 2.0 rule).
        host = document.get("host") or origin.netloc
        base_path = str(document.get("basePath") or "/")
        return urlunsplit((scheme, str(host), base_path, "", ""))
    servers = operation.get("servers") or path_item.get("servers") or document.get("servers") or []
    server: dict[str, Any] = servers[0] if servers and isinstance(servers[0], dict) else {"url": "/"}
    url = str(server.get("url") or "/")
    for variable, spec in (server.get("variables") or {}).items():
        url = url.replace("{" + variable + "}", str((spec or {}).get("default", "")))
    # A relative server URL is relative to where the document was served (OpenAPI 3).
    return urljoin(document_uri, url)


def _display(uri: str) -> str:
    """``uri`` without user info, so credentials in a URI never reach an error message."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
