"""Sleeping until something happens: the background loops' one way of waiting."""

from __future__ import annotations

import asyncio


async def until_any(seconds: float | None, *events: asyncio.Event) -> None:
    """Return when one of ``events`` is set or ``seconds`` have passed (None: no limit)."""
    if any(event.is_set() for event in events) or (seconds is not None and seconds <= 0):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
