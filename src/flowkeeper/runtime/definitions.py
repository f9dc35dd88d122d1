"""Deployed definitions and their interpreters, cached (definitions are immutable).

Which version is the latest of a name is not immutable: a deploy anywhere changes it.
That answer is kept for ``LATEST_TTL`` only, and dropped at once when this process
deploys or hears (a database notification) that another replica did.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flowkeeper.engine import Interpreter, Program
from flowkeeper.records import DefinitionRecord
from flowkeeper.store.port import Store

JSON = Any

#: How long "the latest version of namespace/name" is believed without asking again.
LATEST_TTL = 1.0


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
        self._latest: dict[tuple[str, str], tuple[str, float]] = {}  # -> (version, believed until)

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
        self._latest.pop((record.namespace, record.name), None)
        return entry[1]

    def forget_latest(self) -> None:
        """A definition was deployed elsewhere: ask the store for the latest versions again."""
        self._latest.clear()

    async def get(
        self, namespace: str, name: str, version: str | None
    ) -> tuple[DefinitionRecord, Interpreter]:
        """The definition and its interpreter; ``version`` None means the latest deployed.

        Raises ``DefinitionNotFound``.
        """
        if not version:
            latest = self._latest.get((namespace, name))
            if latest is not None and latest[1] > time.monotonic():
                version = latest[0]
        if version:
            entry = self._entries.get((namespace, name, version))
            if entry is not None:
                self._entries.move_to_end((namespace, name, version))
                return entry
        record = await self._store.get_definition(namespace, name, version or None)
        interpreter = self.add(record)
        if not version:
            self._latest[(namespace, name)] = (record.version, time.monotonic() + LATEST_TTL)
            if len(self._latest) > self._size:
                self._latest.clear()
        return record, interpreter
