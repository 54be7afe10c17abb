"""Recipient ids: what the ledgers accept, and how an ``int`` becomes an id."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator

from .errors import InvalidRecipientError

MAX_RECIPIENT_ID_LENGTH = 256
"""Maximum length of a recipient id, in characters. Application ids (database keys, UUIDs, e-mail
addresses) fit well within it, and the bound keeps a mangled file from filling the ledger."""

# Whitespace and invisible characters make ids that look equal but are not, and a line
# break inside an id would corrupt an exported file.
_REJECTED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"})


def normalize_recipient_id(value: object) -> str:
    """Return ``value`` as a recipient id, or raise :class:`InvalidRecipientError`.

    A ``str`` is used as it is, never stripped, so that an id reads back exactly as the
    application wrote it. An ``int`` means its decimal string. ``bool`` and every other
    type are rejected.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecipientError(
            f"invalid recipient id {value!r}: expected a str or an int, "
            f"got {type(value).__name__}",
            value=value,
        )

    text = str(value) if isinstance(value, int) else value
    if not text:
        raise InvalidRecipientError(
            "invalid recipient id '': an id must not be empty", value=value
        )
    if len(text) > MAX_RECIPIENT_ID_LENGTH:
        raise InvalidRecipientError(
            f"invalid recipient id {text[:40]!r}...: {len(text)} characters, "
            f"the maximum is {MAX_RECIPIENT_ID_LENGTH}",
            value=value,
        )

    for position, character in enumerate(text):
        if character.isspace() or unicodedata.category(character) in _REJECTED_CATEGORIES:
            raise InvalidRecipientError(
                f"invalid recipient id {text!r}: character {character!r} at position "
                f"{position} is whitespace or a control character; remove it",
                value=value,
            )
    return text


def unique_recipient_ids(values: Iterable[object]) -> Iterator[str]:
    """Normalize ``values`` and yield each id once, in first-seen order.

    Raises :class:`InvalidRecipientError` on the first invalid value.
    """
    seen: set[str] = set()
    for value in values:
        recipient_id = normalize_recipient_id(value)
        if recipient_id not in seen:
            seen.add(recipient_id)
            yield recipient_id
