"""Writing results: JSON on stdout, messages on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_SUSPENDED = 0, 1, 2, 3


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """A readable message on stderr and exit (2 by default: invalid input or usage)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
