"""Finding the campaign a command acts on: from the application, or from a ledger URL."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import cast

from ..campaign import Campaign, check_campaign_name
from ..errors import InvalidInputError
from ..ledger.url import open_ledger


class UsageError(InvalidInputError):
    """A command-line argument is wrong; the command exits with status 2."""


def load_object(path: str, option: str) -> object:
    """Import ``module:attribute`` (the attribute may be dotted) and return the attribute.

    The current directory is importable, as with ``celery -A`` and ``gunicorn``, so an
    application's own modules are found when the command runs from its root.
    """
    module_name, separator, attribute = path.partition(":")
    if not separator or not module_name or not attribute:
        raise UsageError(f"invalid {option} {path!r}: expected module:attribute, e.g. app:campaign")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())

    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"cannot import module {module_name!r} for {option} {path!r}: {exc}; run from the "
            "application's directory or set PYTHONPATH"
        ) from exc
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise UsageError(
                f"{option} {path!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    return target


def campaign_from_app(path: str) -> Campaign:
    """Return the :class:`Campaign` that ``--app module:attribute`` names.

    The attribute is a campaign, or a function without arguments that returns one.
    """
    target = load_object(path, "--app")
    if callable(target) and not isinstance(target, Campaign):
        target = cast(Callable[[], object], target)()
    if not isinstance(target, Campaign):
        raise UsageError(
            f"--app {path!r} is a {type(target).__name__}, not a throttlemail.Campaign "
            "(or a function returning one)"
        )
    return target


def campaign_from_url(url: str, name: str | None, *, create: bool) -> Campaign:
    """Return a campaign on the ledger at ``url``, without a dispatcher.

    Only ``create=True`` may create a SQLite file or campaign that does not exist yet.
    """
    if not name:
        raise UsageError(
            "no campaign given: pass --campaign NAME (or set THROTTLEMAIL_CAMPAIGN), "
            "or --app module:attribute"
        )
    try:
        check_campaign_name(name)
        ledger = open_ledger(url, name, create=create)
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from exc
    return Campaign(name, ledger=ledger)


def load_sender(path: str) -> Callable[[str], object]:
    """Return the function that ``--deliver module:function`` names."""
    target = load_object(path, "--deliver")
    if not callable(target):
        raise UsageError(f"--deliver {path!r} is a {type(target).__name__}, not a function")
    return cast(Callable[[str], object], target)
