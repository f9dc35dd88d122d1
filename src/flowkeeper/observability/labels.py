"""Names shared by logs, metrics and traces: effect kinds and definition labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkeeper.errors import WorkflowError
from flowkeeper.records import InstanceRecord

if TYPE_CHECKING:
    from flowkeeper.engine.effects import Effect

# By class name: observability reaches the engine only through the runtime's hooks.
_KINDS = {"HttpCall": "http", "OpenApiCall": "openapi", "FunctionCall": "function", "ProcessRun": "process"}
# Fields of an effect never shown, not even with LogActivityInputOutput.
_HIDDEN_FIELDS = frozenset({"id", "activity_id", "authentication", "document_authentication"})


def effect_kind(effect: Effect) -> str:
    """``http``, ``openapi``, ``function`` or ``process`` (the class name, lower-case, otherwise)."""
    for cls in type(effect).__mro__:
        kind = _KINDS.get(cls.__name__)
        if kind is not None:
            return kind
    return type(effect).__name__.lower()


def definition_label(definition: str) -> str:
    """``namespace/name`` of ``namespace/name/version`` (the version is not a metric label)."""
    parts = definition.split("/")
    return "/".join(parts[:2]) if len(parts) >= 3 else definition


def instance_label(record: InstanceRecord) -> str:
    """``namespace/name`` of an instance's definition."""
    return f"{record.namespace}/{record.name}"


def instance_definition(record: InstanceRecord) -> str:
    """``namespace/name/version`` of an instance's definition."""
    return f"{record.namespace}/{record.name}/{record.version}"


def effect_input(effect: Effect) -> dict[str, Any]:
    """What an effect sends, for LogActivityInputOutput: never its credentials.

    Authentication policies are left out; a process's environment values are masked
    (they are how secrets reach processes). Keys naming secrets are masked later.
    """
    out: dict[str, Any] = {}
    for name in getattr(type(effect), "__dataclass_fields__", {}):
        if name in _HIDDEN_FIELDS:
            continue
        value = getattr(effect, name)
        if name == "environment" and isinstance(value, dict):
            value = dict.fromkeys(value, "***")
        out[name] = value
    return out


def error_parts(exc: BaseException) -> tuple[str, str, str]:
    """(DSL error type, status, title) of an activity failure; never its detail (payloads)."""
    if isinstance(exc, WorkflowError):
        return exc.type, str(exc.status), exc.title or _short_type(exc.type)
    return f"{type(exc).__module__}.{type(exc).__qualname__}", "-", type(exc).__name__


def _short_type(error_type: str) -> str:
    return error_type.rsplit("/", 1)[-1]
