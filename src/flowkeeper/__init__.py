"""Flowkeeper: a durable workflow engine for the CNCF Serverless Workflow DSL 1.0."""

from __future__ import annotations


def version() -> str:
    """The installed package version ("0" when running from a source tree without metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _installed

    try:
        return _installed("flowkeeper")
    except PackageNotFoundError:
        return "0"
