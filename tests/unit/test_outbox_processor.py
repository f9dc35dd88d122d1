"""The outbox processor's arithmetic and reports, without a database."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import pytest

from flowkeeper.config import OutboxProcessorSettings
from flowkeeper.services.outbox import OutboxProcessor
from flowkeeper.store import Store

S = timedelta(seconds=1)


def processor(**kw: object) -> OutboxProcessor:
    return OutboxProcessor(cast(Store, None), OutboxProcessorSettings.model_validate(kw), sinks=[])


@pytest.mark.parametrize(
    ("settings", "delays"),
    [
        ({}, [1, 2, 4, 8, 16, 30, 30]),  # the guide's defaults: doubling from 1 s, at most 30 s
        ({"retry_delay_base": "250ms", "retry_delay_multiplier": 3}, [0.25, 0.75, 2.25, 6.75, 20.25, 30, 30]),
        ({"retry_delay_multiplier": 1, "max_retry_delay": "5s"}, [1, 1, 1, 1, 1, 1, 1]),
    ],
)
def test_retry_delays_grow_to_the_cap(settings: dict[str, object], delays: list[float]) -> None:
    p = processor(**settings)
    assert [p.retry_delay(n).total_seconds() for n in range(1, 8)] == delays


def test_a_huge_attempt_count_is_capped_not_an_overflow() -> None:
    assert processor(retry_delay_multiplier=10).retry_delay(5000) == 30 * S


def test_health_before_start_and_without_sinks() -> None:
    p = processor()
    assert p.health().status == "Healthy"
    assert "no external sink configured" in (p.health().description or "")
    assert p.name == "outbox-processor"
    assert p.max_in_flight == 100
    assert p.owner.count("-outbox-") == 1
    assert p.figures().deliveries == {}
