"""The FastAPI application: ``create_app(engine, settings=...)`` wires routes, limits and errors.

Only this package imports FastAPI. The app holds no state of its own: the engine, the
settings, the metrics registry and the health probe are given to it and kept on
``app.state`` for the routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry

from flowkeeper import version
from flowkeeper.api import definitions, events, instances, metrics, outbox
from flowkeeper.api import health as health_api
from flowkeeper.api.bodies import BodyLimitMiddleware
from flowkeeper.api.health import HealthProbe, NotRunningProbe
from flowkeeper.api.problems import Problem, ProblemError, install_problem_handlers
from flowkeeper.api.schemas import CloudEvent
from flowkeeper.config import Settings
from flowkeeper.runtime import Engine

DESCRIPTION = """\
Deploy Serverless Workflow DSL 1.0 definitions, start and control their instances,
and send them CloudEvents. Fields are camelCase; every error is an RFC 9457 problem
(`application/problem+json`) with a stable `code`.
"""

#: Models the routes refer to by hand (``$ref``) rather than through a signature.
_EXTRA_SCHEMAS: tuple[type[Any], ...] = (Problem, ProblemError, CloudEvent)


def create_app(
    engine: Engine,
    *,
    settings: Settings,
    registry: CollectorRegistry | None = None,
    health: HealthProbe | None = None,
) -> FastAPI:
    """The REST API over ``engine``.

    ``registry`` is served at ``/metrics`` (an empty one when None); ``health`` reports
    the background services at ``/health`` (when None they are reported Healthy, "not
    running in this process").
    """
    app = FastAPI(
        title="Flowkeeper",
        version=version(),
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.registry = registry if registry is not None else CollectorRegistry()
    app.state.health_probe = health if health is not None else NotRunningProbe()
    for module in (definitions, instances, events, outbox, health_api, metrics):
        app.include_router(module.router)
    # Middleware added last runs first: the last-resort handler wraps the body limit.
    app.add_middleware(BodyLimitMiddleware, limit=settings.server.max_body_size)
    install_problem_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the hand-referenced schemas, minus its unused validation ones."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for model in _EXTRA_SCHEMAS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    text = str(document["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in text:
            schemas.pop(unused, None)
    app.openapi_schema = document
    return document
