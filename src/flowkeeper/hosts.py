"""Destination host patterns for outbound HTTP (``http.allow_hosts`` / ``http.deny_hosts``).

A pattern is a host name (``api.example.com``), a wildcard (``*.example.com``: any
subdomain, not the apex), an IP address or a CIDR range (``10.0.0.0/8``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAME_PATTERN = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def check_patterns(patterns: Sequence[str]) -> list[str]:
    """Normalised patterns; ``ValueError`` naming the first invalid one."""
    normalised = [normal_host(p) for p in patterns]
    for pattern in normalised:
        _compile_pattern(pattern)
    return normalised


def is_allowed(host: str, allow: Sequence[str], deny: Sequence[str]) -> bool:
    """Deny wins; a non-empty allow list must match. Pure: names are not resolved."""
    target = _host_key(host)
    if target is None or any(_matches(p, target) for p in deny):
        return False
    return not allow or any(_matches(p, target) for p in allow)


def normal_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


@lru_cache(maxsize=256)
def _compile_pattern(pattern: str) -> Network | str:
    try:
        return ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        pass
    if "/" in pattern or not _NAME_PATTERN.fullmatch(pattern):
        raise ValueError(f"invalid host pattern {pattern!r}; use a name, *.domain, an IP or a CIDR range")
    return pattern


def _host_key(host: str) -> Address | str | None:
    name = normal_host(host)
    if not name:
        return None
    try:
        address: Address = ipaddress.ip_address(name)
    except ValueError:
        if not re.fullmatch(r"[0-9a-fx.]+", name):
            return name
        try:
            # Resolvers accept legacy IPv4 spellings (decimal, hex, short); read them
            # the same way so "2852039166" cannot slip past a deny of 169.254.169.254.
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return name
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _matches(pattern: str, target: Address | str) -> bool:
    compiled = _compile_pattern(pattern)
    if isinstance(target, str):
        if not isinstance(compiled, str):
            return False
        if compiled.startswith("*."):
            return target.endswith(compiled[1:])
        return target == compiled
    return not isinstance(compiled, str) and compiled.version == target.version and target in compiled
