"""The exceptions throttlemail raises.

Every exception derives from :class:`ThrottlemailError`, so one ``except`` clause catches
them all::

    ThrottlemailError
    ├── InvalidRecipientError (ValueError)   a recipient id that cannot be stored
    ├── InvalidInputError (ValueError)       a recipient file or option that cannot be used
    ├── LedgerError                          the ledger's storage failed or is unusable
    │   └── CampaignNotFoundError            the ledger contains no such campaign
    ├── DispatchError                        handing a slice to the job queue failed
    ├── CampaignStateError                   the campaign is paused or cancelled
    ├── UnknownRecipientError (LookupError)  a job names a recipient the ledger does not hold
    └── MissingDependencyError (ImportError) an optional extra is not installed

:class:`RetryLater` is not an error of ours but a signal: raise it from your send function
when the mail could not be sent this time and should be tried again later.
"""

from __future__ import annotations


class ThrottlemailError(Exception):
    """Base class of every exception that throttlemail raises."""


class InvalidRecipientError(ThrottlemailError, ValueError):
    """A recipient id is empty, too long, contains whitespace or control characters,
    or is of a type that cannot be an id."""

    def __init__(self, message: str, *, value: object) -> None:
        super().__init__(message)
        self.value = value


class InvalidInputError(ThrottlemailError, ValueError):
    """A recipient file, ledger URL or option cannot be used as given."""


class LedgerError(ThrottlemailError):
    """The ledger's storage failed (connection lost, disk full, database locked too long)."""

    def __init__(self, message: str, *, campaign: str | None = None) -> None:
        super().__init__(message)
        self.campaign = campaign


class CampaignNotFoundError(LedgerError):
    """The ledger was opened with ``create=False``, and its file or campaign is missing."""


class DispatchError(ThrottlemailError):
    """Handing recipients to the job queue failed part-way through a batch.

    The recipients that were not handed over are back in ``pending`` when this is raised;
    :attr:`released` is their number.
    """

    def __init__(self, message: str, *, campaign: str, dispatched: int, released: int) -> None:
        super().__init__(message)
        self.campaign = campaign
        self.dispatched = dispatched
        self.released = released


class CampaignStateError(ThrottlemailError):
    """The operation needs a running campaign, but it is paused or cancelled."""

    def __init__(self, message: str, *, campaign: str, state: str) -> None:
        super().__init__(message)
        self.campaign = campaign
        self.state = state


class UnknownRecipientError(ThrottlemailError, LookupError):
    """A delivery job names a recipient that the campaign's ledger does not hold."""

    def __init__(self, message: str, *, campaign: str, recipient_id: str) -> None:
        super().__init__(message)
        self.campaign = campaign
        self.recipient_id = recipient_id


class MissingDependencyError(ThrottlemailError, ImportError):
    """An optional extra (RQ, Celery, lupa) is needed but not installed."""


class RetryLater(Exception):
    """Raise from a send function to put the recipient back to ``pending``.

    Use it for temporary trouble (a provider's rate limit, a mailbox that is full for now).
    The recipient is claimed again by a later batch. Any other exception marks it
    ``failed``.
    """
