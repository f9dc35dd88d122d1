"""Background services: the dispatcher (claims runnable instances) and the timer service
(fires due timers), hosted together by :class:`ServiceHost`."""

from flowkeeper.services.host import ServiceHealth, ServiceHost

__all__ = ["ServiceHealth", "ServiceHost"]
