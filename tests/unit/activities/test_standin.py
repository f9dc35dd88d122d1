"""The shared loopback stand-in itself (used from sync code here, as other suites may)."""

from __future__ import annotations

import httpx

from tests.support.standin import StandIn, start_standin


def test_records_every_request_until_reset(standin: StandIn) -> None:
    httpx.post(standin.url("/rec/a?x=1&x=2"), json={"k": "v"}, headers={"X-Thing": "T"})
    httpx.get(standin.url("/nowhere"))
    first, second = standin.requests
    assert (first.method, first.path, first.query, first.body) == (
        "POST",
        "/rec/a",
        {"x": ["1", "2"]},
        {"k": "v"},
    )
    assert first.headers["x-thing"] == "T"
    assert second.path == "/nowhere"
    standin.reset()
    assert standin.requests == []


def test_rec_counts_per_path_and_echoes(standin: StandIn) -> None:
    assert httpx.post(standin.url("/rec/b"), json=[1]).json() == {"ok": True, "count": 1, "echo": [1]}
    assert httpx.post(standin.url("/rec/b")).json()["count"] == 2
    assert httpx.post(standin.url("/rec/c")).json()["count"] == 1


def test_flaky_fails_then_succeeds_per_path(standin: StandIn) -> None:
    codes = [httpx.get(standin.url("/flaky/x?fail=2")).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert httpx.get(standin.url("/flaky/y?fail=1")).status_code == 503
    standin.reset()
    assert httpx.get(standin.url("/flaky/x?fail=1")).status_code == 503


def test_swagger_document_points_at_the_stand_in(standin: StandIn) -> None:
    document = httpx.get(standin.url("/v2/swagger.json")).json()
    assert document["host"] == f"127.0.0.1:{standin.port}"
    assert {"findPetsByStatus", "getPetById", "addPet"} <= {
        op["operationId"] for item in document["paths"].values() for op in item.values()
    }


def test_ctk_routes(standin: StandIn) -> None:
    pets = httpx.get(standin.url("/v2/pet/findByStatus?status=available")).json()
    assert {p["status"] for p in pets} == {"available"}
    assert httpx.get(standin.url("/v2/pet/1")).json()["id"] == 1
    assert httpx.get(standin.url("/v2/pet/getPetByName/rex")).status_code == 404
    ok = httpx.get(standin.url("/basic-auth/u/p"), auth=("u", "p"))
    assert ok.status_code == 200
    assert httpx.get(standin.url("/basic-auth/u/p"), auth=("u", "x")).status_code == 401


def test_unknown_route_is_404(standin: StandIn) -> None:
    response = httpx.get(standin.url("/no/such"))
    assert response.status_code == 404
    assert response.json()["path"] == "/no/such"


def test_own_instance_stops_cleanly() -> None:
    with start_standin() as server:
        assert httpx.get(server.url("/text")).text == "hello from the stand-in"
    server.stop()  # idempotent
