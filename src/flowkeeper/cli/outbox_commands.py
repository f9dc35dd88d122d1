"""``flowkeeper outbox ...``: the events workflows emitted, as a running service's API shows them.

``list`` (optionally ``--status dead``: the ones that need an operator), ``show ID`` and
``requeue ID`` (a dead event goes back to ``pending``; every sink that lacks it gets it
again, with the same event id). Tables for people, ``--json`` for scripts; exit codes as
the other remote commands: 0 success, 1 the server could not be reached or failed,
2 the request was refused (bad input, unknown id, not dead).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from flowkeeper.cli.output import emit_json
from flowkeeper.cli.remote import DEFAULT_SERVER, JsonOption, ServerOption, _request, _show, err
from flowkeeper.records import OutboxStatus

outbox_app = typer.Typer(help="Inspect and re-queue events emitted by workflows.", no_args_is_help=True)


def _path(outbox_id: str, action: str = "") -> str:
    # Event ids are chosen by workflows: keep any character inside one path segment.
    return f"/api/v1/outbox/{quote(outbox_id, safe='')}" + (f"/{action}" if action else "")


def _table(items: list[dict[str, Any]]) -> Table:
    table = Table("id", "status", "attempts", "type", "delivered to", "last error")
    for item in items:
        error = item.get("lastError") or ""
        table.add_row(
            item["id"],
            item["status"],
            str(item.get("attempts", "")),
            str((item.get("event") or {}).get("type") or ""),
            ", ".join(item.get("deliveredTo") or []),
            error if len(error) <= 80 else error[:77] + "...",
        )
    return table


@outbox_app.command("list")
def list_outbox(
    status: Annotated[OutboxStatus | None, typer.Option(help="Only events in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="From a previous page's nextCursor.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    as_json: JsonOption = False,
) -> None:
    """List emitted events, oldest first, with their delivery state."""
    params = {"limit": str(limit)}
    if status is not None:
        params["status"] = status.value
    if cursor:
        params["cursor"] = cursor
    data = _request(server, "GET", "/api/v1/outbox", params=params)
    _show(data, as_json, _table(data["items"]))
    if not as_json and data.get("nextCursor"):
        err.print(f"more: --cursor {data['nextCursor']}", highlight=False)


@outbox_app.command("show")
def show_outbox(
    outbox_id: Annotated[str, typer.Argument(help="The event id.")], server: ServerOption = DEFAULT_SERVER
) -> None:
    """Print one emitted event (JSON): the CloudEvent, status, attempts, last error, sinks reached."""
    emit_json(_request(server, "GET", _path(outbox_id)))


@outbox_app.command("requeue")
def requeue_outbox(
    outbox_id: Annotated[str, typer.Argument(help="The id of a dead event.")],
    server: ServerOption = DEFAULT_SERVER,
    as_json: JsonOption = False,
) -> None:
    """Deliver a dead event again (to the sinks that do not have it yet)."""
    data = _request(server, "POST", _path(outbox_id, "requeue"))
    _show(data, as_json, _table([data]))
