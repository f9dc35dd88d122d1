"""``listen``: one, any (until an expression or an event), all, with correlation.

The runtime delivers an event to a bookmark when ``engine.events.match`` accepts it;
these tests play that part, and check that the interpreter keeps the DSL's promise
for what it then receives: "If [expect is] not set, the first extracted value will
be used as the correlation's expectation" (dsl-reference.md, Correlation).
"""

from __future__ import annotations

from typing import Any

from flowkeeper.engine import COMPLETED, WAITING
from flowkeeper.engine.effects import CreateBookmark
from flowkeeper.engine.events import match
from tests.unit.engine.harness import Run, one, only


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e-{kind}-{sorted(data.items())}",
        "source": "https://t",
        "type": kind,
        "data": data,
    }


def deliver(run: Run, bookmark: CreateBookmark, evt: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Deliver ``evt`` as the runtime would: only if the bookmark's filter accepts it."""
    assert match(bookmark.filter, evt) is not None, f"{evt} does not match {bookmark.filter}"
    return run.feed(bookmark, evt)


def test_listen_one_completes_with_the_first_matching_event_data() -> None:
    run = Run("""
    do:
      - ping:
          listen:
            to:
              one:
                with: {type: com.example.ping}
    """)
    step = run.start({})
    bookmark = one(step.effects, CreateBookmark)
    assert step.status == WAITING
    assert match(bookmark.filter, event("com.example.other")) is None
    step = deliver(run, bookmark, event("com.example.ping", n=1))
    assert (step.status, step.output) == (COMPLETED, [{"n": 1}])


def test_listen_can_read_the_whole_envelope() -> None:
    run = Run("""
    do:
      - ping:
          listen:
            to:
              one:
                with: {type: com.example.ping}
            read: envelope
    """)
    bookmark = one(run.start({}).effects, CreateBookmark)
    evt = event("com.example.ping", n=1)
    assert deliver(run, bookmark, evt).output == [evt]


def test_listen_one_with_an_expected_correlation_ignores_other_keys() -> None:
    run = Run("""
    do:
      - reply:
          listen:
            to:
              one:
                with: {type: com.example.reply}
                correlate:
                  order:
                    from: .data.order
                    expect: '${ .order }'
    """)
    bookmark = one(run.start({"order": "o-1"}).effects, CreateBookmark)
    assert match(bookmark.filter, event("com.example.reply", order="o-2")) is None
    assert deliver(run, bookmark, event("com.example.reply", order="o-1")).output == [{"order": "o-1"}]


def test_listen_any_until_an_expression_collects_events_until_it_holds() -> None:
    run = Run("""
    do:
      - ticks:
          listen:
            to:
              any:
                - with: {type: com.example.tick}
              until: '${ length >= 3 }'
    """)
    step = run.start({})
    outputs = []
    for n in range(1, 4):
        bookmark = one(step.effects, CreateBookmark)
        step = deliver(run, bookmark, event("com.example.tick", n=n))
        outputs.append(step.status)
    assert outputs == [WAITING, WAITING, COMPLETED]
    assert step.output == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_listen_any_until_an_event_stops_at_that_event_without_keeping_it() -> None:
    run = Run("""
    do:
      - ticks:
          listen:
            to:
              any:
                - with: {type: com.example.tick}
              until:
                one:
                  with: {type: com.example.stop}
    """)
    bookmark = one(run.start({}).effects, CreateBookmark)
    step = deliver(run, bookmark, event("com.example.tick", n=1))
    bookmark = one(step.effects, CreateBookmark)
    step = deliver(run, bookmark, event("com.example.tick", n=2))
    bookmark = one(step.effects, CreateBookmark)
    step = deliver(run, bookmark, event("com.example.stop", n=99))
    assert (step.status, step.output) == (COMPLETED, [{"n": 1}, {"n": 2}])


def test_listen_any_without_until_completes_on_any_one_of_its_filters() -> None:
    run = Run("""
    do:
      - either:
          listen:
            to:
              any:
                - with: {type: com.example.a}
                - with: {type: com.example.b}
    """)
    bookmark = one(run.start({}).effects, CreateBookmark)
    assert deliver(run, bookmark, event("com.example.b", v=2)).output == [{"v": 2}]


def test_listen_any_keeps_the_first_events_correlation_value_for_the_next_ones() -> None:
    run = Run("""
    do:
      - ticks:
          listen:
            to:
              any:
                - with: {type: com.example.tick}
                  correlate:
                    order: {from: .data.order}
              until: '${ length >= 2 }'
    """)
    bookmark = one(run.start({}).effects, CreateBookmark)
    step = deliver(run, bookmark, event("com.example.tick", order="o-1", n=1))
    bookmark = one(step.effects, CreateBookmark)
    assert match(bookmark.filter, event("com.example.tick", order="o-2", n=2)) is None


def test_listen_all_waits_for_every_filter_in_any_order() -> None:
    run = Run("""
    do:
      - both:
          listen:
            to:
              all:
                - with: {type: com.example.a}
                - with: {type: com.example.b}
    """)
    step = run.start({})
    first, second = only(step.effects, CreateBookmark)
    step = deliver(run, second, event("com.example.b", v="b"))
    assert step.status == WAITING
    step = deliver(run, first, event("com.example.a", v="a"))
    assert step.status == COMPLETED
    assert sorted(x["v"] for x in step.output) == ["a", "b"]


def test_listen_all_takes_the_first_events_correlation_value_as_the_expectation() -> None:
    run = Run("""
    do:
      - both:
          listen:
            to:
              all:
                - with: {type: com.example.a}
                  correlate:
                    order: {from: .data.order}
                - with: {type: com.example.b}
                  correlate:
                    order: {from: .data.order}
    """)
    step = run.start({})
    a, b = only(step.effects, CreateBookmark)
    step = deliver(run, b, event("com.example.b", order="o-1"))
    # An "a" for another order reaches the still-open bookmark but does not count.
    step = deliver(run, a, event("com.example.a", order="o-2"))
    assert step.status == WAITING
    again = one(step.effects, CreateBookmark)
    assert match(again.filter, event("com.example.a", order="o-2")) is None
    step = deliver(run, again, event("com.example.a", order="o-1"))
    assert step.status == COMPLETED
    assert sorted(x["order"] for x in step.output) == ["o-1", "o-1"]


def test_listen_foreach_runs_its_tasks_per_event() -> None:
    run = Run("""
    do:
      - ticks:
          listen:
            to:
              any:
                - with: {type: com.example.tick}
              until: '${ length >= 2 }'
          foreach:
            item: tick
            do:
              - square:
                  set:
                    square: '${ $tick.n * $tick.n }'
    """)
    bookmark = one(run.start({}).effects, CreateBookmark)
    step = deliver(run, bookmark, event("com.example.tick", n=3))
    bookmark = one(step.effects, CreateBookmark)
    step = deliver(run, bookmark, event("com.example.tick", n=4))
    assert (step.status, step.output) == (COMPLETED, [{"square": 9}, {"square": 16}])
