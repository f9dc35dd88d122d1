"""Secret masking for everything that is logged.

Three rules, applied to every log event (message, bound fields, exception text):

- the value of a key that names a secret (``password``, ``passwd``, ``pwd``, ``secret``,
  ``token``, ``authorization``, ``authentication``, ``api_key``/``apiKey``/``x-api-key``,
  ``credential``, ``cookie``, ``private_key``; matched anywhere in the key, any case) is
  replaced by ``***``, in mappings and inside text (``password=…``, ``"token": "…"``,
  ``Authorization: Bearer …``);
- the password of a URL's user-info is replaced (``postgresql://user:***@host/db``);
- values registered as secrets (the workflow secrets) are replaced wherever they appear.

In doubt this masks too much (a key ``tokens_used`` is masked too), never too little.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

_KEYS = (
    r"passw(?:or)?d|pwd|secret|token|authori[sz]ation|authentication|api[-_]?key|credential"
    r"|cookie|private[-_]?key"
)
_SENSITIVE_KEY = re.compile(_KEYS, re.IGNORECASE)

# scheme://user:password@ — the last "@" of the token, so an "@" inside the password is hidden too.
_URL_CREDENTIALS = re.compile(r"(?P<head>://[^/\s:@\"'<>]*:)[^\s\"'<>]*@")

# key=value, key: value, "key": "value", Authorization: Bearer value. The match starts at the
# secret word itself (``db_password`` matches from ``password``): a leading ``[\w]*`` would
# make long words quadratic.
_INLINE = re.compile(
    rf"(?P<key>(?:{_KEYS})[\w.-]*)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<scheme>(?:bearer|basic|digest|token)\s+)?"
    r"(?P<value>[^\s\"',;&)}\]]+)",
    re.IGNORECASE,
)

#: Secret values shorter than this are not searched for in text (they would mask noise).
MIN_SECRET_LENGTH = 4


def is_sensitive_key(key: object) -> bool:
    """Does ``key`` name a secret (``password``, ``X-Api-Key``, ``access_token`` …)?"""
    return isinstance(key, str) and _SENSITIVE_KEY.search(key) is not None


def _inline(match: re.Match[str]) -> str:
    return f"{match['key']}{match['sep']}{match['scheme'] or ''}{MASK}"


class Redactor:
    """Masks secrets in text and JSON-like values; optionally knows secret values."""

    def __init__(self, secret_values: Iterable[Any] = ()) -> None:
        self._values: tuple[str, ...] = ()
        self.add_secret_values(secret_values)

    def add_secret_values(self, values: Iterable[Any]) -> None:
        """Also mask these values (strings found in nested JSON values too) wherever they appear."""
        found = set(self._values)
        for value in values:
            found.update(s for s in _strings(value) if len(s) >= MIN_SECRET_LENGTH)
        # Longest first, so that a secret containing another is masked whole.
        self._values = tuple(sorted(found, key=len, reverse=True))

    def text(self, text: str) -> str:
        """``text`` with URL passwords, ``key=value`` secrets and known secret values masked."""
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        if "://" in text:
            text = _URL_CREDENTIALS.sub(rf"\g<head>{MASK}@", text)
        return _INLINE.sub(_inline, text)

    def value(self, value: Any, _depth: int = 0) -> Any:
        """A copy of a JSON-like value with every secret masked (keys and text)."""
        if _depth > 32:
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                k: (MASK if is_sensitive_key(k) and v not in (None, "") else self.value(v, _depth + 1))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, _depth + 1) for v in value]
        return value


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


#: The process-wide redactor used by ``configure_logging`` (secret values are added there).
default_redactor = Redactor()


def mask_text(text: str) -> str:
    """``text`` with secrets masked by the default redactor."""
    return default_redactor.text(text)


def mask_value(value: Any) -> Any:
    """A copy of ``value`` with secrets masked by the default redactor."""
    return default_redactor.value(value)
