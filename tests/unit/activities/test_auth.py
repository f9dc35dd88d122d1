"""Authentication of HTTP calls: basic, bearer, digest, OAuth2 and OpenID Connect."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from flowkeeper.activities import Activities
from flowkeeper.errors import ERROR_TYPE_BASE, WorkflowError
from tests.support.standin import OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, StandIn
from tests.unit.activities.builders import auth, http


def _oauth2(standin: StandIn, **settings: Any) -> Any:
    settings.setdefault("authority", standin.base_url)
    settings.setdefault("grant", "client_credentials")
    settings.setdefault("client", {"id": OAUTH_CLIENT_ID, "secret": OAUTH_CLIENT_SECRET})
    return auth("oauth2", **settings)


async def test_basic(activities: Activities, standin: StandIn) -> None:
    policy = auth("basic", username="serverless-workflow", password="conformance-test")
    out = await activities.perform(
        http(standin.url("/basic-auth/serverless-workflow/conformance-test"), authentication=policy)
    )
    assert out == {"authenticated": True, "user": "serverless-workflow"}


async def test_basic_refused_error_never_shows_the_password(activities: Activities, standin: StandIn) -> None:
    policy = auth("basic", username="someone", password="Wr0ng-Secret")
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(standin.url("/basic-auth/someone/right"), authentication=policy))
    assert caught.value.status == 401
    assert caught.value.type == ERROR_TYPE_BASE + "communication"
    assert "Wr0ng-Secret" not in str(caught.value.to_dict())


async def test_bearer(activities: Activities, standin: StandIn) -> None:
    out = await activities.perform(http(standin.url("/bearer"), authentication=auth("bearer", token="abc")))
    assert out == {"authenticated": True, "token": "abc"}


async def test_digest(activities: Activities, standin: StandIn) -> None:
    policy = auth("digest", username="ann", password="pw")
    out = await activities.perform(http(standin.url("/digest-auth/ann/pw"), authentication=policy))
    assert out == {"authenticated": True, "user": "ann"}
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(
            http(
                standin.url("/digest-auth/ann/pw"),
                authentication=auth("digest", username="ann", password="x"),
            )
        )
    assert caught.value.status == 401


async def test_missing_field_names_the_scheme_only(activities: Activities, standin: StandIn) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(standin.url("/bearer"), authentication=auth("basic", username="u")))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"
    assert caught.value.detail == "basic authentication requires username and password"


async def test_unsupported_scheme(activities: Activities, standin: StandIn) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(standin.url("/bearer"), authentication=auth("certificate")))
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"
    assert standin.requests == []


async def test_oauth2_client_credentials_token_is_cached(activities: Activities, standin: StandIn) -> None:
    policy = _oauth2(standin, scopes=["api", "read"], audiences=["runtime"])
    for _ in range(2):
        out = await activities.perform(http(standin.url("/oauth2/protected"), authentication=policy))
        assert out == {"authenticated": True}
    assert standin.token_requests == 1
    (token_request,) = standin.requests_to("/oauth2/token")
    form = token_request.raw.decode()
    # client_secret_post is the DSL's default client authentication.
    assert "grant_type=client_credentials" in form
    assert f"client_id={OAUTH_CLIENT_ID}" in form
    assert "client_secret=" in form
    assert "scope=api+read" in form
    assert "audience=runtime" in form
    assert "authorization" not in token_request.headers


async def test_oauth2_concurrent_calls_fetch_one_token(activities: Activities, standin: StandIn) -> None:
    policy = _oauth2(standin)
    calls = [
        activities.perform(http(standin.url("/oauth2/protected"), authentication=policy)) for _ in range(5)
    ]
    assert await asyncio.gather(*calls) == [{"authenticated": True}] * 5
    assert standin.token_requests == 1


async def test_oauth2_client_secret_basic(activities: Activities, standin: StandIn) -> None:
    client = {"id": OAUTH_CLIENT_ID, "secret": OAUTH_CLIENT_SECRET, "authentication": "client_secret_basic"}
    policy = _oauth2(standin, client=client, endpoints={"token": "/oauth2/token"})
    await activities.perform(http(standin.url("/oauth2/protected"), authentication=policy))
    (token_request,) = standin.requests_to("/oauth2/token")
    expected = base64.b64encode(f"{OAUTH_CLIENT_ID}:{OAUTH_CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["authorization"] == f"Basic {expected}"
    assert "client_secret" not in token_request.raw.decode()


async def test_oauth2_password_grant_and_json_encoding(activities: Activities, standin: StandIn) -> None:
    policy = _oauth2(
        standin,
        grant="password",
        username="alice",
        password="wonderland",
        request={"encoding": "application/json"},
    )
    await activities.perform(http(standin.url("/oauth2/protected"), authentication=policy))
    (token_request,) = standin.requests_to("/oauth2/token")
    assert token_request.body["grant_type"] == "password"
    assert token_request.body["username"] == "alice"


async def test_oauth2_refused_credentials(activities: Activities, standin: StandIn) -> None:
    policy = _oauth2(standin, client={"id": OAUTH_CLIENT_ID, "secret": "Not-The-Secret"})
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(http(standin.url("/oauth2/protected"), authentication=policy))
    assert caught.value.type == ERROR_TYPE_BASE + "authentication"
    assert caught.value.status == 401
    assert caught.value.detail == "oauth2 token request failed (HTTP 401, invalid_client)"
    assert "Not-The-Secret" not in str(caught.value.to_dict())
    assert standin.count("/oauth2/protected") == 0


async def test_cached_token_is_not_shared_with_other_credentials(
    activities: Activities, standin: StandIn
) -> None:
    await activities.perform(http(standin.url("/oauth2/protected"), authentication=_oauth2(standin)))
    wrong = _oauth2(standin, client={"id": OAUTH_CLIENT_ID, "secret": "guess"})
    with pytest.raises(WorkflowError):
        await activities.perform(http(standin.url("/oauth2/protected"), authentication=wrong))
    assert standin.token_requests == 2


async def test_unsupported_grant(activities: Activities, standin: StandIn) -> None:
    with pytest.raises(WorkflowError) as caught:
        await activities.perform(
            http(
                standin.url("/oauth2/protected"), authentication=_oauth2(standin, grant="authorization_code")
            )
        )
    assert caught.value.type == ERROR_TYPE_BASE + "configuration"


async def test_refused_token_is_dropped_from_the_cache(activities: Activities, standin: StandIn) -> None:
    policy = _oauth2(standin)
    with pytest.raises(WorkflowError):
        await activities.perform(http(standin.url("/status/401"), authentication=policy))
    await activities.perform(http(standin.url("/oauth2/protected"), authentication=policy))
    assert standin.token_requests == 2


async def test_oidc_discovers_the_token_endpoint(activities: Activities, standin: StandIn) -> None:
    policy = auth(
        "oidc",
        authority=standin.url("/.well-known/openid-configuration"),
        grant="client_credentials",
        client={"id": OAUTH_CLIENT_ID, "secret": OAUTH_CLIENT_SECRET},
    )
    for _ in range(2):
        assert await activities.perform(http(standin.url("/oauth2/protected"), authentication=policy)) == {
            "authenticated": True
        }
    assert standin.count("/.well-known/openid-configuration") == 1
    assert standin.token_requests == 1


async def test_token_endpoint_is_subject_to_the_destination_policy(standin: StandIn) -> None:
    from flowkeeper.activities import ActivityOptions, FunctionRegistry

    options = ActivityOptions(is_destination_allowed=lambda host: host == "127.0.0.1")
    async with Activities(options, FunctionRegistry(entry_point_group=None)) as performer:
        policy = _oauth2(standin, authority=f"http://localhost:{standin.port}")
        with pytest.raises(WorkflowError) as caught:
            await performer.perform(http(standin.url("/oauth2/protected"), authentication=policy))
    assert caught.value.status == 403
    assert standin.requests == []
