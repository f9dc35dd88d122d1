"""A definition prepared for interpretation: task references resolved once.

Task references are JSON-pointer-like paths into the document, as the DSL writes them
in error ``instance`` fields: ``/do/0/tryGetPet/try/0/getPet``. A task list's
reference is the path of the list (``/do``, ``/do/0/outer/do``, ``.../fork/branches``).
"""

from __future__ import annotations

from typing import Any

JSON = Any

#: Task type keys in the order that disambiguates them (``for`` and ``try`` tasks also
#: hold a ``do``/``catch`` key, so they are recognised before ``do``).
TASK_TYPES = ("for", "try", "fork", "switch", "call", "emit", "listen", "raise", "run", "set", "wait", "do")


def task_type(task: dict[str, JSON]) -> str:
    """The DSL type of a task body (``call``, ``do``, ``for`` ...)."""
    for key in TASK_TYPES:
        if key in task:
            return key
    return "unknown"


class Program:
    """An immutable index over a definition document: task and task-list references."""

    __slots__ = ("declared_secrets", "document", "lists", "name", "namespace", "tasks", "version")

    def __init__(self, document: dict[str, JSON]) -> None:
        self.document = document
        meta = document.get("document", {})
        self.namespace = str(meta.get("namespace", "default"))
        self.name = str(meta.get("name", "workflow"))
        self.version = str(meta.get("version", "0.0.0"))
        #: ``use.secrets``: the only secrets the workflow may read (``$secrets``, secret-based auth).
        self.declared_secrets: tuple[str, ...] = tuple(
            str(n) for n in (document.get("use") or {}).get("secrets") or ()
        )
        self.tasks: dict[str, tuple[str, dict[str, JSON]]] = {}
        self.lists: dict[str, list[tuple[str, dict[str, JSON]]]] = {}
        self._index_list("/do", document.get("do") or [])
        functions = (document.get("use") or {}).get("functions") or {}
        for name, body in functions.items():
            if isinstance(body, dict):
                self._index_task(f"/use/functions/{name}", name, body)

    def _index_list(self, ref: str, items: list[JSON]) -> None:
        entries: list[tuple[str, dict[str, JSON]]] = []
        for i, item in enumerate(items):
            ((name, body),) = item.items()
            entries.append((name, body))
            self._index_task(f"{ref}/{i}/{name}", name, body)
        self.lists[ref] = entries

    def _index_task(self, ref: str, name: str, body: dict[str, JSON]) -> None:
        self.tasks[ref] = (name, body)
        kind = task_type(body)
        if kind in ("do", "for"):
            self._index_list(f"{ref}/do", body.get("do") or [])
        elif kind == "try":
            self._index_list(f"{ref}/try", body.get("try") or [])
            catch = body.get("catch") or {}
            if catch.get("do"):
                self._index_list(f"{ref}/catch/do", catch["do"])
        elif kind == "fork":
            self._index_list(f"{ref}/fork/branches", body["fork"].get("branches") or [])
        elif kind == "listen":
            foreach = body.get("foreach") or {}
            if foreach.get("do"):
                self._index_list(f"{ref}/foreach/do", foreach["do"])

    def task(self, ref: str) -> tuple[str, dict[str, JSON]]:
        """(name, body) of the task at ``ref``."""
        return self.tasks[ref]

    def task_list(self, ref: str) -> list[tuple[str, dict[str, JSON]]]:
        """The (name, body) entries of the task list at ``ref``."""
        return self.lists[ref]

    def use(self, section: str) -> dict[str, JSON]:
        """A reusable-component section of ``use`` (``errors``, ``retries`` ...), or ``{}``."""
        value = (self.document.get("use") or {}).get(section) or {}
        return value if isinstance(value, dict) else {}
