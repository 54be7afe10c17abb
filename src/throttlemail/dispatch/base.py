"""The dispatcher protocol: how a planned slice reaches whatever sends its mail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..planner import Slice


@dataclass(frozen=True)
class Job:
    """The payload of a delivery job: the campaign, the recipient and its claim.

    Pass all three to :meth:`throttlemail.Campaign.deliver` when the job runs.
    """

    campaign: str
    recipient_id: str
    claim_id: int


@runtime_checkable
class Dispatcher(Protocol):
    """Hands each recipient of a slice to something that sends it at the slice's due time."""

    def dispatch(self, campaign: str, planned: Slice) -> None:
        """Hand over every recipient of ``planned``, to run at ``planned.due_at``.

        Raise if handing over fails. The campaign then puts the recipients of this slice and
        of every later slice of the batch back to ``pending``. Jobs already handed over stay
        harmless, because their claim is no longer current and the delivery guard ignores them.
        """
        ...
