"""Open a ledger from a URL, for the command line and quick scripts."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from ..errors import InvalidInputError
from .base import RecipientLedger

# Scheme → "module:function" building the ledger. Imported only when used, so a URL
# scheme never costs an import of a driver the application does not use.
_OPENERS = {
    "sqlite": "throttlemail.ledger.url:_open_sqlite",
    "memory": "throttlemail.ledger.url:_open_memory",
    "redis": "throttlemail.ledger.redis:ledger_from_url",
    "rediss": "throttlemail.ledger.redis:ledger_from_url",
    "unix": "throttlemail.ledger.redis:ledger_from_url",
}


def open_ledger(url: str, campaign: str, *, create: bool = True) -> RecipientLedger:
    """Open the ledger that ``url`` names for ``campaign``.

    ``sqlite:///relative/file.db`` and ``sqlite:////absolute/file.db`` name a SQLite file;
    ``memory://`` an in-memory ledger; ``redis://``, ``rediss://`` and ``unix://`` a Redis
    server, as redis-py reads them.
    With ``create=False`` a SQLite or Redis campaign (or SQLite file) that does not exist
    yet raises :class:`~throttlemail.CampaignNotFoundError` on first use instead of being
    created. A ``memory://`` ledger is always new, so it ignores ``create``.
    """
    scheme = urlsplit(url).scheme.lower()
    target = _OPENERS.get(scheme)
    if target is None:
        known = ", ".join(f"{name}://" for name in sorted(_OPENERS))
        raise InvalidInputError(
            f"unknown ledger URL scheme {scheme + '://' if scheme else repr(url)}: "
            f"use one of {known} (for example sqlite:///throttlemail.db)"
        )

    module_name, _, function_name = target.partition(":")
    opener = cast(
        Callable[..., RecipientLedger],
        getattr(importlib.import_module(module_name), function_name),
    )
    return opener(url, campaign, create=create)


def sqlite_path_from_url(url: str) -> str:
    """Return the file path of a ``sqlite:///`` URL (three slashes, then the path)."""
    prefix = "sqlite:///"
    path = url[len(prefix) :] if url.lower().startswith(prefix) else ""
    if not path or path.startswith("?"):
        raise InvalidInputError(
            f"invalid SQLite ledger URL {url!r}: expected sqlite:///FILE for a relative path "
            "or sqlite:////FILE for an absolute one"
        )
    return path


def _open_sqlite(url: str, campaign: str, *, create: bool = True) -> RecipientLedger:
    from .sqlite import SqliteLedger

    return SqliteLedger(sqlite_path_from_url(url), campaign, create=create)


def _open_memory(url: str, campaign: str, *, create: bool = True) -> RecipientLedger:
    from .memory import InMemoryLedger

    return InMemoryLedger(campaign)


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return parts._replace(netloc=f"{user}:***@{host}{port}").geturl()
