"""``call: http``: request building, output modes, errors, redirects, destinations, timeouts."""

from __future__ import annotations

import base64
import socket

import pytest

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError
from tests.support.standin import StandIn
from tests.unit.activities.builders import auth, http


def _activities(**options: object) -> Activities:
    return Activities(ActivityOptions(**options), FunctionRegistry(entry_point_group=None))  # type: ignore[arg-type]


# -- output modes ----------------------------------------------------------------------


async def test_content_output_decodes_json(activities: Activities, standin: StandIn) -> None:
    pets = await activities.perform(http(standin.url("/v2/pet/findByStatus?status=available")))
    assert [p["status"] for p in pets] == ["available", "available"]
    assert {"id", "name", "status"} <= set(pets[0])


async def test_content_output_is_text_for_text(activities: Activities, standin: StandIn) -> None:
    assert await activities.perform(http(standin.url("/text"))) == "hello from the stand-in"


async def test_content_output_of_non_text_bytes_is_base64(activities: Activities, standin: StandIn) -> None:
    content = await activities.perform(http(standin.url("/bytes")))
    assert base64.b64decode(content) == b"\x00\x01\xfe\xff"


async def test_empty_body_is_none(activities: Activities, standin: StandIn) -> None:
    assert await activities.perform(http(standin.url("/status/204"))) is None
    assert await activities.perform(http(standin.url("/status/204"), output="raw")) is None


async def test_response_output_has_the_dsl_shape(activities: Activities, standin: StandIn) -> None:
    out = await activities.perform(
        http(standin.url("/v2/pet/1"), output="response", authentication=auth("bearer", token="t0ps3cret"))
    )
    assert out["statusCode"] == 200
    assert out["content"]["id"] == 1
    assert out["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in out["headers"])
    assert out["request"]["method"] == "GET"
    assert out["request"]["uri"] == standin.url("/v2/pet/1")
    assert out["request"]["headers"]["authorization"] == "***"
    assert "t0ps3cret" not in repr(out)
    # ... while the server did get the real credentials.
    assert standin.requests[-1].headers["authorization"] == "Bearer t0ps3cret"


async def test_raw_output_is_base64_of_the_body(activities: Activities, standin: StandIn) -> None:
    raw = await activities.perform(http(standin.url("/text"), output="raw"))
    assert base64.b64decode(raw) == b"hello from the stand-in"


# -- request building --------------------------------------------------------------------


async def test_query_is_merged_into_the_uri_query(activities: Activities, standin: StandIn) -> None:
    echo = await activities.perform(
        http(
            standin.url("/echo?keep=1&status=pending"),
            query={"status": ["available", "sold"], "flag": True, "n": 2, "absent": None},
        )
    )
    assert echo["query"] == {"keep": ["1"], "status": ["available", "sold"], "flag": ["true"], "n": ["2"]}


async def test_method_is_upper_cased_and_json_body_sent(activities: Activities, standin: StandIn) -> None:
    echo = await activities.perform(http(standin.url("/echo"), method="post", body={"name": "rex", "n": [1]}))
    assert echo["method"] == "POST"
    assert echo["body"] == {"name": "rex", "n": [1]}
    assert echo["headers"]["content-type"] == "application/json"


async def test_given_content_type_is_kept(activities: Activities, standin: StandIn) -> None:
    await activities.perform(
        http(
            standin.url("/rec/vendor"),
            method="put",
            headers={"Content-Type": "application/vnd.pet+json"},
            body={"a": 1},
        )
    )
    (request,) = standin.requests_to("/rec/vendor")
    assert request.headers["content-type"] == "application/vnd.pet+json"
    assert request.body == {"a": 1}


async def test_string_body_is_sent_as_is(activities: Activities, standin: StandIn) -> None:
    await activities.perform(
        http(
            standin.url("/rec/text"),
            method="post",
            headers={"Content-Type": "text/plain"},
            body="plain words",
        )
    )
    (request,) = standin.requests_to("/rec/text")
    assert request.raw == b"plain words"
    assert request.headers["content-type"] == "text/plain"


async def test_form_content_type_encodes_a_mapping(activities: Activities, standin: StandIn) -> None:
    await activities.perform(
        http(
            standin.url("/rec/form"),
            method="post",
            headers={"content-type": "application/x-www-form-urlencoded"},
            body={"a": "1 2", "b": ["x", "y"]},
        )
    )
    assert standin.requests_to("/rec/form")[0].raw == b"a=1+2&b=x&b=y"


async def test_no_body_sends_nothing(activities: Activities, standin: StandIn) -> None:
    await activities.perform(http(standin.url("/rec/empty"), method="post"))
    (request,) = standin.requests_to("/rec/empty")
    assert request.raw == b""
    assert "content-type" not in request.headers


async def test_headers_and_user_agent(standin: StandIn) -> None:
    async with _activities(user_agent="flowkeeper-test/1") as performer:
        echo = await performer.perform(http(standin.url("/headers"), headers={"X-Trace": "abc"}))
    assert echo["headers"]["x-trace"] == "abc"
    assert echo["headers"]["user-agent"] == "flowkeeper-test/1"


async def test_idempotency_key_is_the_effect_key_and_stable(activities: Activities, standin: StandIn) -> None:
    effect = http(standin.url("/rec/pay"), method="post", body={"amount": 5})
    first = await activities.perform(effect)
    again = await activities.perform(effect)  # the repeat after a crash
    keys = [r.headers["idempotency-key"] for r in standin.requests_to("/rec/pay")]
    assert keys == [effect.idempotency_key, effect.idempotency_key]
    assert (first["count"], again["count"]) == (1, 2)
    other = http(standin.url("/rec/pay"), method="post")
    await activities.perform(other)
    assert (
        standin.requests_to("/rec/pay")[-1].headers["idempotency-key"] == other.idempotency_key != effect.id
    )


async def test_idempotency_key_set_by_the_workflow_is_kept(activities: Activities, standin: StandIn) -> None:
    await activities.perform(http(standin.url("/rec/own"), headers={"idempotency-key": "mine"}))
    assert standin.requests_to("/rec/own")[0].headers["idempotency-key"] == "mine"


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 503, 400, 500])
async def test_error_status_raises_communication_error(
    activities: Activities, standin: StandIn, status: int
) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(standin.url(f"/status/{status}")))
    assert caught.value.type == ERROR_TYPE_BASE + "communication"
    assert caught.value.status == status
    assert caught.value.detail == f'{{"status": {status}}}'


async def test_error_carries_reason_phrase_and_body(activities: Activities, standin: StandIn) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(standin.url("/v2/pet/99")))
    assert caught.value.to_dict() == {
        "type": ERROR_TYPE_BASE + "communication",
        "status": 404,
        "title": "Not Found",
        "detail": '{"code": 404, "message": "Pet not found"}',
    }


async def test_connection_refused_is_communication_503(activities: Activities) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(f"http://127.0.0.1:{port}/x"))
    assert caught.value.type == ERROR_TYPE_BASE + "communication"
    assert caught.value.status == 503
    assert (caught.value.detail or "").startswith("connection failed")


async def test_timeout_is_the_timeout_error(standin: StandIn) -> None:
    async with _activities(timeout=0.3) as performer:
        with pytest.raises(WorkflowError) as caught:
            await performer.perform(http(standin.url("/slow?ms=5000")))
    assert caught.value.type == ERROR_TYPE_BASE + "timeout"
    assert caught.value.status == 408


@pytest.mark.parametrize("uri", ["ftp://127.0.0.1/file", "http:///nohost", "not a uri"])
async def test_unusable_uri_is_a_configuration_error(activities: Activities, uri: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(uri))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"
    assert caught.value.status == 400


# -- redirects -----------------------------------------------------------------------------


async def test_redirect_not_followed_is_an_error(activities: Activities, standin: StandIn) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(standin.url("/redirect?to=/text")))
    assert caught.value.status == 302
    assert standin.count("/text") == 0


async def test_redirect_followed_when_allowed(activities: Activities, standin: StandIn) -> None:
    out = await activities.perform(http(standin.url("/redirect?to=/text"), redirect=True, output="response"))
    assert out["content"] == "hello from the stand-in"
    assert out["request"]["uri"] == standin.url("/text")


async def test_redirect_303_turns_post_into_get(activities: Activities, standin: StandIn) -> None:
    echo = await activities.perform(
        http(standin.url("/redirect?to=/echo&code=303"), method="post", body={"a": 1}, redirect=True)
    )
    assert (echo["method"], echo["body"]) == ("GET", None)
    assert echo["headers"]["idempotency-key"]  # kept across hops


async def test_redirect_status_is_accepted_when_redirect_is_set(
    activities: Activities, standin: StandIn
) -> None:
    # 304 has no Location: nothing to follow, but 300-399 is not an error when redirect is on.
    assert await activities.perform(http(standin.url("/status/304"), redirect=True)) is None


async def test_too_many_redirects(standin: StandIn) -> None:
    async with _activities(max_redirects=1) as performer:
        with pytest.raises(WorkflowError) as caught:
            await performer.perform(http(standin.url("/redirect?to=/redirect%3Fto%3D/text"), redirect=True))
    assert caught.value.type == ERROR_TYPE_BASE + "communication"
    assert "too many redirects" in (caught.value.detail or "")
    assert standin.count("/text") == 0


# -- destination policy ----------------------------------------------------------------------


async def test_denied_destination_is_refused_before_connecting(standin: StandIn) -> None:
    async with _activities(is_destination_allowed=lambda host: host != "127.0.0.1") as performer:
        with pytest.raises(WorkflowError) as caught:
            await performer.perform(http(standin.url("/rec/never")))
    assert caught.value.type == ERROR_TYPE_BASE + "communication"
    assert caught.value.status == 403
    assert caught.value.detail == "destination host 127.0.0.1 is not allowed by configuration"
    assert standin.requests == []


async def test_each_redirect_hop_is_checked(standin: StandIn) -> None:
    target = f"http://localhost:{standin.port}/rec/hop"
    async with _activities(is_destination_allowed=lambda host: host == "127.0.0.1") as performer:
        with pytest.raises(WorkflowError) as caught:
            await performer.perform(http(standin.url(f"/redirect?to={target}"), redirect=True))
    assert caught.value.status == 403
    assert "localhost" in (caught.value.detail or "")
    assert standin.count("/rec/hop") == 0


async def test_client_is_reopened_after_aclose(standin: StandIn) -> None:
    performer = _activities()
    await performer.perform(http(standin.url("/text")))
    await performer.aclose()
    assert await performer.perform(http(standin.url("/text"))) == "hello from the stand-in"
    await performer.aclose()
