"""A live API on loopback: uvicorn in a thread with its own event loop, store and engine.

Schemathesis drives the API with blocking HTTP calls, so the app cannot share the test's
event loop; it gets one of its own here. The listening socket is bound (port 0) and
listening before the thread starts, so requests made right away queue in its backlog
until the server accepts them: no waiting for start-up is needed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.api import create_app
from flowkeeper.config import Settings
from flowkeeper.runtime import Engine
from flowkeeper.store import create_store

#: The longest the server thread may take to stop (a guard).
STOP_GUARD = 30.0


@contextmanager
def live_api(store_url: str, settings: Settings | None = None) -> Iterator[str]:
    """Serve the API over a fresh store on ``store_url``; yields the base URL."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then (with
    # proto 0, Nagle's algorithm and delayed ACKs add ~40 ms to every keep-alive answer).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config("unused:app", log_level="error", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    async def serve() -> None:
        store = create_store(store_url, min_pool_size=1, max_pool_size=5)
        await store.open()
        engine: Engine | None = None
        try:
            await store.migrate()
            engine = Engine(
                store, Activities(ActivityOptions(timeout=10.0), FunctionRegistry(entry_point_group=None))
            )
            config.app = create_app(engine, settings=settings or Settings())
            await server.serve(sockets=[sock])
        finally:
            if engine is not None:
                await engine.aclose()
            await store.close()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported to the test below
            failure.append(error)
            sock.close()  # refuse connections rather than leave them queued

    thread = threading.Thread(target=run, name="live-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_GUARD)
        sock.close()
    if failure:
        raise failure[0]
    assert not thread.is_alive(), "the live API did not stop"
