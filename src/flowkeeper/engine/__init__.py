"""The pure interpreter of the Serverless Workflow DSL: state in, state + effects out. No I/O.

Public surface::

    Program(document)                      an indexed definition
    Interpreter(program, clock=...)        .new_state(...), .advance(...), .cancel(...)
    Step                                   what one advance produced
    effects                                the effect descriptions and EffectResult
"""

from flowkeeper.engine.context import LogRecord
from flowkeeper.engine.machine import (
    CANCELLED,
    COMPLETED,
    FAULTED,
    RUNNING,
    TERMINAL,
    WAITING,
    Interpreter,
    Step,
)
from flowkeeper.engine.program import Program, task_type

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAULTED",
    "RUNNING",
    "TERMINAL",
    "WAITING",
    "Interpreter",
    "LogRecord",
    "Program",
    "Step",
    "task_type",
]
