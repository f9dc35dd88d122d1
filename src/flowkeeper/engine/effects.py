"""Effects: what the interpreter asks of the world, as plain immutable descriptions.

The interpreter never does I/O. When a task needs something from outside it returns
an effect; the runtime performs it (``activities``) or persists it (bookmarks, timers,
outbox, child instances) and feeds the result back as an :class:`EffectResult`.

Every effect has an ``id`` unique within the instance and stable across a crash and
replay of the same step (derived from the instance id and a counter kept in the
state), and the ``activity_id`` (task reference) that asked for it. ``idempotency_key``
is what external calls send so receivers can de-duplicate retries after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

JSON = Any

HttpOutput = Literal["content", "response", "raw"]


@dataclass(frozen=True, slots=True)
class Authentication:
    """A resolved authentication policy: secrets and expressions already evaluated.

    ``scheme`` is ``basic`` (``username``/``password``), ``bearer`` (``token``),
    ``digest`` (``username``/``password``) or ``oauth2``/``oidc`` (the DSL's fields
    in ``settings``). Never logged: ``__repr__`` hides the values.
    """

    scheme: str
    settings: dict[str, JSON] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Authentication(scheme={self.scheme!r}, settings=<hidden>)"


@dataclass(frozen=True, slots=True)
class Effect:
    """Base of all effects."""

    id: str
    activity_id: str

    @property
    def idempotency_key(self) -> str:
        """``<instance id>:<activity reference>:<effect counter>``: the same for a call
        replayed after a crash, different for every other call (loop iterations and
        retry attempts included)."""
        instance, _, counter = self.id.rpartition(".")
        return f"{instance}:{self.activity_id}:{counter}"


# -- performed by activities (outside effects: checkpoint after each) ------------------


@dataclass(frozen=True, slots=True)
class HttpCall(Effect):
    """``call: http`` with every expression evaluated and the URI template expanded."""

    method: str
    uri: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, JSON] = field(default_factory=dict)
    body: JSON = None
    output: HttpOutput = "content"
    redirect: bool = False
    authentication: Authentication | None = None


@dataclass(frozen=True, slots=True)
class OpenApiCall(Effect):
    """``call: openapi``: the operation is resolved by the activity from the document."""

    document_uri: str
    operation_id: str
    parameters: dict[str, JSON] = field(default_factory=dict)
    output: HttpOutput = "content"
    redirect: bool = False
    authentication: Authentication | None = None
    document_authentication: Authentication | None = None


@dataclass(frozen=True, slots=True)
class FunctionCall(Effect):
    """A call of a registered Python function (entry point group ``flowkeeper.functions``)."""

    function: str
    arguments: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProcessRun(Effect):
    """``run: shell`` or ``run: script`` in a subprocess.

    ``returns`` is the DSL's ``return``: ``stdout`` (default), ``stderr``, ``code``,
    ``all`` (``{code, stdout, stderr}``) or ``none``.
    """

    kind: Literal["shell", "script"]
    command: str | None = None
    language: str | None = None
    code: str | None = None
    arguments: JSON = None
    environment: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    returns: str = "stdout"
    wait: bool = True


# -- persisted by the runtime at the next checkpoint --------------------------------


@dataclass(frozen=True, slots=True)
class CreateBookmark(Effect):
    """Wait for an event matching ``filter`` (see ``engine.events``)."""

    filter: dict[str, JSON]
    event_type: str | None = None
    correlation_from: str | None = None
    correlation_value: str | None = None


@dataclass(frozen=True, slots=True)
class StartTimer(Effect):
    """Wait until ``due_at``; its result is ``{"timer": id, "firedAt": ...}``."""

    due_at: datetime
    purpose: Literal["wait", "retry", "timeout"] = "wait"


@dataclass(frozen=True, slots=True)
class StartChild(Effect):
    """``run: workflow``: start a child instance with id ``child_id``.

    When ``wait`` is set the parent waits on a bookmark (id = effect id) that the
    child's end consumes with ``{"output": ...}`` or ``{"error": {...}}``.
    """

    child_id: str
    namespace: str
    name: str
    version: str | None
    input: JSON
    wait: bool = True


@dataclass(frozen=True, slots=True)
class Emit(Effect):
    """Publish a CloudEvent: written to the outbox, routed to matching bookmarks."""

    event: dict[str, JSON]


@dataclass(frozen=True, slots=True)
class CancelWait(Effect):
    """Drop an outstanding bookmark/timer/effect (``target``) that is no longer wanted."""

    target: str
    kind: Literal["bookmark", "timer", "child", "call"] = "bookmark"


#: Effects performed by ``activities`` (an effect outside the process).
OUTSIDE_EFFECTS = (HttpCall, OpenApiCall, FunctionCall, ProcessRun)


@dataclass(frozen=True, slots=True)
class EffectResult:
    """The answer to an effect: a value, or a DSL error object (``error``)."""

    id: str
    value: JSON = None
    error: dict[str, JSON] | None = None
