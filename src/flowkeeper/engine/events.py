"""Event filters: does a CloudEvent match what a ``listen`` waits for? Pure functions.

A bookmark's filter (what ``listen`` persists) is::

    {"filters": [{"with": {attr: want}, "correlate": {key: {"from": expr, "expect": value|None}}}],
     "until": [<filters that end an ``any`` listen>], "all": <true when filters is [] for ``any: []``>}

``with`` values match an attribute by equality, by a regular expression (full
match), or by a runtime expression evaluated on the attribute (true passes). The
runtime uses :func:`match` to route incoming events; the interpreter uses it to tell
which filter consumed an event.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from flowkeeper.errors import WorkflowError
from flowkeeper.expressions import evaluate, is_expression

JSON = Any


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _attribute_matches(want: JSON, have: JSON) -> bool:
    if is_expression(want):
        try:
            result = evaluate(want, have)
        except WorkflowError:
            return False
        return result is True or (not isinstance(result, bool) and result == have)
    if isinstance(want, str) and isinstance(have, str):
        if want == have:
            return True
        pattern = _regex(want)
        return bool(pattern and pattern.fullmatch(have))
    if isinstance(want, dict) and isinstance(have, dict):
        return all(k in have and _attribute_matches(v, have[k]) for k, v in want.items())
    return bool(want == have)


def filter_matches(spec: dict[str, JSON], event: dict[str, JSON]) -> bool:
    """One event filter against one event (attributes, then correlation)."""
    for attribute, want in (spec.get("with") or {}).items():
        if attribute not in event or not _attribute_matches(want, event[attribute]):
            return False
    for correlation in (spec.get("correlate") or {}).values():
        expect = correlation.get("expect")
        if expect is None:
            continue
        try:
            value = evaluate(correlation["from"], event)
        except WorkflowError:
            return False
        if value != expect:
            return False
    return True


def match(bookmark_filter: dict[str, JSON], event: dict[str, JSON]) -> tuple[str, int] | None:
    """Which part of a bookmark's filter an event satisfies: ("filter"|"until", index), or None."""
    for index, spec in enumerate(bookmark_filter.get("until") or []):
        if filter_matches(spec, event):
            return ("until", index)
    filters = bookmark_filter.get("filters") or []
    if not filters and bookmark_filter.get("all"):
        return ("filter", -1)
    for index, spec in enumerate(filters):
        if filter_matches(spec, event):
            return ("filter", index)
    return None


def correlation_values(spec: dict[str, JSON], event: dict[str, JSON]) -> dict[str, JSON]:
    """The correlation keys a filter extracts from an event (for ``expect``-less keys)."""
    out: dict[str, JSON] = {}
    for key, correlation in (spec.get("correlate") or {}).items():
        try:
            out[key] = evaluate(correlation["from"], event)
        except WorkflowError:
            out[key] = None
    return out


def single_type(bookmark_filter: dict[str, JSON]) -> str | None:
    """The one literal event type a bookmark waits for, if it has exactly one (an index key)."""
    specs = list(bookmark_filter.get("filters") or []) + list(bookmark_filter.get("until") or [])
    types = {(s.get("with") or {}).get("type") for s in specs}
    if len(types) != 1:
        return None
    (only,) = types
    # Dots are regex wildcards, but a type that differs from the literal only there is
    # not worth a full scan: such types are matched by the literal index key.
    if isinstance(only, str) and re.fullmatch(r"[A-Za-z0-9._:/\-]+", only):
        return only
    return None


def _canonical(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def correlation_keys(bookmark_filter: dict[str, JSON]) -> tuple[str, str] | None:
    """(from expressions, expected values) of a bookmark with ONE filter whose every
    correlation has a known expectation, as canonical JSON objects; None otherwise
    (such bookmarks are matched by scanning)."""
    specs = bookmark_filter.get("filters") or []
    if len(specs) != 1 or bookmark_filter.get("until") or bookmark_filter.get("all"):
        return None
    correlate = specs[0].get("correlate") or {}
    if not correlate or any(c.get("expect") is None for c in correlate.values()):
        return None
    froms = {key: c["from"] for key, c in correlate.items()}
    expects = {key: c["expect"] for key, c in correlate.items()}
    return _canonical(froms), _canonical(expects)


def event_correlation(correlation_from: str, event: dict[str, JSON]) -> str | None:
    """The expected-values key an event would satisfy for these ``from`` expressions."""
    try:
        froms = json.loads(correlation_from)
        return _canonical({key: evaluate(expr, event) for key, expr in froms.items()})
    except (ValueError, TypeError, WorkflowError):
        return None
