"""``run: shell`` / ``run: script``: opt-in, outputs, exit codes, timeouts, isolation."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError
from tests.unit.activities.builders import script, shell

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


@pytest.fixture
async def runner() -> AsyncIterator[Activities]:
    """Activities with shell and scripts enabled."""
    options = ActivityOptions(shell_enabled=True, script_enabled=True, process_timeout=20.0)
    performer = Activities(options, FunctionRegistry(entry_point_group=None))
    yield performer
    await performer.aclose()


def _dead(pid: int) -> bool:
    """True when ``pid`` is gone or a zombie (PID 1 of a container may not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return state in ("Z", "X")


async def _eventually(check: object, attempts: int = 100) -> bool:
    for _ in range(attempts):
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


# -- opt-in ------------------------------------------------------------------------------------


async def test_shell_is_disabled_by_default(activities: Activities) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(shell("echo hi"))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"
    assert caught.value.status == 400
    assert caught.value.detail == "run: shell is disabled; set processes.shell_enabled to true to allow it"


async def test_script_is_disabled_by_default(activities: Activities) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(script("python", "print(1)"))
    assert caught.value.detail == "run: script is disabled; set processes.script_enabled to true to allow it"


# -- shell outputs ---------------------------------------------------------------------------------

_BOTH = "echo out; echo err >&2"


@pytest.mark.parametrize(
    ("returns", "expected"),
    [
        ("stdout", "out"),
        ("stderr", "err"),
        ("code", 0),
        ("all", {"code": 0, "stdout": "out", "stderr": "err"}),
        ("none", None),
    ],
)
async def test_shell_returns(runner: Activities, returns: str, expected: object) -> None:
    assert await runner.perform(shell(_BOTH, returns=returns)) == expected


async def test_only_one_trailing_newline_is_stripped(runner: Activities) -> None:
    assert await runner.perform(shell("printf 'a\\n\\n'")) == "a\n"


async def test_non_zero_exit_raises_for_stdout(runner: Activities) -> None:
    with pytest.raises(WorkflowError) as caught:
        await runner.perform(shell("echo partial; echo 'it broke' >&2; exit 3"))
    assert caught.value.type == ERROR_TYPE_BASE + "runtime"
    assert caught.value.status == 500
    assert caught.value.detail == "process exited with code 3: it broke"


@pytest.mark.parametrize("returns", ["stderr", "none"])
async def test_non_zero_exit_raises_for_stderr_and_none(runner: Activities, returns: str) -> None:
    with pytest.raises(WorkflowError):
        await runner.perform(shell("exit 1", returns=returns))


async def test_non_zero_exit_is_a_result_for_code_and_all(runner: Activities) -> None:
    assert await runner.perform(shell("exit 4", returns="code")) == 4
    assert await runner.perform(shell("echo no >&2; exit 2", returns="all")) == {
        "code": 2,
        "stdout": "",
        "stderr": "no",
    }


async def test_stdin_and_arguments_like_the_spec_example(runner: Activities) -> None:
    command = 'input=$(cat)\necho "STDIN was: $input"\necho "ARGS are $1 $2"'
    out = await runner.perform(shell(command, stdin="Hello World", arguments=["Foo", "Bar"]))
    assert out == "STDIN was: Hello World\nARGS are Foo Bar"


async def test_arguments_are_not_interpreted_by_the_shell(runner: Activities) -> None:
    out = await runner.perform(shell('printf "%s|" "$@"', arguments=["a b", "$(id)", "; rm -rf x"]))
    assert out == "a b|$(id)|; rm -rf x|"


async def test_mapping_arguments_become_key_value_pairs(runner: Activities) -> None:
    out = await runner.perform(shell('printf "%s " "$@"', arguments={"--name": "rex", "--verbose": None}))
    assert out == "--name rex --verbose "


async def test_engine_environment_does_not_leak(runner: Activities, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKEEPER_TEST_SECRET", "hunter2")
    out = await runner.perform(
        shell('echo "${FLOWKEEPER_TEST_SECRET:-unset} $GREETING"', environment={"GREETING": "hi"})
    )
    assert out == "unset hi"


async def test_process_runs_in_a_scratch_directory(runner: Activities) -> None:
    cwd = await runner.perform(shell("pwd"))
    assert Path(cwd).name.startswith("flowkeeper-run-")
    assert cwd != os.getcwd()
    assert not await asyncio.to_thread(Path(cwd).exists)  # removed afterwards


# -- timeouts and cancellation -------------------------------------------------------------------


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    options = ActivityOptions(shell_enabled=True, process_timeout=0.5)
    async with Activities(options, FunctionRegistry(entry_point_group=None)) as performer:
        with pytest.raises(WorkflowError) as caught:
            await performer.perform(shell(f'sleep 30 & echo $! > "{pid_file}"; sleep 30'))
    assert caught.value.type == ERROR_TYPE_BASE + "timeout"
    assert caught.value.status == 408
    assert await _eventually(lambda: _dead(int(pid_file.read_text())))  # the background child too


async def test_cancellation_kills_the_process(runner: Activities, tmp_path: Path) -> None:
    pid_file = tmp_path / "sh.pid"
    task = asyncio.create_task(runner.perform(shell(f'echo $$ > "{pid_file}"; sleep 30')))
    assert await _eventually(lambda: pid_file.exists() and pid_file.read_text().strip())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _eventually(lambda: _dead(int(pid_file.read_text())))


async def test_not_awaited_process_runs_detached(runner: Activities, tmp_path: Path) -> None:
    marker = tmp_path / "done"
    assert await runner.perform(shell(f'echo finished > "{marker}"', wait=False)) is None
    assert await _eventually(lambda: marker.exists() and marker.read_text() == "finished\n")


async def test_unknown_return_is_a_configuration_error(runner: Activities) -> None:
    with pytest.raises(WorkflowError) as caught:
        await runner.perform(shell("true", returns="everything"))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"


# -- scripts ---------------------------------------------------------------------------------------------


async def test_python_script_with_arguments_stdin_and_environment(runner: Activities) -> None:
    code = "import os, sys\nprint(sys.argv[1:], sys.stdin.read(), os.environ['FOO'])"
    out = await runner.perform(
        script("python", code, arguments=["hello", "world"], stdin="in", environment={"FOO": "bar"})
    )
    assert out == "['hello', 'world'] in bar"


async def test_python_script_failure(runner: Activities) -> None:
    with pytest.raises(WorkflowError) as caught:
        await runner.perform(script("python", "raise SystemExit('bad things')"))
    assert caught.value.detail == "process exited with code 1: bad things"


async def test_unsupported_language(runner: Activities) -> None:
    with pytest.raises(WorkflowError) as caught:
        await runner.perform(script("cobol", "DISPLAY 'HI'."))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"


async def test_missing_node_is_a_configuration_error(tmp_path: Path) -> None:
    options = ActivityOptions(script_enabled=True, node_executable=str(tmp_path / "no-node"))
    async with Activities(options, FunctionRegistry(entry_point_group=None)) as performer:
        with pytest.raises(WorkflowError) as caught:
            await performer.perform(script("js", "console.log(1)"))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"


@pytest.mark.skipif(NODE is None, reason="node is not installed")
async def test_javascript_like_the_spec_example(runner: Activities) -> None:
    code = "const [_, __, arg0, arg1] = process.argv;\nconsole.log('arg > ', arg0, arg1)"
    assert (
        await runner.perform(script("javascript", code, arguments=["hello", "world"])) == "arg >  hello world"
    )


@pytest.mark.skipif(NODE is None, reason="node is not installed")
async def test_javascript_module_with_stdin_and_environment(runner: Activities) -> None:
    code = (
        "import { readFileSync } from 'node:fs';\n"
        "const stdin = readFileSync(process.stdin.fd, 'utf8');\n"
        "console.log(stdin, process.argv[2], process.env.foo)"
    )
    out = await runner.perform(
        script("js", code, stdin="Hello Workflow", arguments=["hello"], environment={"foo": "bar"})
    )
    assert out == "Hello Workflow hello bar"
