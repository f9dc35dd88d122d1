"""Runs instances: drives the engine, performs effects through activities, checkpoints through the store.

Public surface: :class:`Engine` (deploy, start, run claimed instances, wait), :class:`Worker`
(the claim/fire-timers loop), and the interceptor hooks in ``runtime.hooks``.
"""

from flowkeeper.runtime.engine import Engine, Submission, default_owner
from flowkeeper.runtime.hooks import ActivityInput, CheckpointInput, Interceptor
from flowkeeper.runtime.worker import Worker, run_to_end

__all__ = [
    "ActivityInput",
    "CheckpointInput",
    "Engine",
    "Interceptor",
    "Submission",
    "Worker",
    "default_owner",
    "run_to_end",
]
