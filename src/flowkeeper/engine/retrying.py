"""Retrying a failed instance: resume from the failed activity, not from the start.

When an instance faults, its frames are kept as they were (the failed task is still
each list's current task) and every outstanding wait was cancelled. To retry, walk the
chain of active frames down to the tasks that were running and reset them so they start
again from their raw input; composite tasks keep their progress (a ``for`` keeps its
index, a ``fork`` its finished branches). Waits that the fault cancelled are dropped so
they are issued again.
"""

from __future__ import annotations

from typing import Any

from flowkeeper.engine.context import Frame
from flowkeeper.engine.program import Program

JSON = Any
_TASK_KEYS = ("in", "b", "at", "to")


def prepare_retry(state: dict[str, JSON], program: Program) -> dict[str, JSON]:
    """Reset ``state`` (in place) for a retry and return it."""
    state.pop("to", None)
    state.update(status="running", error=None)
    root = state.get("root")
    if root is None:
        # It failed before or after running its tasks (input.from, workflow timeout):
        # start over.
        state.update(root=None, pending_input=True, context={})
        return state
    _reset_list(root, program)
    return state


def _reset_list(frame: Frame | None, program: Program) -> None:
    if frame is not None and frame.get("cur") is not None:
        _reset_task(frame["cur"], program)


def _reset_task(frame: Frame, program: Program) -> None:
    frame.pop("to", None)
    body = frame.get("b")
    if not isinstance(body, dict) or not _has_active_child(body):
        for key in _TASK_KEYS:
            frame.pop(key, None)
        return
    body.pop("w", None)
    if "br" in body:  # fork: rerun the branches that had not finished
        for index, branch in enumerate(body["br"]):
            if body["fin"][index]:
                continue
            if branch is None:  # stopped when a sibling failed
                ref = f"{frame['ref']}/fork/branches"
                name = program.task_list(ref)[index][0]
                body["br"][index] = {"ref": f"{ref}/{index}/{name}", "name": name, "raw": frame["in"]}
            else:
                _reset_task(branch, program)
        return
    for key in ("catch", "fe", "list"):
        _reset_list(body.get(key), program)
    if isinstance(body.get("fn"), dict):
        _reset_task(body["fn"], program)


def _has_active_child(body: dict[str, JSON]) -> bool:
    if "br" in body:
        return True
    if isinstance(body.get("fn"), dict):
        return True
    return any(
        isinstance(body.get(k), dict) and body[k].get("cur") is not None for k in ("catch", "fe", "list")
    )
