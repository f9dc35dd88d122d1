"""Remote commands: talk to a running ``flowkeeper serve`` over its REST API.

``flowkeeper definitions|instances|events ... --server URL`` print tables for people
and, with ``--json``, the API's JSON for scripts. Exit codes: 0 success; 1 a workflow
failed (``instances start --wait``) or the server could not be reached or answered
with a server error; 2 the request was refused (4xx: invalid, unknown, conflict);
3 ``--wait`` ran out before the instance ended.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from flowkeeper.cli.output import EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_SUSPENDED, emit_json

DEFAULT_SERVER = "http://127.0.0.1:8080"

ServerOption = Annotated[
    str,
    typer.Option("--server", envvar="FLOWKEEPER_SERVER", help="Base URL of the Flowkeeper service."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]

definitions_app = typer.Typer(help="Deploy and inspect workflow definitions.", no_args_is_help=True)
instances_app = typer.Typer(help="Start and manage workflow instances.", no_args_is_help=True)
events_app = typer.Typer(help="Send CloudEvents.", no_args_is_help=True)

out = Console()
err = Console(stderr=True)


# -- plumbing ---------------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _request(server: str, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; problem+json answers become readable messages and exit codes."""
    url = server.rstrip("/") + path
    try:
        response = httpx.request(method, url, timeout=30.0, **kwargs)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach Flowkeeper at {server}: {exc}", EXIT_FAILED)
    if response.status_code >= 400:
        _fail(_problem_text(response), EXIT_INVALID if response.status_code < 500 else EXIT_FAILED)
    if not response.content:
        return None
    return response.json()


def _problem_text(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if not isinstance(problem, dict):
        return f"HTTP {response.status_code}"
    title = problem.get("title") or f"HTTP {response.status_code}"
    detail = problem.get("detail")
    text = f"{title}: {detail}" if detail else str(title)
    for item in problem.get("errors") or []:
        if isinstance(item, dict):
            text += f"\n  {item.get('pointer') or '/'}: {item.get('message')}"
    return text


def _show(data: Any, as_json: bool, table: Table | None = None) -> None:
    if as_json or table is None:
        emit_json(data)
    else:
        out.print(table)


def _read_json(text: str | None, path: Path | None, what: str) -> Any:
    if text is not None and path is not None:
        _fail(f"give --{what} or --{what}-file, not both", EXIT_INVALID)
    try:
        if text is not None:
            return json.loads(text)
        if path is not None:
            return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"--{what} is not valid JSON: {exc}", EXIT_INVALID)
    return None


# -- definitions --------------------------------------------------------------------------------


@definitions_app.command("deploy")
def deploy(
    file: Annotated[Path, typer.Argument(help="Workflow definition (YAML or JSON).")],
    server: ServerOption = DEFAULT_SERVER,
    as_json: JsonOption = False,
) -> None:
    """Deploy a definition (a version is immutable: same content is fine, other content is refused)."""
    try:
        body = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}", EXIT_INVALID)
    kind = "application/json" if file.suffix.lower() == ".json" else "application/yaml"
    data = _request(server, "POST", "/api/v1/definitions", content=body, headers={"Content-Type": kind})
    if as_json:
        emit_json(data)
    else:
        out.print(f"deployed {data['namespace']}/{data['name']}/{data['version']}", highlight=False)


@definitions_app.command("list")
def list_definitions(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    as_json: JsonOption = False,
) -> None:
    """List deployed definitions."""
    data = _request(
        server, "GET", "/api/v1/definitions", params={"namespace": namespace} if namespace else None
    )
    items = data.get("items", data) if isinstance(data, dict) else data
    table = Table("namespace", "name", "version", "created")
    for d in items:
        table.add_row(d["namespace"], d["name"], d["version"], str(d.get("createdOn") or ""))
    _show(data, as_json, table)


@definitions_app.command("show")
def show_definition(
    namespace: str,
    name: str,
    version: Annotated[str | None, typer.Argument(help="Default: the latest version.")] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Print a definition (JSON)."""
    path = f"/api/v1/definitions/{namespace}/{name}" + (f"/{version}" if version else "")
    emit_json(_request(server, "GET", path))


# -- instances ----------------------------------------------------------------------------------


def _instance_table(items: list[dict[str, Any]]) -> Table:
    table = Table("id", "definition", "status", "activity", "created")
    for i in items:
        d = i.get("definition") or {}
        table.add_row(
            i["id"],
            f"{d.get('namespace')}/{d.get('name')}/{d.get('version')}",
            i["status"],
            str(i.get("currentActivityId") or ""),
            str(i.get("createdOn") or ""),
        )
    return table


@instances_app.command("start")
def start(
    namespace: str,
    name: str,
    version: Annotated[str | None, typer.Option(help="Default: the latest version.")] = None,
    input: Annotated[str | None, typer.Option("--input", help="Input as JSON.")] = None,
    input_file: Annotated[Path | None, typer.Option("--input-file", help="Input JSON file.")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Client-chosen instance id (idempotent).")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    wait: Annotated[
        float | None, typer.Option("--wait", help="Wait up to this many seconds for the end.")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    as_json: JsonOption = False,
) -> None:
    """Start an instance; with --wait, follow it to the end (exit 0 completed, 1 failed, 3 still going)."""
    body: dict[str, Any] = {"definition": {"namespace": namespace, "name": name}, "input": {}}
    if version:
        body["definition"]["version"] = version
    data_in = _read_json(input, input_file, "input")
    if data_in is not None:
        body["input"] = data_in
    if id:
        body["id"] = id
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    instance = _request(server, "POST", "/api/v1/instances", json=body, headers=headers)
    if wait is None:
        _show(instance, as_json, _instance_table([instance]))
        return
    instance = _follow(server, instance, wait)
    _show(instance, as_json, _instance_table([instance]))
    status = instance["status"]
    raise typer.Exit(
        EXIT_OK
        if status == "completed"
        else EXIT_FAILED
        if status in ("failed", "cancelled")
        else EXIT_SUSPENDED
    )


def _follow(server: str, instance: dict[str, Any], wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    delay = 0.05
    with err.status(f"instance {instance['id']}: {instance['status']}") as status:
        while instance["status"] not in ("completed", "failed", "cancelled") and time.monotonic() < deadline:
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 1.5, 1.0)
            instance = _request(server, "GET", f"/api/v1/instances/{instance['id']}")
            status.update(
                f"instance {instance['id']}: {instance['status']} {instance.get('currentActivityId') or ''}"
            )
    return instance


@instances_app.command("list")
def list_instances(
    status: Annotated[
        str | None, typer.Option(help="pending, running, suspended, completed, failed, cancelled")
    ] = None,
    namespace: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="From a previous page's nextCursor.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    as_json: JsonOption = False,
) -> None:
    """List instances, newest first."""
    params = {
        k: v
        for k, v in {"status": status, "namespace": namespace, "name": name, "cursor": cursor}.items()
        if v
    }
    params["limit"] = str(limit)
    data = _request(server, "GET", "/api/v1/instances", params=params)
    table = _instance_table(data["items"])
    _show(data, as_json, table)
    if not as_json and data.get("nextCursor"):
        err.print(f"more: --cursor {data['nextCursor']}", highlight=False)


@instances_app.command("show")
def show_instance(instance_id: str, server: ServerOption = DEFAULT_SERVER) -> None:
    """Print an instance (JSON): status, input, output, error, bookmarks."""
    emit_json(_request(server, "GET", f"/api/v1/instances/{instance_id}"))


@instances_app.command("log")
def instance_log(
    instance_id: str, server: ServerOption = DEFAULT_SERVER, as_json: JsonOption = False
) -> None:
    """Print an instance's execution log."""
    data = _request(server, "GET", f"/api/v1/instances/{instance_id}/log")
    table = Table("seq", "at", "event", "type", "reference")
    for e in data["items"]:
        table.add_row(
            str(e.get("seq")), str(e.get("at")), e["event"], str(e.get("type") or ""), e["reference"]
        )
    _show(data, as_json, table)


def _transition(action: str) -> Any:
    def command(instance_id: str, server: ServerOption = DEFAULT_SERVER, as_json: JsonOption = False) -> None:
        instance = _request(server, "POST", f"/api/v1/instances/{instance_id}/{action}")
        _show(instance, as_json, _instance_table([instance]))

    command.__doc__ = {
        "cancel": "Cancel an instance (and its child instances).",
        "retry": "Run a failed instance again from its failed activity.",
        "suspend": "Suspend an instance until it is resumed.",
        "resume": "Resume a suspended instance.",
    }[action]
    return command


for _action in ("cancel", "retry", "suspend", "resume"):
    instances_app.command(_action)(_transition(_action))


# -- events -------------------------------------------------------------------------------------


@events_app.command("send")
def send(
    type: Annotated[str, typer.Option("--type", help="CloudEvent type.")],
    source: Annotated[str, typer.Option("--source", help="CloudEvent source.")] = "flowkeeper-cli",
    data: Annotated[str | None, typer.Option("--data", help="Event data as JSON.")] = None,
    data_file: Annotated[Path | None, typer.Option("--data-file", help="Event data JSON file.")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Event id (default: a new UUID).")] = None,
    subject: Annotated[str | None, typer.Option("--subject")] = None,
    server: ServerOption = DEFAULT_SERVER,
    as_json: JsonOption = False,
) -> None:
    """Send one CloudEvent; prints how many waiting instances it resumed."""
    import uuid

    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": type,
    }
    payload = _read_json(data, data_file, "data")
    if payload is not None:
        event["data"] = payload
        event["datacontenttype"] = "application/json"
    if subject:
        event["subject"] = subject
    result = _request(
        server,
        "POST",
        "/api/v1/events",
        content=json.dumps(event).encode(),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    if as_json:
        emit_json(result)
    else:
        out.print(f"event {event['id']}: resumed {result.get('matched', 0)} instance(s)", highlight=False)
