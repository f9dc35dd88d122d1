"""Translating driver exceptions into Flowkeeper's store errors.

The rest of Flowkeeper sees only :class:`~flowkeeper.errors.StoreError` and its
subclasses; the driver's exception stays reachable as ``__cause__``. Messages are short
(no SQL, no parameters: those can hold workflow data) and never contain the password of
the database URL.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote_plus

from sqlalchemy import exc as sa_exc

from flowkeeper.errors import ConcurrencyConflict, FlowkeeperError, StoreError, StoreUnavailable

# SQLSTATE classes / codes (PostgreSQL appendix A) that mean "the database is not
# usable right now" rather than "this statement is wrong".
_UNAVAILABLE_CLASSES = ("08", "28", "53", "57")  # connection, auth, resources, operator
_UNAVAILABLE_CODES = ("3D000",)  # the database does not exist
# The transaction lost a race and was rolled back whole: retrying from fresh state is
# the remedy, exactly as for a stale optimistic version.
_CONFLICT_CODES = ("40001", "40P01")  # serialization failure, deadlock detected

# SQLite reports these as OperationalError; everything else from SQLite is a StoreError.
#: What asyncpg says about a connection the server terminated while it was in use (it
#: is not always an InterfaceError by then).
_LOST_CONNECTION = (
    "another operation is in progress",
    # asyncpg's protocol after the server ended the session under a pipelined batch:
    # "cannot switch to state 11; another operation (2) is in progress".
    "cannot switch to state",
    "underlying connection is closed",
    "connection is closed",
)

_SQLITE_UNAVAILABLE = ("unable to open database", "database is locked", "disk i/o error", "readonly")


def _sqlstate(error: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str):
            return code
        current = getattr(current, "orig", None) or current.__cause__
    return None


def is_unique_violation(error: BaseException) -> bool:
    """A duplicate key (PostgreSQL 23505, SQLite ``UNIQUE constraint failed``)."""
    if _sqlstate(error) == "23505":
        return True
    return isinstance(error, sa_exc.IntegrityError) and "UNIQUE constraint failed" in str(error.orig)


class ErrorTranslator:
    """Maps exceptions raised while talking to one database to store errors."""

    def __init__(self, password: str | None) -> None:
        # Both spellings: raw and as it appears inside a URL.
        self._secrets = [s for s in {password, quote_plus(password or "")} if s]

    def scrub(self, text: str) -> str:
        """``text`` with the password masked."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def translate(self, error: BaseException, operation: str) -> FlowkeeperError:
        """The store error to raise (with ``from error``) for ``error`` during ``operation``."""
        if isinstance(error, FlowkeeperError):
            return error
        message = f"{operation}: {self._describe(error)}"
        if self._is_unavailable(error):
            return StoreUnavailable(f"database unavailable during {message}")
        if _sqlstate(error) in _CONFLICT_CODES:
            return ConcurrencyConflict(f"transaction rolled back by the database during {message}")
        return StoreError(f"database error during {message}")

    def _describe(self, error: BaseException) -> str:
        orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
        first_line = (str(orig).strip().splitlines() or [""])[0]
        # asyncpg errors arrive wrapped in SQLAlchemy's adapter class whose message is
        # "<class 'asyncpg...'>: text"; keep the text.
        if first_line.startswith("<class "):
            first_line = first_line.split(">: ", 1)[-1]
        return self.scrub(f"{type(orig).__name__}: {first_line[:300]}")

    @staticmethod
    def _is_unavailable(error: BaseException) -> bool:
        if isinstance(error, OSError | asyncio.TimeoutError | sa_exc.TimeoutError):
            return True
        orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
        if any(marker in str(orig) for marker in _LOST_CONNECTION):
            return True
        if isinstance(error, sa_exc.DBAPIError):
            if error.connection_invalidated:
                return True
            if isinstance(error, sa_exc.InterfaceError):
                return True  # asyncpg: "connection is closed" and the like
            if isinstance(error.orig, OSError):
                return True
        code = _sqlstate(error)
        if code is not None:
            return code[:2] in _UNAVAILABLE_CLASSES or code in _UNAVAILABLE_CODES
        if isinstance(error, sa_exc.OperationalError):
            text = str(error.orig).lower()
            return any(marker in text for marker in _SQLITE_UNAVAILABLE)
        # asyncpg raises some connection-level errors unwrapped (e.g. while connecting).
        name = type(error).__name__
        return name in {"ConnectionDoesNotExistError", "CannotConnectNowError", "InterfaceError"}
