"""Flowkeeper's exception tree: one root, each error with a stable ``code``.

::

    FlowkeeperError                     code
    ├── ConfigurationError              configuration.invalid
    ├── DefinitionError                 definition.invalid       (.problems: pointer + message each)
    ├── DefinitionNotFound              definition.not_found
    ├── DefinitionConflict              definition.conflict
    ├── InstanceNotFound                instance.not_found
    ├── InstanceConflict                instance.conflict        (same id / idempotency key, other request)
    ├── InvalidTransition               instance.invalid_transition
    ├── InputValidationError            input.invalid
    ├── InvalidEvent                    event.invalid            (a CloudEvent missing attributes)
    ├── OutboxEventNotFound             outbox.not_found
    ├── StoreError                      store.error              (driver errors wrapped, cause kept)
    │   ├── StoreUnavailable            store.unavailable
    │   ├── ConcurrencyConflict         store.conflict           (stale writer, version mismatch)
    │   └── SchemaOutdated              store.schema_outdated
    └── WorkflowError                   workflow.error           (a DSL error object)

``WorkflowError`` is what an activity raises when the outside world answers badly
(HTTP 503, a timeout, a script exiting non-zero): it carries the DSL's error object,
which the interpreter can catch with ``try``/``catch``. Everything else is an error
of Flowkeeper itself or of what a user sent it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Base of the DSL's standard error types (dsl-reference.md, "Standard Error Types").
ERROR_TYPE_BASE = "https://serverlessworkflow.io/spec/1.0.0/errors/"


class FlowkeeperError(Exception):
    """Root of every error Flowkeeper raises on purpose."""

    code = "flowkeeper.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(FlowkeeperError):
    """A setting is missing or invalid; the message names the key."""

    code = "configuration.invalid"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition: where (a JSON pointer) and what, in plain words."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class DefinitionError(FlowkeeperError):
    """A workflow definition failed to parse, to match the schema or a semantic check."""

    code = "definition.invalid"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid workflow definition:\n{lines}")


class DefinitionNotFound(FlowkeeperError):
    """No deployed definition has this namespace/name(/version)."""

    code = "definition.not_found"


class DefinitionConflict(FlowkeeperError):
    """A version is immutable: the same namespace/name/version with other content."""

    code = "definition.conflict"


class InstanceNotFound(FlowkeeperError):
    """No instance has this id."""

    code = "instance.not_found"


class InstanceConflict(FlowkeeperError):
    """A start reused an instance id or idempotency key with a different request."""

    code = "instance.conflict"


class InvalidTransition(FlowkeeperError):
    """The requested status change is not allowed from the instance's current status."""

    code = "instance.invalid_transition"


class InputValidationError(FlowkeeperError):
    """Workflow input does not satisfy the definition's ``input.schema``."""

    code = "input.invalid"


class InvalidEvent(FlowkeeperError):
    """A CloudEvent without the attributes every event must have."""

    code = "event.invalid"


class OutboxEventNotFound(FlowkeeperError):
    """No outbox row (event emitted by a workflow) has this id."""

    code = "outbox.not_found"


class StoreError(FlowkeeperError):
    """The database failed; the driver's exception is kept as ``__cause__``."""

    code = "store.error"


class StoreUnavailable(StoreError):
    """The database cannot be reached."""

    code = "store.unavailable"


class ConcurrencyConflict(StoreError):
    """A write lost its optimistic version check or its lease (a stale writer)."""

    code = "store.conflict"


class SchemaOutdated(StoreError):
    """The database schema is behind the code's migrations."""

    code = "store.schema_outdated"


class WorkflowError(FlowkeeperError):
    """A DSL error (RFC 7807 shaped): raised by activities, caught by ``try``/``catch``."""

    code = "workflow.error"

    def __init__(
        self,
        type: str,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        instance: str | None = None,
    ) -> None:
        self.type = type if "/" in type else ERROR_TYPE_BASE + type
        self.status = status
        self.title = title
        self.detail = detail
        self.instance = instance
        super().__init__(detail or title or self.type)

    def to_dict(self) -> dict[str, Any]:
        """The error object as the DSL writes it (only the fields that are set)."""
        out: dict[str, Any] = {"type": self.type, "status": self.status}
        if self.title is not None:
            out["title"] = self.title
        if self.detail is not None:
            out["detail"] = self.detail
        if self.instance is not None:
            out["instance"] = self.instance
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowError:
        """Rebuild an error from its DSL object form."""
        return cls(
            type=str(data.get("type", ERROR_TYPE_BASE + "runtime")),
            status=int(data.get("status", 500)),
            title=data.get("title"),
            detail=data.get("detail"),
            instance=data.get("instance"),
        )


def standard_error(
    kind: str, detail: str | None = None, *, status: int | None = None, title: str | None = None
) -> WorkflowError:
    """A DSL standard error (``kind`` is ``communication``, ``timeout``, ``expression`` ...)."""
    default_status = {
        "configuration": 400,
        "validation": 400,
        "expression": 400,
        "authentication": 401,
        "authorization": 403,
        "timeout": 408,
        "communication": 500,
        "runtime": 500,
    }.get(kind, 500)
    default_title = {
        "configuration": "Configuration Error",
        "validation": "Validation Error",
        "expression": "Expression Error",
        "authentication": "Authentication Error",
        "authorization": "Authorization Error",
        "timeout": "Timeout",
        "communication": "Communication Error",
        "runtime": "Runtime Error",
    }.get(kind, "Error")
    return WorkflowError(
        ERROR_TYPE_BASE + kind,
        status if status is not None else default_status,
        title=title or default_title,
        detail=detail,
    )
