"""Definitions over HTTP: deploy (YAML or JSON), idempotent redeploy, conflicts, validation, reads."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from tests.api.conftest import GREET, assert_problem, definition, deploy


@pytest.mark.parametrize("content_type", ["application/yaml", "application/x-yaml", "text/yaml"])
async def test_deploy_yaml_answers_201_with_the_definition(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/api/v1/definitions", content=definition(GREET), headers={"Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"namespace", "name", "version", "dsl", "document", "contentHash", "createdOn"}
    assert (body["namespace"], body["name"], body["version"], body["dsl"]) == (
        "tests",
        "greet",
        "1.0.0",
        "1.0.0",
    )
    assert body["document"]["do"][0]["greet"]["set"]["greeting"]
    assert len(body["contentHash"]) == 64
    assert body["createdOn"]
    assert response.headers["location"] == "/api/v1/definitions/tests/greet/1.0.0"


async def test_deploy_json_with_charset(client: httpx.AsyncClient) -> None:
    document = yaml.safe_load(definition(GREET))
    response = await client.post(
        "/api/v1/definitions",
        content=json.dumps(document),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["document"] == document


async def test_same_content_again_answers_200_and_other_content_409(client: httpx.AsyncClient) -> None:
    first = await deploy(client, GREET)
    again = await client.post(
        "/api/v1/definitions", content=definition(GREET), headers={"Content-Type": "application/yaml"}
    )
    assert again.status_code == 200
    assert again.json() == first
    # The same document as JSON is the same content.
    as_json = await client.post(
        "/api/v1/definitions",
        content=json.dumps(yaml.safe_load(definition(GREET))),
        headers={"Content-Type": "application/json"},
    )
    assert as_json.status_code == 200
    changed = GREET.replace('"hello "', '"hi "')
    conflict = await client.post(
        "/api/v1/definitions", content=definition(changed), headers={"Content-Type": "application/yaml"}
    )
    assert_problem(conflict, 409, "definition.conflict")


async def test_invalid_definition_answers_422_with_pointers(client: httpx.AsyncClient) -> None:
    bad = definition("do:\n  - step:\n      then: nowhere\n      set: {a: 1}\n")
    problem = assert_problem(
        await client.post("/api/v1/definitions", content=bad, headers={"Content-Type": "application/yaml"}),
        422,
        "definition.invalid",
    )
    assert problem["type"] == "https://flowkeeper.dev/problems/definition-invalid"
    assert problem["errors"], problem
    assert all(set(e) == {"pointer", "message"} for e in problem["errors"])
    assert any(e["pointer"].startswith("/do/0") for e in problem["errors"]), problem


@pytest.mark.parametrize(
    ("content_type", "body", "fragment"),
    [
        ("application/json", '{"document": ', "JSON syntax error at line 1"),
        ("application/json", "document: {}", "JSON syntax error"),
        ("application/yaml", "document: [unclosed", "YAML syntax error"),
        ("application/yaml", "", "empty"),
        ("application/yaml", "- just\n- a list\n", "must be a mapping"),
        ("application/json", '{"document": {"name": "a\\u0000b"}}', "NUL"),
    ],
)
async def test_malformed_documents_are_named(
    client: httpx.AsyncClient, content_type: str, body: str, fragment: str
) -> None:
    response = await client.post("/api/v1/definitions", content=body, headers={"Content-Type": content_type})
    problem = assert_problem(response, 422, "definition.invalid")
    assert fragment in json.dumps(problem), problem


async def test_body_that_is_not_utf8_answers_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/definitions", content=b"\xff\xfe\x00garbage", headers={"Content-Type": "application/yaml"}
    )
    assert_problem(response, 400, "request.malformed")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data", None])
async def test_other_content_types_answer_415(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/api/v1/definitions", content=definition(GREET), headers=headers)
    problem = assert_problem(response, 415, "request.unsupported_media_type")
    assert "application/yaml" in problem["detail"]
    assert "application/json" in response.headers["accept-post"]


async def test_list_and_read_definitions(client: httpx.AsyncClient) -> None:
    await deploy(client, GREET, version="1.0.0")
    await deploy(client, GREET, version="1.10.0")
    await deploy(client, GREET, version="1.2.0")
    await deploy(client, GREET, name="other")
    listing = (await client.get("/api/v1/definitions")).json()["items"]
    assert [(d["name"], d["version"]) for d in listing] == [
        ("greet", "1.0.0"),
        ("greet", "1.2.0"),
        ("greet", "1.10.0"),
        ("other", "1.0.0"),
    ]
    assert (await client.get("/api/v1/definitions", params={"namespace": "tests"})).json()["items"]
    assert (await client.get("/api/v1/definitions", params={"namespace": "nobody"})).json() == {"items": []}
    latest = await client.get("/api/v1/definitions/tests/greet")
    assert latest.status_code == 200
    assert latest.json()["version"] == "1.10.0"
    exact = await client.get("/api/v1/definitions/tests/greet/1.2.0")
    assert exact.json()["version"] == "1.2.0"


async def test_unknown_definitions_answer_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/definitions/tests/nothing"), 404, "definition.not_found")
    await deploy(client, GREET)
    problem = assert_problem(
        await client.get("/api/v1/definitions/tests/greet/9.9.9"), 404, "definition.not_found"
    )
    assert problem["type"] == "https://flowkeeper.dev/problems/definition-not-found"


async def test_bad_path_and_query_values_answer_422(client: httpx.AsyncClient) -> None:
    problem = assert_problem(
        await client.get("/api/v1/definitions", params={"namespace": "no spaces"}), 422, "request.invalid"
    )
    assert problem["errors"][0]["parameter"] == "namespace"
    assert_problem(await client.get("/api/v1/definitions/tests/bad%00name"), 422, "request.invalid")
