"""Fixtures of the scale tests: a fresh PostgreSQL database, the recorder, replica clusters.

- ``scale_database``: this xdist worker's PostgreSQL database (``tests/conftest.py``
  creates one per worker), emptied of every table: each test starts from nothing.
- ``recorder``: a :class:`~tests.scale.recorder.Recorder` process of this test.
- ``make_cluster``: ``await make_cluster(replicas=3, sinks=[...], env={...})`` migrates
  the database and starts the replicas. ``sinks`` go into the settings file as
  ``outbox_processor.sinks``; when this Flowkeeper's settings refuse them (the outbox
  processor has not landed yet), the cluster starts without them and
  ``cluster.sinks_refused`` says why, so a test can skip what needs them. Replicas are
  stopped at teardown (SIGTERM, then SIGKILL); when the test failed, their logs are
  printed (pytest shows them under "Captured stdout teardown").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkeeper.config import load_settings
from flowkeeper.errors import ConfigurationError
from tests.conftest import _reset_postgres
from tests.scale.cluster import Cluster
from tests.scale.recorder import Recorder

#: The secret of every webhook sink in these tests (deliveries are signed with it).
SINK_SECRET = "test-secret"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Keep each phase's report on the item, so teardown knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def scale_database(postgres_database: str) -> str:
    """The worker's PostgreSQL database with no schema at all (each replica cluster migrates it)."""
    asyncio.run(_reset_postgres(postgres_database, migrated=False))
    return postgres_database


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[Recorder]:
    """This test's recorder process."""
    started = await Recorder.start(tmp_path)
    try:
        yield started
    finally:
        await started.close()


def webhook_sink(recorder: Recorder, name: str, path: str | None = None) -> dict[str, Any]:
    """A webhook sink named ``name`` delivering to the recorder at ``path`` (default ``/outbox/<name>``)."""
    return {
        "name": name,
        "type": "webhook",
        "url": recorder.url(path or f"/outbox/{name}"),
        "secret": SINK_SECRET,
    }


MakeCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def make_cluster(
    scale_database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[MakeCluster]:
    """``await make_cluster(replicas=3, sinks=None, outbox=None, env=None)``; see the module doc."""
    clusters: list[Cluster] = []

    async def make(
        replicas: int = 3,
        *,
        sinks: list[dict[str, Any]] | None = None,
        outbox: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> Cluster:
        directory = tmp_path / f"cluster-{len(clusters)}"
        directory.mkdir()
        # Deliveries are polled for at least this often, whoever committed the row.
        section: dict[str, Any] = {"processing_interval": "250ms", **(outbox or {})}
        refused = None
        if sinks:
            section["sinks"] = sinks
            unknown = _unknown_outbox_keys({"outbox_processor": section}, directory)
            if unknown:
                # The outbox processor has not landed: start without what it would read,
                # so the rest of the test still runs, and say so.
                refused = f"this Flowkeeper refuses the outbox settings {sorted(unknown)} as unknown"
                section = {k: v for k, v in section.items() if k not in unknown}
        cluster = Cluster(
            scale_database,
            directory,
            config={"outbox_processor": section},
            env=env or {},
            sinks_refused=refused,
        )
        clusters.append(cluster)
        await cluster.start(replicas)
        return cluster

    try:
        yield make
    finally:
        failed = any(
            getattr(getattr(request.node, f"report_{when}", None), "failed", False)
            for when in ("setup", "call")
        )
        for cluster in clusters:
            if failed:
                print(f"\n===== replica logs of {cluster.directory} =====\n{cluster.describe(tail=200)}")
            await cluster.close()


#: Keys the outbox processor brings; a Flowkeeper without it refuses them as unknown.
OUTBOX_KEYS = frozenset({"sinks", "retry_delay_base"})


def _unknown_outbox_keys(config: dict[str, Any], directory: Path) -> set[str]:
    """The outbox keys of ``config`` this Flowkeeper's settings refuse as unknown (none: empty).

    The check is ``load_settings`` on the file, what ``flowkeeper serve --config`` does
    first. Any other refusal is a mistake in the test's settings: it fails the test.
    """
    import yaml

    path = directory / "probe.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    try:
        load_settings(path, env={})
    except ConfigurationError as exc:
        unknown = set()
        for line in str(exc).splitlines():
            key, _, message = line.partition(": ")
            section, _, name = key.partition(".")
            name = name.split(".")[0].split("[")[0]
            if section != "outbox_processor" or name not in OUTBOX_KEYS or message != "unknown setting":
                raise AssertionError(f"the settings refuse the test's configuration:\n{exc}") from None
            unknown.add(name)
        return unknown
    return set()
