"""Background services: the dispatcher (claims runnable instances) and the timer service
(fires due timers), hosted together by :class:`ServiceHost`."""

from flowkeeper.services.base import ServiceHealth
from flowkeeper.services.host import ServiceHost

__all__ = ["ServiceHealth", "ServiceHost"]
