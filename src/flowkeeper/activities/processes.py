"""``run: shell`` and ``run: script``: subprocesses, off unless the operator enables them.

A process sees a minimal environment (``PATH``, ``HOME``, ``LANG``) plus what the
workflow gives it, never the engine's own environment, which holds its secrets. It
runs in its own session (process group) in a fresh temporary directory; on timeout or
cancellation the whole group is killed.

Arguments are argv, as the DSL says ("passed as argv to the command"): for a shell
command they are the positional parameters ``$1``, ``$2``, ``"$@"`` (the spec's own
example reads ``$1 $2``), for a script its ``sys.argv[1:]`` / ``process.argv[2:]``.
A mapping (older documents) becomes ``key value`` pairs, a ``null`` value a bare ``key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from flowkeeper.activities.options import ActivityOptions
from flowkeeper.engine.effects import ProcessRun
from flowkeeper.errors import standard_error

_RETURNS = ("stdout", "stderr", "code", "all", "none")
#: How much of stderr a non-zero exit's error detail quotes (its end: where errors are).
_STDERR_TAIL = 500
#: ES module syntax at the start of a line: such code must run as ``.mjs``.
_ESM = re.compile(r"^\s*(?:import\s*[\w{*'\"]|export\s)", re.MULTILINE)


class ProcessActivity:
    """Performs :class:`ProcessRun` effects."""

    def __init__(self, options: ActivityOptions) -> None:
        self._options = options
        #: Reapers of processes started with ``await: false``; kept so they are not
        #: garbage-collected mid-flight and can be stopped by :meth:`aclose`.
        self._detached: set[asyncio.Task[None]] = set()

    async def perform(self, effect: ProcessRun) -> Any:
        """Run the process; return what ``effect.returns`` asks for (``None`` if not awaited)."""
        if effect.returns not in _RETURNS:
            raise standard_error(
                "configuration",
                f"unknown process return {effect.returns!r} (one of {', '.join(_RETURNS)})",
                status=400,
            )
        workdir = Path(tempfile.mkdtemp(prefix="flowkeeper-run-"))
        try:
            argv = self._command(effect, workdir)
            stdin = None if effect.stdin is None else _text(effect.stdin).encode()
            process = await self._start(argv, effect, workdir, stdin is not None)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        if not effect.wait:
            task = asyncio.create_task(self._reap(process, stdin, workdir))
            self._detached.add(task)
            task.add_done_callback(self._detached.discard)
            return None
        try:
            code, stdout, stderr = await self._wait(process, stdin)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return _result(effect.returns, code, stdout, stderr)

    async def aclose(self) -> None:
        """Kill processes still running detached (``await: false``)."""
        for task in list(self._detached):
            task.cancel()
        await asyncio.gather(*self._detached, return_exceptions=True)

    # -- building the command ----------------------------------------------------------

    def _command(self, effect: ProcessRun, workdir: Path) -> list[str]:
        arguments = _arguments(effect.arguments)
        if effect.kind == "shell":
            if not self._options.shell_enabled:
                raise standard_error(
                    "configuration",
                    "run: shell is disabled; set processes.shell_enabled to true to allow it",
                    status=400,
                )
            if not effect.command:
                raise standard_error("configuration", "run: shell needs a command", status=400)
            # "sh" becomes $0, so the arguments are $1, $2, ... inside the command.
            return ["/bin/sh", "-c", effect.command, "sh", *arguments]
        if effect.kind != "script":
            raise standard_error("configuration", f"run: {effect.kind} is not supported", status=400)
        if not self._options.script_enabled:
            raise standard_error(
                "configuration",
                "run: script is disabled; set processes.script_enabled to true to allow it",
                status=400,
            )
        if effect.code is None:
            raise standard_error("configuration", "run: script needs inline code", status=400)
        language = (effect.language or "").lower()
        if language == "python":
            interpreter, suffix = self._options.python_executable, ".py"
        elif language in ("js", "javascript"):
            node = self._options.node_executable or shutil.which("node")
            if node is None:
                raise standard_error("configuration", "node is not installed", status=400)
            interpreter, suffix = node, ".mjs" if _ESM.search(effect.code) else ".cjs"
        else:
            raise standard_error(
                "configuration",
                f"script language {effect.language!r} is not supported (python, js)",
                status=400,
            )
        # A file rather than -c/-e, so argv looks as the DSL's examples expect
        # (process.argv[2] is the first argument in node).
        script = workdir / f"script{suffix}"
        script.write_text(effect.code, encoding="utf-8")
        return [interpreter, str(script), *arguments]

    async def _start(
        self, argv: list[str], effect: ProcessRun, workdir: Path, has_stdin: bool
    ) -> asyncio.subprocess.Process:
        output = asyncio.subprocess.PIPE if effect.wait else asyncio.subprocess.DEVNULL
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                # Never the engine's own stdin.
                stdin=asyncio.subprocess.PIPE if has_stdin else asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=_environment(effect.environment),
                cwd=workdir,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except OSError as exc:
            raise standard_error(
                "configuration", f"could not start {argv[0]}: {exc.strerror or exc}", status=400
            ) from None

    # -- waiting -------------------------------------------------------------------------

    async def _wait(self, process: asyncio.subprocess.Process, stdin: bytes | None) -> tuple[int, str, str]:
        timeout = self._options.process_timeout
        try:
            async with asyncio.timeout(timeout):
                out, err = await process.communicate(stdin)
        except TimeoutError:
            await _kill(process)
            raise standard_error(
                "timeout", f"process did not finish within {timeout:g}s and was killed", status=408
            ) from None
        except BaseException:  # cancelled (instance cancelled, worker stopping): no orphans
            await asyncio.shield(_kill(process))
            raise
        code = process.returncode if process.returncode is not None else -1
        return code, _decode(out), _decode(err)

    async def _reap(self, process: asyncio.subprocess.Process, stdin: bytes | None, workdir: Path) -> None:
        # A detached process is still bounded by process_timeout: it is the limit on
        # anything the engine starts, awaited or not.
        try:
            async with asyncio.timeout(self._options.process_timeout):
                await process.communicate(stdin)
        except TimeoutError:
            await _kill(process)  # nobody awaits the result: nothing to raise to
        except BaseException:
            await asyncio.shield(_kill(process))
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _result(returns: str, code: int, stdout: str, stderr: str) -> Any:
    if code != 0 and returns in ("stdout", "stderr", "none"):
        tail = stderr.strip()[-_STDERR_TAIL:]
        detail = f"process exited with code {code}" + (f": {tail}" if tail else "")
        raise standard_error("runtime", detail, status=500)
    if returns == "stdout":
        return stdout
    if returns == "stderr":
        return stderr
    if returns == "code":
        return code
    if returns == "all":
        return {"code": code, "stdout": stdout, "stderr": stderr}
    return None


def _decode(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", errors="replace")
    # One trailing newline is how a line ends, not part of the value (`echo hi` -> "hi").
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _arguments(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [_text(item) for item in value]
    if isinstance(value, dict):
        argv: list[str] = []
        for key, item in value.items():
            argv.append(str(key))
            if item is not None:
                argv.append(_text(item))
        return argv
    return [_text(value)]


def _environment(extra: dict[str, Any]) -> dict[str, str]:
    """A minimal environment plus the workflow's: the engine's own variables stay out."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    for name, value in (extra or {}).items():
        if value is not None:
            env[str(name)] = _text(value)
    return env
