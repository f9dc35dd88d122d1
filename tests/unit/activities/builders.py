"""Effect builders for the activities tests (ids are unique unless given)."""

from __future__ import annotations

import itertools
from typing import Any

from flowkeeper.engine.effects import Authentication, HttpCall, OpenApiCall, ProcessRun

_ids = itertools.count(1)


def effect_id() -> str:
    """A fresh effect id, like the interpreter's ``<instance>:<counter>``."""
    return f"instance-1:{next(_ids)}"


def http(uri: str, method: str = "get", **fields: Any) -> HttpCall:
    """``call: http`` on ``uri`` (fields as in :class:`HttpCall`)."""
    fields.setdefault("id", effect_id())
    fields.setdefault("activity_id", "/do/0/call")
    return HttpCall(method=method, uri=uri, **fields)


def openapi(document_uri: str, operation_id: str, **fields: Any) -> OpenApiCall:
    """``call: openapi`` of ``operation_id`` in the document at ``document_uri``."""
    fields.setdefault("id", effect_id())
    fields.setdefault("activity_id", "/do/0/call")
    return OpenApiCall(document_uri=document_uri, operation_id=operation_id, **fields)


def shell(command: str, **fields: Any) -> ProcessRun:
    """``run: shell`` of ``command``."""
    return ProcessRun(id=effect_id(), activity_id="/do/0/run", kind="shell", command=command, **fields)


def script(language: str, code: str, **fields: Any) -> ProcessRun:
    """``run: script`` of ``code`` in ``language``."""
    return ProcessRun(
        id=effect_id(), activity_id="/do/0/run", kind="script", language=language, code=code, **fields
    )


def auth(scheme: str, **settings: Any) -> Authentication:
    """A resolved authentication policy."""
    return Authentication(scheme=scheme, settings=settings)
