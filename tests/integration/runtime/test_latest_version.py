"""Version-less starts: the latest version is cached briefly, and forgotten on a deploy
(here, or announced by another replica)."""

from __future__ import annotations

import pytest

from flowkeeper.runtime import Engine
from flowkeeper.runtime import definitions as cache_module
from tests.integration.runtime.conftest import deploy

BODY = "do:\n  - note:\n      set: {version: '%s'}\n"


async def test_the_latest_version_is_read_once_per_ttl_and_forgotten_on_deploy(
    engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, elsewhere = engines(), engines()
    clock = [1000.0]
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: clock[0])
    await deploy(here, BODY % "1", version="1.0.0")
    reads = 0
    real = here.store.get_definition

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(here.store, "get_definition", counting)
    for _ in range(5):
        record, _ = await here.definitions.get("tests", "wf", None)
        assert record.version == "1.0.0"
    assert reads == 1

    await deploy(elsewhere, BODY % "2", version="2.0.0")  # another replica
    assert (await here.definitions.get("tests", "wf", None))[0].version == "1.0.0"  # within the TTL
    here.definitions.forget_latest()  # what its notification does
    assert (await here.definitions.get("tests", "wf", None))[0].version == "2.0.0"

    await deploy(elsewhere, BODY % "3", version="3.0.0")
    clock[0] += cache_module.LATEST_TTL + 0.1  # or the TTL runs out
    assert (await here.definitions.get("tests", "wf", None))[0].version == "3.0.0"

    await deploy(here, BODY % "4", version="4.0.0")  # a deploy here is seen at once
    assert (await here.definitions.get("tests", "wf", None))[0].version == "4.0.0"


async def test_a_version_less_start_runs_the_latest(engine: Engine) -> None:
    await deploy(engine, BODY % "1", version="1.0.0")
    await deploy(engine, BODY % "2", version="2.0.0")
    started = await engine.start("tests", "wf", None, {})
    assert started.version == "2.0.0"
