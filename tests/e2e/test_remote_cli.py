"""The remote CLI against a real ``flowkeeper serve``: stdout, exit codes, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WAITER = """
document: {dsl: '1.0.3', namespace: cli, name: waiter, version: '1.0.0'}
do:
  - approval:
      listen:
        to:
          one:
            with: {type: com.example.approved.v1}
  - done:
      set: {approved: true}
"""


def cli(base: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLOWKEEPER_SERVER=base)
    return subprocess.run(
        [sys.executable, "-m", "flowkeeper.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_deploy_start_wait_list_show_log(
    service: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    base, _ = service
    hello = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"
    deployed = cli(base, "definitions", "deploy", str(hello), "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["name"] == "hello"

    started = cli(
        base,
        "instances",
        "start",
        "examples",
        "hello",
        "--input",
        '{"name": "Ada"}',
        "--wait",
        "30",
        "--json",
    )
    assert started.returncode == 0, started.stderr
    instance = json.loads(started.stdout)
    assert instance["status"] == "completed"
    assert instance["output"] == {"greeting": "Hello, Ada!"}

    listed = cli(base, "instances", "list", "--status", "completed", "--json")
    assert listed.returncode == 0
    assert instance["id"] in [i["id"] for i in json.loads(listed.stdout)["items"]]

    shown = cli(base, "instances", "show", instance["id"])
    assert json.loads(shown.stdout)["id"] == instance["id"]

    log = cli(base, "instances", "log", instance["id"], "--json")
    events = [(e["reference"], e["event"]) for e in json.loads(log.stdout)["items"]]
    assert ("/do/0/greet", "completed") in events

    table = cli(base, "definitions", "list")
    assert table.returncode == 0
    assert "hello" in table.stdout


def test_events_send_resumes_and_cancel_refuses_a_finished_instance(
    service: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    base, _ = service
    definition = tmp_path / "waiter.yaml"
    definition.write_text(WAITER)
    assert cli(base, "definitions", "deploy", str(definition)).returncode == 0

    waiting = cli(base, "instances", "start", "cli", "waiter", "--wait", "0", "--json")
    assert waiting.returncode == 3, waiting.stderr  # still going when --wait ran out
    instance_id = json.loads(waiting.stdout)["id"]

    sent = cli(
        base, "events", "send", "--type", "com.example.approved.v1", "--data", '{"by": "ops"}', "--json"
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["matched"] == 1

    followed = cli(base, "instances", "start", "cli", "waiter", "--id", instance_id, "--wait", "30", "--json")
    assert followed.returncode == 0, followed.stderr  # same id, same request: the existing instance
    assert json.loads(followed.stdout)["output"] == {"approved": True}

    refused = cli(base, "instances", "cancel", instance_id)
    assert refused.returncode == 2
    assert "completed" in refused.stderr

    unknown = cli(base, "instances", "show", "no-such-instance")
    assert unknown.returncode == 2
    assert unknown.stdout == ""
