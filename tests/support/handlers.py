"""Request handling of the stand-in (routes are listed in :mod:`tests.support.standin`)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tests.support import petstore

if TYPE_CHECKING:
    from tests.support.standin import RecordedRequest, StandIn

_DIGEST_REALM = "standin"
_DIGEST_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """One request: record it, route it, answer (HTTP/1.1 keep-alive, always Content-Length)."""

    protocol_version = "HTTP/1.1"
    server_version = "flowkeeper-standin"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the
    # client's delayed ACK add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read .requests, not a log

    @property
    def standin(self) -> StandIn:
        return self.server.standin  # type: ignore[attr-defined, no-any-return]

    # -- plumbing ------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: Any = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        elif body is None:
            data = b""
        else:
            data = json.dumps(body).encode()
        if status in (204, 304) or status < 200:
            data = b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        raw = self._read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", errors="replace")
        query = parse_qs(url.query, keep_blank_values=True)
        headers = {name.lower(): value for name, value in self.headers.items()}
        request, count = self.standin.record(self.command, url.path, query, headers, body, raw)
        self._route(request, count)

    # The names BaseHTTPRequestHandler dispatches to.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle  # noqa: N815

    # -- routes ----------------------------------------------------------------------------

    def _route(self, request: RecordedRequest, count: int) -> None:
        path, query = request.path, request.query
        parts = [unquote(p) for p in path.split("/") if p]
        first = query_first(query)

        if path == "/v2/swagger.json":
            return self._send(200, self.standin.swagger())
        if path == "/v2/swagger-nohost.json":
            return self._send(200, self.standin.swagger(with_host=False))
        if path == "/v3/openapi.json":
            return self._send(200, self.standin.openapi())
        if path == "/v3/openapi.yaml":
            return self._send(200, yaml.safe_dump(self.standin.openapi()), "application/yaml")
        if len(parts) >= 2 and parts[0] in ("v2", "v3") and parts[1] == "pet":
            return self._pet(request, parts[2:])

        if len(parts) == 3 and parts[0] == "basic-auth":
            return self._basic_auth(parts[1], parts[2])
        if len(parts) == 3 and parts[0] == "digest-auth":
            return self._digest_auth(parts[1], parts[2])
        if path == "/bearer":
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer ") and auth[7:].strip():
                return self._send(200, {"authenticated": True, "token": auth[7:].strip()})
            return self._send(401, {"authenticated": False}, headers={"WWW-Authenticate": "Bearer"})
        if path == "/oauth2/token":
            return self._token(request)
        if path == "/.well-known/openid-configuration":
            base = self.standin.base_url
            return self._send(200, {"issuer": base, "token_endpoint": base + "/oauth2/token"})
        if path == "/oauth2/protected":
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer ") and self.standin.token_is_valid(auth[7:].strip()):
                return self._send(200, {"authenticated": True})
            return self._send(401, {"authenticated": False}, headers={"WWW-Authenticate": "Bearer"})

        if path.startswith("/rec/"):
            return self._send(200, {"ok": True, "count": count, "echo": request.body})
        if path.startswith("/flaky/"):
            attempt = self.standin.flaky_attempt(path)
            if attempt <= int(first.get("fail", "2")):
                return self._send(503, {"error": "try again", "attempt": attempt})
            return self._send(200, {"ok": True, "attempts": attempt})
        if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
            return self._send(int(parts[1]), {"status": int(parts[1])})
        if path == "/redirect":
            code = int(first.get("code", "302"))
            return self._send(
                code,
                {"location": first.get("to", "/headers")},
                headers={"Location": first.get("to", "/headers")},
            )
        if path == "/slow":
            ms = int(first.get("ms", "1000"))
            self.standin.stopping.wait(ms / 1000)
            return self._send(200, {"slow": True, "ms": ms})
        if path == "/headers":
            return self._send(200, {"headers": request.headers})
        if path == "/echo":
            return self._send(
                200,
                {
                    "method": request.method,
                    "path": path,
                    "query": query,
                    "headers": request.headers,
                    "body": request.body,
                },
            )
        if path == "/text":
            return self._send(200, "hello from the stand-in", "text/plain; charset=utf-8")
        if path == "/bytes":
            return self._send(200, b"\x00\x01\xfe\xff", "application/octet-stream")
        return self._send(404, {"message": "no such stand-in route", "path": path})

    def _pet(self, request: RecordedRequest, rest: list[str]) -> None:
        if rest == ["findByStatus"]:
            wanted = {s for value in request.query.get("status", []) for s in value.split(",") if s}
            return self._send(200, petstore.pets_with_status(wanted or {"available"}))
        if len(rest) == 2 and rest[0] == "getPetByName":
            return self._send(404, {"code": 404, "message": "Pet not found"})
        if not rest and request.method == "POST":
            stored = dict(request.body) if isinstance(request.body, dict) else {"value": request.body}
            stored.setdefault("id", 4)
            return self._send(200, stored)
        if len(rest) == 1 and rest[0].isdigit():
            pet_id = int(rest[0])
            if request.method == "DELETE":
                return self._send(200, {"deleted": pet_id, "apiKey": self.headers.get("api_key")})
            if request.method == "POST":
                form = {k: v[0] for k, v in parse_qs(request.raw.decode()).items()}
                return self._send(
                    200, {"id": pet_id, "form": form, "contentType": self.headers.get("Content-Type")}
                )
            found = petstore.pet(pet_id)
            if found is not None:
                return self._send(200, found)
        return self._send(404, {"code": 404, "message": "Pet not found"})

    def _basic_auth(self, user: str, password: str) -> None:
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            return self._send(200, {"authenticated": True, "user": user})
        return self._send(
            401, {"authenticated": False}, headers={"WWW-Authenticate": 'Basic realm="standin"'}
        )

    def _digest_auth(self, user: str, password: str) -> None:
        header = self.headers.get("Authorization", "")
        if header.startswith("Digest "):
            fields = {m[0]: m[1] or m[2] for m in _DIGEST_FIELD.findall(header[7:])}
            ha1 = _md5(f"{user}:{_DIGEST_REALM}:{password}")
            ha2 = _md5(f"{self.command}:{fields.get('uri', '')}")
            expected = _md5(
                f"{ha1}:{fields.get('nonce')}:{fields.get('nc')}:{fields.get('cnonce')}:{fields.get('qop')}:{ha2}"
            )
            if fields.get("username") == user and fields.get("response") == expected:
                return self._send(200, {"authenticated": True, "user": user})
        challenge = (
            f'Digest realm="{_DIGEST_REALM}", qop="auth", nonce="{secrets.token_hex(16)}", '
            f'opaque="{secrets.token_hex(8)}", algorithm=MD5'
        )
        return self._send(401, {"authenticated": False}, headers={"WWW-Authenticate": challenge})

    def _token(self, request: RecordedRequest) -> None:
        standin = self.standin
        if request.method != "POST":
            return self._send(405, {"error": "invalid_request"})
        if isinstance(request.body, dict):
            form = {k: str(v) for k, v in request.body.items()}
        else:
            form = {k: v[0] for k, v in parse_qs(request.raw.decode()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            decoded = base64.b64decode(auth[6:]).decode()
            client_id, _, client_secret = (unquote(p) for p in decoded.partition(":"))
        if client_id != standin.oauth_client_id or client_secret != standin.oauth_client_secret:
            return self._send(401, {"error": "invalid_client"})
        grant = form.get("grant_type")
        if grant == "password":
            if standin.oauth_users.get(form.get("username", "")) != form.get("password"):
                return self._send(400, {"error": "invalid_grant"})
        elif grant != "client_credentials":
            return self._send(400, {"error": "unsupported_grant_type"})
        answer = {"access_token": standin.issue_token(), "token_type": "Bearer", "expires_in": 3600}
        if "scope" in form:
            answer["scope"] = form["scope"]
        return self._send(200, answer, headers={"Cache-Control": "no-store"})


def query_first(query: dict[str, list[str]]) -> dict[str, str]:
    """Each query parameter's first value."""
    return {name: values[0] for name, values in query.items() if values}
