"""Engine processes (``driver.py``) for the kill tests: started, SIGKILLed, reaped.

Each child is a real interpreter running ``tests/kill/driver.py``; its stdout and stderr
go to files under ``tmp_path`` (files, not pipes: a chatty child can never block on a
full pipe, and the test reads what it printed so far at any time). Every child still
alive when the test ends is SIGKILLed and reaped.

Synchronisation is by polling a condition (the database, the stand-in, the child's
stdout) under a deadline; the deadline only turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

DRIVER = Path(__file__).with_name("driver.py")
REPO = Path(__file__).resolve().parents[2]

#: What the children run with: a short lease so a dead process's instances are claimable
#: again 2 s later, a short poll, and small pools (many xdist workers share PostgreSQL).
CHILD_SETTINGS = {
    "FLOWKEEPER__ENGINE__LEASE_DURATION": "2s",
    "FLOWKEEPER__ENGINE__POLL_INTERVAL": "200ms",
    "FLOWKEEPER__DATABASE__MIN_POOL_SIZE": "1",
    "FLOWKEEPER__DATABASE__MAX_POOL_SIZE": "10",
}

#: Only turns a hang into a failure; nothing here is expected to come near it.
HANG_GUARD = 90.0
POLL = 0.01


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWKEEPER")}
    env.update(CHILD_SETTINGS)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _open_output(path: Path) -> IO[bytes]:
    return path.open("wb")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@dataclass
class Child:
    """One driver process and where its output goes."""

    name: str
    process: asyncio.subprocess.Process
    stdout_path: Path
    stderr_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def stdout(self) -> str:
        return _read(self.stdout_path)

    def lines(self) -> list[str]:
        """Complete stdout lines printed so far."""
        text = self.stdout()
        return text[: text.rfind("\n") + 1].splitlines()

    def stderr(self) -> str:
        return _read(self.stderr_path)

    def describe(self, tail: int = 12_000) -> str:
        """Name, pid, exit status and the end of stderr: for assertion messages."""
        err = self.stderr()
        if len(err) > tail:
            err = "[...]\n" + err[-tail:]
        return (
            f"{self.name} (pid {self.pid}, exit {self.process.returncode}) {' '.join(self.args)}\n"
            f"--- stdout ---\n{self.stdout()[-4000:]}\n--- stderr ---\n{err}"
        )


class Processes:
    """Starts driver processes; SIGKILLs and reaps whatever is left in :meth:`close`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.children: list[Child] = []

    async def spawn(self, name: str, *args: str) -> Child:
        out, err = self.directory / f"{name}.stdout", self.directory / f"{name}.stderr"
        stdout, stderr = _open_output(out), _open_output(err)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(DRIVER),
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=_child_env(),
                cwd=REPO,
            )
        finally:
            stdout.close()
            stderr.close()
        child = Child(name, process, out, err, list(args))
        self.children.append(child)
        return child

    async def kill(self, child: Child) -> None:
        """SIGKILL (no cleanup of any kind in the child) and reap."""
        if child.alive:
            with contextlib.suppress(ProcessLookupError):  # died on its own meanwhile
                os.kill(child.pid, signal.SIGKILL)
        await child.process.wait()

    async def finish(self, child: Child) -> int:
        """Wait for the child to exit on its own; a hang is killed and fails the test."""
        try:
            return await asyncio.wait_for(child.process.wait(), HANG_GUARD)
        except TimeoutError:
            await self.kill(child)
            pytest.fail(f"{child.name} did not finish within {HANG_GUARD:.0f} s\n{child.describe()}")

    async def close(self) -> None:
        """SIGKILL every child still alive and reap them all."""
        for child in self.children:
            await self.kill(child)


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str, *, watch: Child) -> None:
    """Poll ``condition`` until it holds; fail if ``watch`` exits first or the guard runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_GUARD
    while not await condition():
        if not watch.alive:
            pytest.fail(f"{watch.name} exited while waiting for {what}\n{watch.describe()}")
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for {what} after {HANG_GUARD:.0f} s\n{watch.describe()}")
        await asyncio.sleep(POLL)
