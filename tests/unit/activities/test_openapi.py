"""``call: openapi`` against the stand-in's Swagger 2.0 and OpenAPI 3.0 petstores."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.activities.openapi import resolve_operation
from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError
from tests.support.standin import StandIn
from tests.unit.activities.builders import auth, openapi

V2 = "/v2/swagger.json"
V3 = "/v3/openapi.json"


# -- Swagger 2.0 ---------------------------------------------------------------------------


async def test_swagger2_query_multi(activities: Activities, standin: StandIn) -> None:
    pets = await activities.perform(
        openapi(standin.url(V2), "findPetsByStatus", parameters={"status": ["available", "sold"]})
    )
    assert sorted(p["id"] for p in pets) == [1, 2, 3]
    (request,) = standin.requests_to("/v2/pet/findByStatus")
    assert request.query == {"status": ["available", "sold"]}
    assert request.headers["accept"] == "application/json"


async def test_swagger2_scalar_query_like_the_ctk(activities: Activities, standin: StandIn) -> None:
    pets = await activities.perform(
        openapi(standin.url(V2), "findPetsByStatus", parameters={"status": "available"})
    )
    assert len(pets) == 2


async def test_swagger2_path_parameter_and_response_output(activities: Activities, standin: StandIn) -> None:
    out = await activities.perform(
        openapi(standin.url(V2), "getPetById", parameters={"petId": 1}, output="response")
    )
    assert out["statusCode"] == 200
    assert out["request"]["uri"] == standin.url("/v2/pet/1")
    assert {"id", "name", "status"} <= set(out["content"])


async def test_swagger2_body_parameter(activities: Activities, standin: StandIn) -> None:
    pet = {"name": "felix", "status": "pending"}
    out = await activities.perform(openapi(standin.url(V2), "addPet", parameters={"body": pet}))
    assert out == {**pet, "id": 4}
    (request,) = standin.requests_to("/v2/pet")
    assert (request.method, request.body) == ("POST", pet)
    assert request.headers["content-type"] == "application/json"


async def test_swagger2_body_from_the_remaining_parameters(activities: Activities, standin: StandIn) -> None:
    await activities.perform(openapi(standin.url(V2), "addPet", parameters={"name": "felix", "id": 7}))
    assert standin.requests_to("/v2/pet")[0].body == {"name": "felix", "id": 7}


async def test_swagger2_form_data(activities: Activities, standin: StandIn) -> None:
    out = await activities.perform(
        openapi(
            standin.url(V2), "updatePetWithForm", parameters={"petId": 2, "name": "tom jr", "status": "sold"}
        )
    )
    assert out["form"] == {"name": "tom jr", "status": "sold"}
    assert out["contentType"] == "application/x-www-form-urlencoded"


async def test_swagger2_header_parameter(activities: Activities, standin: StandIn) -> None:
    out = await activities.perform(
        openapi(standin.url(V2), "deletePet", parameters={"petId": 3, "api_key": "k-1"})
    )
    assert out == {"deleted": 3, "apiKey": "k-1"}


async def test_swagger2_without_host_uses_the_document_host(activities: Activities, standin: StandIn) -> None:
    pet = await activities.perform(
        openapi(standin.url("/v2/swagger-nohost.json"), "getPetById", parameters={"petId": 2})
    )
    assert pet["id"] == 2


async def test_operation_answering_404_is_a_communication_error(
    activities: Activities, standin: StandIn
) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(openapi(standin.url(V2), "getPetById", parameters={"petId": 99}))
    assert caught.value.type == ERROR_TYPE_BASE + "communication"
    assert caught.value.status == 404


# -- OpenAPI 3 -------------------------------------------------------------------------------


@pytest.mark.parametrize("document", [V3, "/v3/openapi.yaml"])
async def test_openapi3_operations(activities: Activities, standin: StandIn, document: str) -> None:
    uri = standin.url(document)
    pets = await activities.perform(openapi(uri, "findPetsByStatus", parameters={"status": ["sold"]}))
    assert [p["id"] for p in pets] == [3]
    pet = await activities.perform(openapi(uri, "getPetById", parameters={"petId": 1}))
    assert pet["id"] == 1
    stored = await activities.perform(openapi(uri, "addPet", parameters={"body": {"name": "bo"}}))
    assert stored == {"name": "bo", "id": 4}
    paths = [r.path for r in standin.requests if r.path.startswith("/v3/pet")]
    assert paths == ["/v3/pet/findByStatus", "/v3/pet/1", "/v3/pet"]


async def test_openapi3_request_body_from_remaining_parameters(
    activities: Activities, standin: StandIn
) -> None:
    await activities.perform(openapi(standin.url(V3), "addPet", parameters={"name": "bo", "status": "sold"}))
    assert standin.requests_to("/v3/pet")[0].body == {"name": "bo", "status": "sold"}


async def test_openapi3_ref_header_parameter(activities: Activities, standin: StandIn) -> None:
    out = await activities.perform(
        openapi(standin.url(V3), "deletePet", parameters={"petId": 2, "api_key": "z"})
    )
    assert out == {"deleted": 2, "apiKey": "z"}


# -- failures ------------------------------------------------------------------------------------


async def test_unknown_operation(activities: Activities, standin: StandIn) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(openapi(standin.url(V2), "adoptUnicorn"))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"
    assert caught.value.status == 400
    assert caught.value.detail == f"operation adoptUnicorn not found in {standin.url(V2)}"


@pytest.mark.parametrize(
    ("document", "operation", "parameters", "missing"),
    [
        (V2, "getPetById", {}, "petId"),
        (V2, "findPetsByStatus", {"status": None}, "status"),
        (V2, "addPet", {}, "body"),
        (V3, "deletePet", {"petId": 1}, "api_key"),
        (V3, "addPet", {}, "body"),
    ],
)
async def test_missing_required_parameter(
    activities: Activities,
    standin: StandIn,
    document: str,
    operation: str,
    parameters: dict[str, Any],
    missing: str,
) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(openapi(standin.url(document), operation, parameters=parameters))
    assert caught.value.type == ERROR_TYPE_BASE + "validation"
    assert caught.value.status == 400
    assert repr(missing) in (caught.value.detail or "")
    assert not [r for r in standin.requests if "/pet" in r.path]


async def test_not_an_openapi_document(activities: Activities, standin: StandIn) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(openapi(standin.url("/text"), "getPetById"))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"


async def test_document_that_cannot_be_fetched(activities: Activities, standin: StandIn) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(openapi(standin.url("/v9/missing.json"), "getPetById"))
    assert caught.value.status == 404


# -- shared behaviour ------------------------------------------------------------------------------


async def test_document_is_fetched_once(activities: Activities, standin: StandIn) -> None:
    calls = [
        activities.perform(openapi(standin.url(V2), "getPetById", parameters={"petId": i % 3 + 1}))
        for i in range(6)
    ]
    await asyncio.gather(*calls)
    await activities.perform(openapi(standin.url(V2), "getPetById", parameters={"petId": 1}))
    assert standin.count(V2) == 1


async def test_operation_request_carries_idempotency_key_and_auth(
    activities: Activities, standin: StandIn
) -> None:
    effect = openapi(
        standin.url(V2), "getPetById", parameters={"petId": 1}, authentication=auth("bearer", token="tk")
    )
    await activities.perform(effect)
    (request,) = standin.requests_to("/v2/pet/1")
    assert request.headers["idempotency-key"] == effect.idempotency_key
    assert request.headers["authorization"] == "Bearer tk"
    assert "authorization" not in standin.requests_to(V2)[0].headers  # document_authentication is separate


async def test_document_fetch_obeys_the_destination_policy(standin: StandIn) -> None:
    options = ActivityOptions(is_destination_allowed=lambda host: False)
    async with Activities(options, FunctionRegistry(entry_point_group=None)) as performer:
        with pytest.raises(WorkflowError) as caught:
            await performer.perform(openapi(standin.url(V2), "getPetById", parameters={"petId": 1}))
    assert caught.value.status == 403
    assert standin.requests == []


# -- parameter styles (pure resolution) ----------------------------------------------------------------


def _swagger_with(parameter: dict[str, Any]) -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "host": "api.test",
        "paths": {"/items": {"get": {"operationId": "list", "parameters": [parameter]}}},
    }


@pytest.mark.parametrize(
    ("collection_format", "expected"),
    [("csv", "a,b"), ("pipes", "a|b"), ("ssv", "a b"), ("multi", ["a", "b"])],
)
def test_swagger2_collection_formats(collection_format: str, expected: Any) -> None:
    parameter = {"name": "tag", "in": "query", "type": "array", "collectionFormat": collection_format}
    call = resolve_operation(
        _swagger_with(parameter), openapi("https://docs.test/s.json", "list", parameters={"tag": ["a", "b"]})
    )
    assert call.query == {"tag": expected}
    assert call.uri == "https://api.test/items"


def test_openapi3_server_variables_and_non_exploded_array() -> None:
    document = {
        "openapi": "3.1.0",
        "servers": [{"url": "https://{region}.api.test/v1", "variables": {"region": {"default": "eu"}}}],
        "paths": {
            "/items/{id}": {
                "get": {
                    "operationId": "get",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True},
                        {"name": "f", "in": "query", "explode": False},
                        {"name": "session", "in": "cookie"},
                    ],
                }
            }
        },
    }
    call = resolve_operation(
        document,
        openapi("https://docs.test/o.json", "get", parameters={"id": "a b/c", "f": [1, 2], "session": "s1"}),
    )
    assert call.uri == "https://eu.api.test/v1/items/a%20b%2Fc"
    assert call.query == {"f": "1,2"}
    assert call.headers["Cookie"] == "session=s1"
    assert call.method == "GET"
