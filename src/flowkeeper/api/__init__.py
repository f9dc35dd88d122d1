"""The REST API (FastAPI): routes, request/response schemas, problem+json, health, metrics.

``create_app(engine, settings=...)`` builds the application; ``HealthProbe`` is what the
services host implements to report its background services.
"""

from flowkeeper.api.app import create_app
from flowkeeper.api.health import ComponentHealth, HealthProbe, ServiceHealth

__all__ = ["ComponentHealth", "HealthProbe", "ServiceHealth", "create_app"]
