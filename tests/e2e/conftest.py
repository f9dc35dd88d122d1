"""``service``: ``flowkeeper serve`` as a real process on a fresh database (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(check: object, deadline: float, what: str) -> None:
    assert callable(check)
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def service(store_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "FLOWKEEPER__DATABASE__URL": store_url,
            "FLOWKEEPER__DATABASE__MAX_POOL_SIZE": "10",
            "FLOWKEEPER__DATABASE__MIN_POOL_SIZE": "1",
            "FLOWKEEPER__SERVER__PORT": str(port),
            "FLOWKEEPER__SERVER__SHUTDOWN_GRACE_PERIOD": "10s",
        }
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "flowkeeper.cli", "serve", "--migrate"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"{base}/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_until(ready, time.monotonic() + 60, "the service to become ready")
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()
