"""Database URLs: which adapter, which SQLAlchemy driver URL, and how to show one safely."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from flowkeeper.errors import ConfigurationError

Backend = Literal["sqlite", "postgresql"]

_DRIVERS: dict[str, tuple[Backend, str]] = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "sqlite+aiosqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgresql": ("postgresql", "postgresql+asyncpg"),
    "postgres": ("postgresql", "postgresql+asyncpg"),
    "postgresql+asyncpg": ("postgresql", "postgresql+asyncpg"),
}


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed database URL: the backend, the async driver URL, and a printable form."""

    backend: Backend
    url: URL

    @classmethod
    def parse(cls, raw: str) -> DatabaseUrl:
        """Accept ``sqlite:///path``, ``sqlite+aiosqlite:///path``, ``postgresql://``,
        ``postgres://`` and ``postgresql+asyncpg://``; anything else is a configuration error.
        """
        try:
            url = make_url(raw)
        except ArgumentError:
            # The message of ArgumentError repeats the URL, password included: drop it.
            raise ConfigurationError("database.url: not a valid database URL") from None
        try:
            backend, driver = _DRIVERS[url.drivername]
        except KeyError:
            raise ConfigurationError(
                f"database.url: unsupported scheme {url.drivername!r} "
                "(use sqlite:///path or postgresql://user@host/db)"
            ) from None
        url = url.set(drivername=driver)
        if backend == "postgresql" and "sslmode" in url.query:
            # libpq spells it sslmode; asyncpg takes the same values as ``ssl``.
            query = dict(url.query)
            query["ssl"] = query.pop("sslmode")
            url = url.set(query=query)
        return cls(backend, url)

    @property
    def sqlalchemy_url(self) -> str:
        """The driver URL, password included (for the engine only; never log it)."""
        return self.url.render_as_string(hide_password=False)

    @property
    def safe(self) -> str:
        """The URL with the password masked, fit for logs and error messages."""
        return self.url.render_as_string(hide_password=True)

    @property
    def password(self) -> str | None:
        """The password, so error messages can be scrubbed of it."""
        return None if self.url.password is None else str(self.url.password)

    @property
    def is_memory(self) -> bool:
        """An in-memory SQLite database (one shared connection)."""
        return self.backend == "sqlite" and self.url.database in (None, "", ":memory:")
