"""Definitions: deploy a DSL document (YAML or JSON), list and read deployed ones.

``Content-Type`` decides how the body is read: ``application/json`` must be JSON;
``application/yaml``, ``application/x-yaml`` and ``text/yaml`` are YAML (of which JSON
is a subset). Anything else is 415. A version is immutable: the same content again
answers 200, other content under the same namespace/name/version 409.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from flowkeeper.api.bodies import decode_text, media_type, storable_problems
from flowkeeper.api.deps import EngineDep
from flowkeeper.api.problems import ApiProblem, problem_responses
from flowkeeper.api.schemas import NAME_PATTERN, VERSION_PATTERN, DefinitionList, DefinitionOut
from flowkeeper.definitions.parsing import parse_text
from flowkeeper.errors import DefinitionError, Problem

router = APIRouter(prefix="/api/v1/definitions", tags=["definitions"])

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")

_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Serverless Workflow DSL 1.0 document.",
    "required": ["document", "do"],
    "properties": {
        "document": {
            "type": "object",
            "required": ["dsl", "namespace", "name", "version"],
            "properties": {
                "dsl": {"type": "string", "examples": ["1.0.0"]},
                "namespace": {"type": "string", "pattern": NAME_PATTERN},
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "version": {"type": "string", "examples": ["1.0.0"]},
            },
        },
        "do": {"type": "array", "items": {"type": "object"}},
    },
}
#: A definition that waits for one ``com.example.hello`` event and greets with its data.
EXAMPLE_DOCUMENT: dict[str, Any] = {
    "document": {"dsl": "1.0.0", "namespace": "examples", "name": "hello", "version": "1.0.0"},
    "do": [
        {"wait": {"listen": {"to": {"one": {"with": {"type": "com.example.hello"}}}}}},
        {"greet": {"set": {"greeting": '${ "hello " + (.[0].name // "world") }'}}},
    ],
}
EXAMPLE_YAML = """\
document:
  dsl: '1.0.0'
  namespace: examples
  name: hello-yaml
  version: '1.0.0'
do:
  - greet:
      set:
        greeting: hello
"""
_YAML_BODY = {
    "schema": {"type": "string", "description": "The DSL document as YAML."},
    "example": EXAMPLE_YAML,
}

_DEPLOY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _DOCUMENT_SCHEMA, "example": EXAMPLE_DOCUMENT},
            **{media: _YAML_BODY for media in YAML_TYPES},
        },
    }
}

NamespacePath = Annotated[str, Path(pattern=NAME_PATTERN, description="The definition's namespace.")]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="The definition's name.")]
VersionPath = Annotated[str, Path(pattern=VERSION_PATTERN, description="The definition's version.")]


def location(definition: DefinitionOut) -> str:
    """The URL path of a definition version."""
    return f"/api/v1/definitions/{definition.namespace}/{definition.name}/{definition.version}"


def read_document(body: bytes, content_type: str) -> str:
    """The definition text of a request body, checked as far as the API must.

    JSON bodies must be JSON; every body must parse and hold only storable text.
    Raises ``ApiProblem`` (415) or ``DefinitionError`` (422).
    """
    if content_type not in JSON_TYPES + YAML_TYPES:
        shown = content_type or "none"
        raise ApiProblem(
            415,
            f"unsupported Content-Type {shown}; use one of {', '.join(JSON_TYPES + YAML_TYPES)}",
            code="request.unsupported_media_type",
            headers={"Accept-Post": ", ".join(JSON_TYPES + YAML_TYPES)},
        )
    text = decode_text(body)
    if not text.strip():
        raise DefinitionError([Problem("", "the body is empty; a workflow definition is expected")])
    if content_type in JSON_TYPES:
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            message = f"JSON syntax error at line {error.lineno}, column {error.colno}: {error.msg}"
            raise DefinitionError([Problem("", message)]) from None
        except RecursionError:
            raise DefinitionError([Problem("", "the document is nested too deeply")]) from None
    document = parse_text(text)
    problems = storable_problems(document)
    if problems:
        raise DefinitionError([Problem(p.pointer or "", p.message) for p in problems])
    return text


@router.post(
    "",
    status_code=201,
    response_model=DefinitionOut,
    summary="Deploy a definition",
    openapi_extra=_DEPLOY_BODY,
    responses={
        200: {"model": DefinitionOut, "description": "The same content was already deployed"},
        201: {
            "description": "Deployed",
            "headers": {"Location": {"description": "The definition's URL", "schema": {"type": "string"}}},
        },
        **problem_responses(
            400,
            409,
            413,
            415,
            422,
            descriptions={
                409: "Another document is deployed under this namespace/name/version",
                422: "Invalid definition; `errors` has a JSON pointer and a message for each problem",
            },
        ),
    },
)
async def deploy_definition(request: Request, response: Response, engine: EngineDep) -> DefinitionOut:
    """Validate a DSL document and store it as an immutable version."""
    text = read_document(await request.body(), media_type(request))
    record, created = await engine.deploy(text)
    out = DefinitionOut.from_record(record)
    response.status_code = 201 if created else 200
    response.headers["Location"] = location(out)
    return out


@router.get(
    "",
    response_model=DefinitionList,
    summary="List definitions",
    responses=problem_responses(422),
)
async def list_definitions(
    engine: EngineDep,
    namespace: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this namespace.")] = None,
) -> DefinitionList:
    """Every version of every deployed definition, ordered by namespace, name and version."""
    records = await engine.store.list_definitions(namespace)
    return DefinitionList(items=[DefinitionOut.from_record(r) for r in records])


@router.get(
    "/{namespace}/{name}",
    response_model=DefinitionOut,
    summary="Read the latest version of a definition",
    responses=problem_responses(404, 422),
)
async def get_latest_definition(namespace: NamespacePath, name: NamePath, engine: EngineDep) -> DefinitionOut:
    """The highest (semantic) version of a definition."""
    return DefinitionOut.from_record(await engine.store.get_definition(namespace, name))


@router.get(
    "/{namespace}/{name}/{version}",
    response_model=DefinitionOut,
    summary="Read one version of a definition",
    responses=problem_responses(404, 422),
)
async def get_definition(
    namespace: NamespacePath, name: NamePath, version: VersionPath, engine: EngineDep
) -> DefinitionOut:
    """One version of a definition."""
    return DefinitionOut.from_record(await engine.store.get_definition(namespace, name, version))
