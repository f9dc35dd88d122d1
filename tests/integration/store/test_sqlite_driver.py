"""The SQLite driver connection (``store/sqlite_driver.py``) under aiosqlite."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flowkeeper.store import sqlite_driver

GUARD = 10.0


async def test_closing_a_stopped_connection_returns(tmp_path: Path) -> None:
    # SQLAlchemy terminates a connection it gave up on with aiosqlite's stop(), and may
    # close it too (gracefully, in a task). aiosqlite's thread ends at the first stop, so
    # the close must not wait for an answer to a second one: that task would never end,
    # and neither would the event loop's shutdown, which waits for it.
    conn = await sqlite_driver.connect(str(tmp_path / "f.db"))
    assert await conn.in_thread(lambda: 1) == 1
    conn.stop()
    async with asyncio.timeout(GUARD):
        await conn.close()
        await conn.close()  # and again


async def test_a_close_cancelled_midway_still_ends(tmp_path: Path) -> None:
    conn = await sqlite_driver.connect(str(tmp_path / "f.db"))
    closing = asyncio.create_task(conn.close())
    await asyncio.sleep(0)  # one turn: the close is queued on the connection's thread
    closing.cancel()
    async with asyncio.timeout(GUARD):
        await asyncio.gather(closing, return_exceptions=True)
        await conn.close()
