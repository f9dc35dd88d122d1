"""The loaded, validated workflow definition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Definition:
    """A validated DSL document, identified by ``namespace/name/version``.

    ``document`` is the parsed document as plain JSON data; treat it as read-only
    (it is shared, not copied). ``source`` is the text it was loaded from (for a
    mapping, its JSON dump). ``content_hash`` is the SHA-256 hex digest of the
    canonical JSON of ``document`` (sorted keys, no spaces): two definitions with
    the same hash mean the same, however they were formatted.

    Equality and hashing use the identity and the content hash only.
    """

    namespace: str
    name: str
    version: str
    dsl: str
    document: dict[str, Any] = field(compare=False, repr=False)
    source: str = field(compare=False, repr=False)
    content_hash: str
    # Task reference -> task body, filled by the semantic walk at load time.
    _tasks: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """``(namespace, name, version)``."""
        return (self.namespace, self.name, self.version)

    def task_at(self, reference: str) -> dict[str, Any]:
        """The body of the task at ``reference`` (the mapping under the task's name).

        A reference is the JSON pointer of the task's name within the document,
        e.g. ``/do/0/getPet``, ``/do/0/tryGetPet/try/0/getPet``,
        ``/do/0/f/fork/branches/1/b`` or ``/use/functions/myFunction``.
        Raises :class:`KeyError` when no task is there.
        """
        try:
            return self._tasks[reference]
        except KeyError:
            raise KeyError(f"no task at {reference!r} in {'/'.join(self.key)}") from None

    def task_references(self) -> list[str]:
        """Every task reference of the definition, in document order (functions first)."""
        return list(self._tasks)
