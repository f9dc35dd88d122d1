"""A loopback HTTP stand-in for the internet hosts the CTK and our tests call.

Tests never contact petstore.swagger.io or httpbin.org: they rewrite those origins to
``StandIn.base_url`` and get the same paths here. The server is stdlib
(``ThreadingHTTPServer`` in a daemon thread), so sync and async tests can use it alike.
Every request is recorded (:attr:`StandIn.requests`) until :meth:`StandIn.reset`.

Routes (any method unless said; JSON answers unless said):

Petstore (Swagger 2.0 under ``/v2``, OpenAPI 3.0 under ``/v3``)
    ``GET /v2/swagger.json``            Swagger 2.0 document, ``host`` = this server; operations
                                        ``findPetsByStatus``, ``getPetById``, ``addPet``,
                                        ``updatePetWithForm`` (formData), ``deletePet`` (header ``api_key``)
    ``GET /v2/swagger-nohost.json``     the same without ``host``/``schemes`` (served where the document is)
    ``GET /v3/openapi.json|.yaml``      OpenAPI 3.0 document, server ``/v3``; ``$ref`` parameters,
                                        path-level ``petId``, ``addPet`` with a ``requestBody``
    ``GET /v{2,3}/pet/findByStatus``    pets whose status is in ``status`` (repeated and/or comma-separated)
    ``GET /v{2,3}/pet/{id}``            pet 1..3, else 404
    ``POST /v{2,3}/pet``                the JSON body with an ``id`` (default 4)
    ``POST /v{2,3}/pet/{id}``           form fields echoed: ``{"id", "form": {...}}``
    ``DELETE /v{2,3}/pet/{id}``         ``{"deleted": id, "apiKey": <api_key header>}``
    ``GET /v2/pet/getPetByName/{name}`` always 404

Authentication
    ``/basic-auth/{user}/{password}``   200 with matching Basic credentials, else 401 (httpbin's shape)
    ``/digest-auth/{user}/{password}``  200 with a valid Digest (MD5, qop=auth) answer, else a 401 challenge
    ``/bearer``                         200 when ``Authorization: Bearer <anything>``, else 401
    ``POST /oauth2/token``              client_credentials / password grants (form or JSON body); client
                                        by Basic header or ``client_id``/``client_secret`` fields; answers
                                        ``{"access_token", "token_type": "Bearer", "expires_in": 3600}``
    ``/.well-known/openid-configuration`` discovery document pointing at ``/oauth2/token``
    ``/oauth2/protected``               200 only with a token issued by ``/oauth2/token`` since reset

Behaviour
    ``/rec/...``                        ``{"ok": true, "count": <requests at this path>, "echo": <body>}``
    ``/flaky/...?fail=N``               503 for the first N (default 2) requests per path, then 200
    ``/status/{code}``                  answers with that status (``{"status": code}``)
    ``/redirect?to=/path&code=302``     redirect (default 302) to ``to`` (default ``/headers``)
    ``/slow?ms=N``                      waits N ms (default 1000, interrupted by ``stop()``) then 200
    ``/headers``                        ``{"headers": {<lower-case name>: value}}``
    ``/echo``                           ``{"method", "path", "query", "headers", "body"}``
    ``/text``                           ``text/plain`` body ``hello from the stand-in``
    ``/bytes``                          ``application/octet-stream`` non-UTF-8 bytes ``00 01 fe ff``
    anything else                       404 ``{"message": "no such stand-in route", "path": ...}``
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support import petstore
from tests.support.handlers import Handler

#: The OAuth2 client the token endpoint accepts.
OAUTH_CLIENT_ID = "workflow-runtime"
OAUTH_CLIENT_SECRET = "conformance-secret"
#: Resource owners for the ``password`` grant.
OAUTH_USERS = {"alice": "wonderland"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it.

    ``headers`` have lower-case names; ``body`` is JSON-decoded when it parses, else
    text, ``None`` when empty; ``query`` maps each name to all its values.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (timeout tests) close their end: not worth a traceback.
        # Anything else is a bug of the stand-in and is printed as usual.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandIn:
    """A running stand-in server; see the module docstring for its routes."""

    oauth_client_id = OAUTH_CLIENT_ID
    oauth_client_secret = OAUTH_CLIENT_SECRET
    oauth_users = OAUTH_USERS

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._flaky: dict[str, int] = {}
        self._tokens: set[str] = set()
        self._token_counter = 0
        #: Set by :meth:`stop`; ``/slow`` waits on it so stopping never hangs.
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.standin = self
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="standin", daemon=True)
        self._thread.start()

    # -- for tests -------------------------------------------------------------------

    def url(self, path: str) -> str:
        """``base_url`` + ``path`` (which starts with ``/``)."""
        return self.base_url + path

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request since the last :meth:`reset`, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests whose path (without query) is ``path``."""
        return [r for r in self.requests if r.path == path]

    def count(self, path: str) -> int:
        """How many requests reached ``path`` since the last :meth:`reset`."""
        return len(self.requests_to(path))

    @property
    def token_requests(self) -> int:
        """How many requests reached ``/oauth2/token`` since the last :meth:`reset`."""
        return self.count("/oauth2/token")

    def reset(self) -> None:
        """Forget recorded requests, flaky counters and issued tokens."""
        with self._lock:
            self._requests.clear()
            self._flaky.clear()
            self._tokens.clear()

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for the handler ---------------------------------------------------------------

    def record(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        raw: bytes,
    ) -> tuple[RecordedRequest, int]:
        """Record a request; return it and how many requests its path has seen (it included)."""
        request = RecordedRequest(method, path, query, headers, body, raw)
        with self._lock:
            self._requests.append(request)
            return request, sum(1 for r in self._requests if r.path == path)

    def flaky_attempt(self, path: str) -> int:
        """The 1-based attempt number of this request at flaky ``path``."""
        with self._lock:
            self._flaky[path] = self._flaky.get(path, 0) + 1
            return self._flaky[path]

    def issue_token(self) -> str:
        with self._lock:
            self._token_counter += 1
            token = f"standin-token-{self._token_counter}"
            self._tokens.add(token)
            return token

    def token_is_valid(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    def swagger(self, with_host: bool = True) -> dict[str, Any]:
        return petstore.swagger2(f"127.0.0.1:{self.port}" if with_host else None)

    def openapi(self) -> dict[str, Any]:
        return petstore.openapi3()


def start_standin() -> StandIn:
    """Start a stand-in on a free loopback port; call ``stop()`` (or use ``with``) when done."""
    return StandIn()
