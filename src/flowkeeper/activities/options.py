"""Settings of the activities layer, decoupled from the engine's configuration model.

``flowkeeper.config`` maps its sections onto :class:`ActivityOptions`; activities never
read configuration themselves, so they can be built and tested without it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass


def _allow_every_host(host: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class ActivityOptions:
    """How activities reach the outside world.

    ``timeout`` bounds a whole outside call (token fetch, document fetch, redirects
    included); ``connect_timeout`` bounds establishing one connection.
    ``is_destination_allowed`` is asked for every host before connecting to it,
    redirect hops, OAuth2 token endpoints and OpenAPI documents included.
    Processes (``run: shell`` / ``run: script``) are refused unless enabled;
    ``process_timeout`` bounds each one. ``node_executable`` of ``None`` means
    "look ``node`` up on ``PATH``".
    """

    timeout: float = 120.0
    connect_timeout: float = 10.0
    max_redirects: int = 10
    verify_tls: bool = True
    is_destination_allowed: Callable[[str], bool] = _allow_every_host
    shell_enabled: bool = False
    script_enabled: bool = False
    process_timeout: float = 60.0
    python_executable: str = sys.executable
    node_executable: str | None = None
    user_agent: str = "flowkeeper"
