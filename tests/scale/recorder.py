"""A loopback recorder: the HTTP service that workflows call and the outbox delivers to.

It runs in its own process (``python tests/scale/recorder.py --port N``: uvicorn with a
bare ASGI app), so that answering a thousand calls and webhook deliveries never
competes with the test's own client for one interpreter's GIL. It records every request
in memory and shows them over HTTP. :class:`Recorder` starts it and reads it back.

Routes (the recorded ones answer after recording the request):

``/call/...`` (any method)
    200 JSON ``{"ok": true, "path", "n": <requests at this path, this one included>,
    "seq": <global request number>}``. Query ``delay_ms=N`` answers N ms later;
    ``delay_first_ms=N`` only delays the first request at the path (a call that is slow
    for the first replica and fast for the one that takes over).
``/outbox/...`` (any method)
    204: a webhook sink. Its ``webhook-id``/``webhook-timestamp``/``webhook-signature``
    headers are recorded with the body.
``/fail/...`` (any method)
    500, always: a sink or service that never works.
any recorded path made to fail with ``POST /_control/fail {"path": "/outbox/x"}``
    500 from then on (``DELETE /_control/fail`` forgets every such path).

Read back (not recorded):

``GET /_records?prefix=/call&since=SEQ``
    ``{"records": [...], "last": SEQ}``: records whose path starts with ``prefix`` and
    whose ``seq`` is greater than ``since``, oldest first. A record is ``{"seq", "at"
    (epoch seconds, this process's clock), "method", "path", "query", "headers" (the
    interesting ones, lower-case names), "body" (text)}``.
``GET /_count?prefix=/call``
    ``{"count": N}``: cheap enough to poll.
``DELETE /_records``
    forget every record and per-path counter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

#: Headers worth keeping: idempotency of calls, identity and signature of webhook deliveries.
KEPT_HEADERS = (
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "ce-id",
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RecorderApp:
    """The ASGI application: routes above, records in memory (one event loop, no locks)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.per_path: Counter[str] = Counter()
        self.failing: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else is expected
            return
        body = await _read_body(receive)
        if body is None:  # the sender went away mid-request (a replica killed): no request
            return
        path: str = scope["path"]
        method: str = scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if path.startswith("/_"):
            status, answer = self.control(method, path, query, body)
            await _respond(send, status, answer)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.per_path[path] += 1
        n = self.per_path[path]
        record = {
            "seq": len(self.records) + 1,
            "at": time.time(),
            "method": method,
            "path": path,
            "query": {k: v[-1] for k, v in query.items()},
            "headers": {k: headers[k] for k in KEPT_HEADERS if k in headers},
            "body": body.decode("utf-8", errors="replace"),
        }
        self.records.append(record)
        if path.startswith("/fail/") or path in self.failing:
            await _respond(send, 500, {"error": "this path always fails", "path": path})
        elif path.startswith("/outbox/"):
            await _respond(send, 204, None)
        elif path.startswith("/call/"):
            delay = _int(query, "delay_ms") or (_int(query, "delay_first_ms") if n == 1 else 0)
            if delay:
                await asyncio.sleep(delay / 1000)
            await _respond(send, 200, {"ok": True, "path": path, "n": n, "seq": record["seq"]})
        else:
            await _respond(send, 404, {"error": "no such route", "path": path})

    def control(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        """The unrecorded read-back and control routes."""
        prefix = (query.get("prefix") or [""])[-1]
        if path == "/_records" and method == "GET":
            since = _int(query, "since")
            # seq is the 1-based list position, so "since" is a slice, not a scan.
            found = [r for r in self.records[since:] if r["path"].startswith(prefix)]
            return 200, {"records": found, "last": len(self.records)}
        if path == "/_records" and method == "DELETE":
            self.records.clear()
            self.per_path.clear()
            return 200, {"ok": True}
        if path == "/_count" and method == "GET":
            count = sum(n for p, n in self.per_path.items() if p.startswith(prefix))
            return 200, {"count": count}
        if path == "/_control/fail" and method == "POST":
            self.failing.add(str(json.loads(body)["path"]))
            return 200, {"failing": sorted(self.failing)}
        if path == "/_control/fail" and method == "DELETE":
            self.failing.clear()
            return 200, {"failing": []}
        return 404, {"error": "no such control route", "path": path}


def _int(query: dict[str, list[str]], name: str) -> int:
    values = query.get(name)
    return int(values[-1]) if values else 0


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body; None when the client disconnected before sending all of it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, payload: Any) -> None:
    content = b"" if payload is None else json.dumps(payload).encode()
    headers = [(b"content-length", str(len(content)).encode())]
    if payload is not None:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def serve(port: int) -> None:
    """Run the recorder on 127.0.0.1:``port`` until SIGTERM."""
    import uvicorn

    config = uvicorn.Config(
        RecorderApp(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # Many replicas keep connections open; a short keep-alive would only add reconnects.
        timeout_keep_alive=60,
        backlog=2048,
        # A held /call answer must not hold up the test's teardown.
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run()


# -- the test side --------------------------------------------------------------------------------


def die_with_parent() -> None:
    """``preexec_fn`` of the children: on Linux, SIGKILL the child when the process that
    started it dies, so a test run killed outright leaves no replica or recorder behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """A recorder process: start with :meth:`start`, read with the async methods, :meth:`close`."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=30)

    @classmethod
    async def start(cls, directory: Path, *, guard: float = 30.0) -> Recorder:
        """Spawn the recorder (its output in ``directory/recorder.log``) and wait until it answers."""
        port = free_port()
        log_path = directory / "recorder.log"
        recorder = cls(_spawn(port, log_path), port, log_path)
        process = recorder.process
        deadline = time.monotonic() + guard
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the recorder exited at start:\n{log_path.read_text(errors='replace')}")
            with contextlib.suppress(httpx.TransportError):
                await recorder.count()
                return recorder
            if time.monotonic() > deadline:
                await recorder.close()
                raise RuntimeError(f"the recorder did not answer within {guard:.0f} s")
            await asyncio.sleep(0.02)

    def url(self, path: str) -> str:
        """``base_url`` + ``path`` (which starts with ``/``)."""
        return self.base_url + path

    async def records(self, prefix: str = "") -> list[dict[str, Any]]:
        """Every record whose path starts with ``prefix``, oldest first."""
        response = await self._http.get("/_records", params={"prefix": prefix})
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()["records"]
        return records

    async def count(self, prefix: str = "") -> int:
        """How many requests reached a path starting with ``prefix``."""
        response = await self._http.get("/_count", params={"prefix": prefix})
        response.raise_for_status()
        return int(response.json()["count"])

    async def fail(self, path: str) -> None:
        """Answer 500 at ``path`` from now on."""
        (await self._http.post("/_control/fail", json={"path": path})).raise_for_status()

    async def reset(self) -> None:
        """Forget every record."""
        (await self._http.delete("/_records")).raise_for_status()

    async def close(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and the client."""
        await self._http.aclose()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)


def _spawn(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:  # a file, never a pipe: the child can never block on it
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.port)


if __name__ == "__main__":
    main()
