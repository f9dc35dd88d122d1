"""The stand-in's small petstore: its data and its Swagger 2.0 / OpenAPI 3.0 documents.

Written for these tests (not a copy of the public petstore); it keeps the public
petstore's operation ids and paths, which is what the CTK's scenarios call.
"""

from __future__ import annotations

import copy
from typing import Any

PETS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "name": "doggie", "status": "available", "category": {"id": 1, "name": "dogs"}, "tags": []},
    2: {"id": 2, "name": "kitty", "status": "available", "category": {"id": 2, "name": "cats"}, "tags": []},
    3: {"id": 3, "name": "goldie", "status": "sold", "category": {"id": 3, "name": "fish"}, "tags": []},
}


def pet(pet_id: int) -> dict[str, Any] | None:
    """A copy of pet ``pet_id`` (callers may change it freely)."""
    found = PETS.get(pet_id)
    return copy.deepcopy(found) if found is not None else None


def pets_with_status(statuses: set[str]) -> list[dict[str, Any]]:
    return [copy.deepcopy(p) for p in PETS.values() if p["status"] in statuses]


_PET_SCHEMA_V2 = {"$ref": "#/definitions/Pet"}
_PET_SCHEMA_V3 = {"$ref": "#/components/schemas/Pet"}
_PET = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "id": {"type": "integer", "format": "int64"},
        "name": {"type": "string"},
        "status": {"type": "string", "enum": ["available", "pending", "sold"]},
    },
}


def swagger2(host: str | None) -> dict[str, Any]:
    """The Swagger 2.0 document; ``host=None`` leaves ``host`` and ``schemes`` out."""
    document: dict[str, Any] = {
        "swagger": "2.0",
        "info": {"title": "Petstore stand-in", "version": "1.0.0"},
        "basePath": "/v2",
        "consumes": ["application/json"],
        "produces": ["application/json", "application/xml"],
        "paths": {
            "/pet": {
                "post": {
                    "operationId": "addPet",
                    "parameters": [
                        {"name": "body", "in": "body", "required": True, "schema": _PET_SCHEMA_V2}
                    ],
                    "responses": {"200": {"description": "the stored pet", "schema": _PET_SCHEMA_V2}},
                }
            },
            "/pet/findByStatus": {
                "get": {
                    "operationId": "findPetsByStatus",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "required": True,
                            "type": "array",
                            "items": {"type": "string"},
                            "collectionFormat": "multi",
                        }
                    ],
                    "responses": {"200": {"description": "matching pets"}},
                }
            },
            "/pet/{petId}": {
                "get": {
                    "operationId": "getPetById",
                    "parameters": [{"$ref": "#/parameters/petId"}],
                    "responses": {"200": {"description": "a pet"}, "404": {"description": "no such pet"}},
                },
                "post": {
                    "operationId": "updatePetWithForm",
                    "consumes": ["application/x-www-form-urlencoded"],
                    "parameters": [
                        {"$ref": "#/parameters/petId"},
                        {"name": "name", "in": "formData", "required": False, "type": "string"},
                        {"name": "status", "in": "formData", "required": False, "type": "string"},
                    ],
                    "responses": {"200": {"description": "updated"}},
                },
                "delete": {
                    "operationId": "deletePet",
                    "parameters": [
                        {"name": "api_key", "in": "header", "required": False, "type": "string"},
                        {"$ref": "#/parameters/petId"},
                    ],
                    "responses": {"200": {"description": "deleted"}},
                },
            },
        },
        "parameters": {"petId": {"name": "petId", "in": "path", "required": True, "type": "integer"}},
        "definitions": {"Pet": _PET},
    }
    if host is not None:
        document["host"] = host
        document["schemes"] = ["http"]
    return document


def openapi3() -> dict[str, Any]:
    """The OpenAPI 3.0 document; its server URL ``/v3`` is relative to the document."""
    json_pet = {"application/json": {"schema": _PET_SCHEMA_V3}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Petstore stand-in", "version": "1.0.0"},
        "servers": [{"url": "/v3"}],
        "paths": {
            "/pet": {
                "post": {
                    "operationId": "addPet",
                    "requestBody": {"$ref": "#/components/requestBodies/Pet"},
                    "responses": {"200": {"description": "the stored pet", "content": json_pet}},
                }
            },
            "/pet/findByStatus": {
                "get": {
                    "operationId": "findPetsByStatus",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "required": True,
                            "explode": True,
                            "schema": {"type": "array", "items": {"type": "string"}},
                        }
                    ],
                    "responses": {"200": {"description": "matching pets", "content": json_pet}},
                }
            },
            "/pet/{petId}": {
                "parameters": [{"$ref": "#/components/parameters/PetId"}],
                "get": {
                    "operationId": "getPetById",
                    "responses": {"200": {"description": "a pet", "content": json_pet}},
                },
                "delete": {
                    "operationId": "deletePet",
                    "parameters": [{"$ref": "#/components/parameters/ApiKey"}],
                    "responses": {"200": {"description": "deleted"}},
                },
            },
        },
        "components": {
            "schemas": {"Pet": _PET},
            "parameters": {
                "PetId": {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}},
                "ApiKey": {"name": "api_key", "in": "header", "required": True, "schema": {"type": "string"}},
            },
            "requestBodies": {"Pet": {"required": True, "content": json_pet}},
        },
    }
