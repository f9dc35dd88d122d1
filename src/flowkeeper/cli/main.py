"""The ``flowkeeper`` command.

Exit codes (DESIGN.md's CLI contract): 0 success, 1 the workflow failed, 2 invalid
definition, input or usage, 3 still suspended when ``--wait`` ran out. Results go to
stdout as JSON; progress, logs and messages go to stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flowkeeper.cli import outbox_commands, remote
from flowkeeper.cli.output import fail
from flowkeeper.errors import ConfigurationError, DefinitionError, FlowkeeperError

if TYPE_CHECKING:
    from flowkeeper.config import Settings

app = typer.Typer(
    name="flowkeeper",
    help="Flowkeeper: a durable workflow engine for the Serverless Workflow DSL 1.0.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(remote.definitions_app, name="definitions")
app.add_typer(remote.instances_app, name="instances")
app.add_typer(remote.events_app, name="events")
app.add_typer(outbox_commands.outbox_app, name="outbox")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Settings file (YAML/JSON); default $FLOWKEEPER_CONFIG.")
]
VerboseOption = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr.")]


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="[%(asctime)s %(levelname).3s] %(name)s: %(message)s"
    )


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Workflow definition (YAML or JSON).")]) -> None:
    """Check a definition against the DSL schema and Flowkeeper's rules (exit 0 valid, 2 invalid)."""
    from flowkeeper.definitions import read_definition_file

    try:
        definition = read_definition_file(file)
    except DefinitionError as exc:
        fail(str(exc))
    typer.echo(f"valid: {definition.namespace}/{definition.name}/{definition.version}")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Workflow definition (YAML or JSON).")],
    input: Annotated[str | None, typer.Option("--input", help="Workflow input as JSON.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input-file", help="File holding the input (JSON or YAML).")
    ] = None,
    database: Annotated[
        str | None, typer.Option("--database", help="Database URL; default a temporary SQLite file.")
    ] = None,
    wait: Annotated[
        float | None, typer.Option("--wait", help="Seconds to wait for the end (default: no limit).")
    ] = None,
    execution_log: Annotated[
        Path | None, typer.Option("--execution-log", help="Write the execution log here (JSON lines).")
    ] = None,
    deploy: Annotated[
        list[Path] | None,
        typer.Option("--deploy", help="Also deploy this definition (for run: workflow). Repeatable."),
    ] = None,
    config: ConfigOption = None,
    verbose: VerboseOption = 0,
) -> None:
    """Run one instance to the end on an embedded store and print its output as JSON."""
    _logging(verbose)
    from flowkeeper.cli.run_command import RunRequest, run_workflow

    request = RunRequest(
        file=file,
        input_text=input,
        input_file=input_file,
        database=database,
        wait=wait,
        execution_log=execution_log,
        deploy=list(deploy or []),
        config=config,
    )
    raise typer.Exit(run_workflow(request))


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default server.host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Listen port (default server.port).")] = None,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="Apply pending database migrations first.")
    ] = False,
    deploy: Annotated[
        list[Path] | None, typer.Option("--deploy", help="Deploy these definition files or folders at start.")
    ] = None,
) -> None:
    """The service: REST API and background services in one process (embedded SQLite by default)."""
    from flowkeeper.cli.serve import run_loop
    from flowkeeper.cli.serve import serve as run_server

    settings = _settings(config, host=host, port=port)
    try:
        run_loop(run_server(settings, migrate=migrate, deploy=list(deploy or [])))
    except FlowkeeperError as exc:
        fail(str(exc))


@app.command()
def worker(
    config: ConfigOption = None,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="Apply pending database migrations first.")
    ] = False,
) -> None:
    """Background services only (dispatcher, timers, outbox, cleanup, schedules), for
    scaled-out deployments."""
    from flowkeeper.cli.serve import run_loop, work

    settings = _settings(config)
    try:
        run_loop(work(settings, migrate=migrate))
    except FlowkeeperError as exc:
        fail(str(exc))


def _settings(config: Path | None, *, host: str | None = None, port: int | None = None) -> Settings:
    from flowkeeper.config import load_settings
    from flowkeeper.observability import configure_logging

    try:
        settings = load_settings(config)
    except ConfigurationError as exc:
        fail(str(exc))
    if host is not None or port is not None:
        server = settings.server.model_copy(
            update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        )
        settings = settings.model_copy(update={"server": server})
    configure_logging(settings.logging)
    return settings


@db_app.command("upgrade")
def db_upgrade(
    database: Annotated[
        str | None, typer.Option("--database", help="Database URL; default database.url.")
    ] = None,
    config: ConfigOption = None,
    verbose: VerboseOption = 0,
) -> None:
    """Apply pending database migrations."""
    _logging(verbose)
    import asyncio

    from flowkeeper.config import load_settings
    from flowkeeper.runtime.bootstrap import open_store

    try:
        settings = load_settings(config)
    except ConfigurationError as exc:
        fail(str(exc))

    async def upgrade() -> str:
        store = open_store(settings, database)
        await store.open()
        try:
            await store.migrate()
            status = await store.schema_status()
            return status.head
        finally:
            await store.close()

    head = asyncio.run(upgrade())
    typer.echo(f"database is at revision {head}")


def main() -> None:
    """Console-script entry point."""
    app()
