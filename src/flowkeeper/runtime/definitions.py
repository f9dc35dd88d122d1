"""Deployed definitions and their interpreters, cached (definitions are immutable)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flowkeeper.engine import Interpreter, Program
from flowkeeper.records import DefinitionRecord
from flowkeeper.store.port import Store

JSON = Any


class DefinitionCache:
    """(namespace, name, version) -> (record, interpreter), least recently used first out."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        runtime: Mapping[str, JSON],
        size: int = 1000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._runtime = dict(runtime)
        self._size = size
        self._entries: OrderedDict[tuple[str, str, str], tuple[DefinitionRecord, Interpreter]] = OrderedDict()

    def add(self, record: DefinitionRecord) -> Interpreter:
        """Cache a record (after a deploy) and return its interpreter."""
        key = (record.namespace, record.name, record.version)
        entry = self._entries.get(key)
        if entry is None:
            entry = (record, Interpreter(Program(record.document), runtime=self._runtime, clock=self._clock))
            self._entries[key] = entry
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry[1]

    async def get(
        self, namespace: str, name: str, version: str | None
    ) -> tuple[DefinitionRecord, Interpreter]:
        """The definition and its interpreter; ``version`` None means the latest deployed.

        Raises ``DefinitionNotFound``.
        """
        if version:
            entry = self._entries.get((namespace, name, version))
            if entry is not None:
                self._entries.move_to_end((namespace, name, version))
                return entry
        record = await self._store.get_definition(namespace, name, version or None)
        interpreter = self.add(record)
        return record, interpreter
