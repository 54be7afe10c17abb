"""The delivery guard's pieces that do not touch the ledger: outcomes and error sorting."""

from __future__ import annotations

import enum
import smtplib

from .errors import RetryLater

_MAX_ERROR_LENGTH = 1000


class DeliveryOutcome(str, enum.Enum):
    """The result of :meth:`throttlemail.Campaign.deliver` for one job."""

    SENT = "sent"
    """``send`` returned; the recipient is ``sent``."""

    FAILED = "failed"
    """``send`` raised a permanent error; the recipient is ``failed`` with its text."""

    DEFERRED = "deferred"
    """``send`` raised a temporary error; the recipient is ``pending`` again."""

    HELD = "held"
    """The campaign is paused or cancelled; nothing was sent and the recipient is
    ``pending`` again."""

    STALE = "stale"
    """The job is not the recipient's current claim (a late or repeated copy); nothing
    was sent and nothing changed."""

    def __str__(self) -> str:
        return self.value


def is_temporary(error: BaseException) -> bool:
    """Return whether ``error`` means "try this recipient again later".

    That is :class:`~throttlemail.RetryLater`, an SMTP reply in the 4xx range, or a refusal
    in which every refused address got a 4xx reply.
    """
    if isinstance(error, RetryLater):
        return True
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [reply[0] for reply in error.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    return False


def describe_error(error: BaseException) -> str:
    """Return the text stored with a failed recipient: the error's type and message."""
    text = f"{type(error).__name__}: {error}".strip()
    if len(text) > _MAX_ERROR_LENGTH:
        text = text[: _MAX_ERROR_LENGTH - 3] + "..."
    return text
