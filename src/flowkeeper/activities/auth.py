"""Authentication policies turned into request credentials.

``basic`` and ``bearer`` become an ``Authorization`` header, ``digest`` an
:class:`httpx.DigestAuth` (it needs the server's challenge), ``oauth2`` and ``oidc`` a
bearer token obtained from the authority's token endpoint (``client_credentials`` and
``password`` grants) and cached until shortly before it expires.

Errors name the scheme, never a credential: secrets end up in neither error details
nor logs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from flowkeeper.engine.effects import Authentication
from flowkeeper.errors import standard_error

#: Sends one request with the caller's destination checks and error mapping.
Sender = Callable[[httpx.Request], Awaitable[httpx.Response]]

#: Renew a token this long before the authority says it expires, so a token is
#: never sent in the last instants of its life.
_EXPIRY_MARGIN = 30.0
#: Lifetime assumed when the token response carries no ``expires_in``.
_DEFAULT_LIFETIME = 300.0
_SUPPORTED_GRANTS = ("client_credentials", "password")


@dataclass(slots=True)
class Credentials:
    """What to add to a request: headers, and/or an httpx auth flow (digest)."""

    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    #: Set when the Authorization header carries a cached OAuth2 token.
    token_key: str | None = None


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


def _setting(settings: dict[str, Any], dotted: str) -> Any:
    """``settings['client']['id']`` for ``client.id``; ``None`` when absent."""
    node: Any = settings
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _required(settings: dict[str, Any], scheme: str, *names: str) -> list[str]:
    values = [_setting(settings, name) for name in names]
    if any(v is None or v == "" for v in values):
        raise standard_error(
            "configuration", f"{scheme} authentication requires {' and '.join(names)}", status=400
        )
    return [str(v) for v in values]


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class Authenticator:
    """Turns :class:`Authentication` policies into credentials; owns the OAuth2 token cache."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._token_endpoints: dict[str, str] = {}

    async def credentials(self, policy: Authentication | None, send: Sender) -> Credentials:
        """Credentials for one request; ``send`` is used to reach token endpoints."""
        if policy is None:
            return Credentials()
        scheme = policy.scheme.lower()
        settings = policy.settings or {}
        if scheme == "basic":
            username, password = _required(settings, "basic", "username", "password")
            return Credentials(headers={"Authorization": _basic(username, password)})
        if scheme == "bearer":
            (token,) = _required(settings, "bearer", "token")
            return Credentials(headers={"Authorization": f"Bearer {token}"})
        if scheme == "digest":
            username, password = _required(settings, "digest", "username", "password")
            return Credentials(auth=httpx.DigestAuth(username, password))
        if scheme in ("oauth2", "oidc"):
            key, token = await self._oauth2_token(scheme, settings, send)
            return Credentials(headers={"Authorization": f"Bearer {token}"}, token_key=key)
        raise standard_error(
            "configuration", f"authentication scheme {policy.scheme!r} is not supported", status=400
        )

    def forget(self, token_key: str | None) -> None:
        """Drop a cached token the resource server refused (401), so a retry fetches anew."""
        if token_key is not None:
            self._tokens.pop(token_key, None)

    # -- OAuth2 / OpenID Connect ---------------------------------------------------

    async def _oauth2_token(self, scheme: str, settings: dict[str, Any], send: Sender) -> tuple[str, str]:
        (authority,) = _required(settings, scheme, "authority")
        grant = str(settings.get("grant") or "client_credentials")
        if grant not in _SUPPORTED_GRANTS:
            raise standard_error("configuration", f"{scheme} grant {grant!r} is not supported", status=400)
        # The key covers every credential (hashed), not just the client id: a workflow
        # that knows a client id but not its secret must never receive a cached token.
        key = hashlib.sha256(json.dumps([scheme, settings], sort_keys=True, default=str).encode()).hexdigest()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent calls with the same policy fetch one token
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_at > time.monotonic():
                return key, cached.value
            url = await self._token_endpoint(scheme, authority, settings, send)
            token = await self._request_token(scheme, url, grant, settings, send)
            self._tokens[key] = token
            return key, token.value

    async def _token_endpoint(
        self, scheme: str, authority: str, settings: dict[str, Any], send: Sender
    ) -> str:
        explicit = _setting(settings, "endpoints.token")
        if scheme == "oauth2" or explicit:
            return _join(authority, str(explicit or "/oauth2/token"))
        # OpenID Connect: the provider's discovery document names its token endpoint.
        discovery = authority
        if not authority.rstrip("/").endswith("/.well-known/openid-configuration"):
            discovery = authority.rstrip("/") + "/.well-known/openid-configuration"
        if discovery in self._token_endpoints:
            return self._token_endpoints[discovery]
        response = await send(httpx.Request("GET", discovery, headers={"Accept": "application/json"}))
        try:
            endpoint = response.json()["token_endpoint"] if response.is_success else None
        except (ValueError, KeyError, TypeError):
            endpoint = None
        if not isinstance(endpoint, str):
            raise standard_error(
                "authentication",
                f"oidc discovery failed (HTTP {response.status_code}): no token_endpoint",
                status=401,
            )
        self._token_endpoints[discovery] = endpoint
        return endpoint

    async def _request_token(
        self, scheme: str, url: str, grant: str, settings: dict[str, Any], send: Sender
    ) -> _Token:
        form: dict[str, Any] = {"grant_type": grant}
        if grant == "password":
            form["username"], form["password"] = _required(settings, scheme, "username", "password")
        if scopes := settings.get("scopes"):
            form["scope"] = " ".join(str(s) for s in scopes)
        if audiences := settings.get("audiences"):
            form["audience"] = [str(a) for a in audiences]
        headers = {"Accept": "application/json"}
        method = str(_setting(settings, "client.authentication") or "client_secret_post")
        client_id = _setting(settings, "client.id")
        secret = _setting(settings, "client.secret")
        if method == "client_secret_basic":
            client_id, secret = _required(settings, scheme, "client.id", "client.secret")
            # RFC 6749 2.3.1: both parts are form-urlencoded before the Basic encoding.
            headers["Authorization"] = _basic(quote(client_id, safe=""), quote(secret, safe=""))
        elif method == "client_secret_post":
            (form["client_id"],) = _required(settings, scheme, "client.id")
            if secret is not None:
                form["client_secret"] = str(secret)
        elif method == "private_key_jwt":
            (assertion,) = _required(settings, scheme, "client.assertion")
            if client_id is not None:
                form["client_id"] = str(client_id)
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = assertion
        elif method == "none":
            if client_id is not None:
                form["client_id"] = str(client_id)
        else:
            raise standard_error(
                "configuration", f"{scheme} client authentication {method!r} is not supported", status=400
            )
        encoding = str(_setting(settings, "request.encoding") or "application/x-www-form-urlencoded")
        if encoding == "application/json":
            request = httpx.Request("POST", url, headers=headers, json=form)
        else:
            request = httpx.Request("POST", url, headers=headers, data=form)
        response = await send(request)
        return _parse_token(scheme, response)


def _parse_token(scheme: str, response: httpx.Response) -> _Token:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not response.is_success or not isinstance(payload, dict) or "access_token" not in payload:
        # The OAuth2 error code (e.g. invalid_client) helps and is not a secret.
        reason = payload.get("error") if isinstance(payload, dict) else None
        detail = f"{scheme} token request failed (HTTP {response.status_code}" + (
            f", {reason})" if isinstance(reason, str) else ")"
        )
        if response.status_code >= 500:  # the authority is down: retryable, not a refusal
            raise standard_error("communication", detail, status=response.status_code)
        status = response.status_code if response.status_code in (400, 401, 403) else 401
        raise standard_error("authentication", detail, status=status)
    try:
        lifetime = float(payload.get("expires_in", _DEFAULT_LIFETIME))
    except (TypeError, ValueError):
        lifetime = _DEFAULT_LIFETIME
    margin = min(_EXPIRY_MARGIN, lifetime / 10)
    return _Token(str(payload["access_token"]), time.monotonic() + lifetime - margin)


def _join(authority: str, path: str) -> str:
    """``endpoints.token`` is relative to the authority, unless it is absolute itself."""
    if "://" in path:
        return path
    return authority.rstrip("/") + "/" + path.lstrip("/")
