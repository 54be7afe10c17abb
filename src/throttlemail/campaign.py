"""The campaign: one ledger, one planner and one dispatcher under one name."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from ._states import CampaignState, Claim, Counts, DeliveryStart, PopulateResult, RecipientState
from .clock import Clock, SystemClock
from .dispatch.base import Dispatcher
from .errors import (
    CampaignStateError,
    DispatchError,
    InvalidInputError,
    InvalidRecipientError,
    ThrottlemailError,
    UnknownRecipientError,
)
from .guard import DeliveryOutcome, describe_error, is_temporary
from .ids import normalize_recipient_id
from .ledger.base import RecipientLedger
from .planner import BatchPlanner, Plan

logger = logging.getLogger(__name__)

_CAMPAIGN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
POPULATE_CHUNK_SIZE = 10_000


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one :meth:`Campaign.send_batch` call.

    ``claimed`` recipients were taken from ``pending``, and ``dispatched`` of them were
    handed to the dispatcher in ``slices`` slices. The slices are due from ``first_due_at``
    to ``last_due_at``, in seconds since the epoch. Both are ``None`` when nothing was
    pending.
    """

    campaign: str
    claimed: int
    dispatched: int
    slices: int
    first_due_at: float | None
    last_due_at: float | None


@dataclass(frozen=True)
class CampaignStatus:
    """A campaign's control state and per-state counts, read at one moment."""

    campaign: str
    state: CampaignState
    counts: Counts

    def as_dict(self) -> dict[str, object]:
        """Return the status as the command line prints it with ``--json``."""
        return {
            "campaign": self.campaign,
            "state": self.state.value,
            "counts": self.counts.as_dict(),
        }


class Campaign:
    """One e-mail sent to many recipients: their ledger, the pace, and the way to the queue.

    Operators call :meth:`populate`, :meth:`send_batch`, :meth:`pause` and the rest; worker
    jobs call :meth:`deliver` around the application's own send function.

    ``name`` is 1 to 100 letters, digits, dots, dashes and underscores, starting with a
    letter or digit, and must match the ledger's campaign. ``planner`` defaults to 100
    recipients every 30 seconds. ``dispatcher`` may be omitted where the campaign is only
    inspected or only delivers (in a worker).
    """

    def __init__(
        self,
        name: str,
        *,
        ledger: RecipientLedger,
        planner: BatchPlanner | None = None,
        dispatcher: Dispatcher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = check_campaign_name(name)
        if not isinstance(ledger, RecipientLedger):
            raise TypeError(
                f"ledger must implement RecipientLedger, got {type(ledger).__name__}"
            )
        if ledger.campaign != name:
            raise ValueError(
                f"campaign {name!r} was given the ledger of campaign {ledger.campaign!r}; "
                "build the ledger with the same campaign name"
            )
        if dispatcher is not None and not isinstance(dispatcher, Dispatcher):
            raise TypeError(
                f"dispatcher must implement Dispatcher, got {type(dispatcher).__name__}"
            )

        self.ledger = ledger
        self.planner = planner if planner is not None else BatchPlanner()
        self.dispatcher = dispatcher
        self.clock = clock if clock is not None else SystemClock()

    def __repr__(self) -> str:
        return f"Campaign({self.name!r}, ledger={self.ledger!r}, planner={self.planner!r})"

    # -- import -------------------------------------------------------------------------

    def populate(
        self,
        recipient_ids: Iterable[object],
        *,
        on_invalid: Callable[[object, InvalidRecipientError], None] | None = None,
        on_progress: Callable[[PopulateResult], None] | None = None,
        chunk_size: int = POPULATE_CHUNK_SIZE,
    ) -> PopulateResult:
        """Add recipients as ``pending``; ids already present keep their state.

        ``added`` counts new ids. ``existing`` counts every other valid value, including a
        repeat of an id seen earlier in the same input. An invalid value raises
        :class:`~throttlemail.InvalidRecipientError` before its chunk is written, unless
        ``on_invalid`` is given, in which case it is passed there, counted and skipped.
        Chunks written before an error stay written; importing the same input again is safe.
        ``on_progress`` receives the running totals after each chunk.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")

        total = PopulateResult()
        values = iter(recipient_ids)
        while chunk := list(islice(values, chunk_size)):
            total += self._populate_chunk(chunk, on_invalid)
            if on_progress is not None:
                on_progress(total)

        logger.info(
            "campaign %s: imported %d new recipients, %d already present, %d invalid",
            self.name, total.added, total.existing, total.invalid,
        )
        return total

    def _populate_chunk(
        self,
        chunk: list[object],
        on_invalid: Callable[[object, InvalidRecipientError], None] | None,
    ) -> PopulateResult:
        unique: dict[str, None] = {}
        invalid = 0
        for value in chunk:
            try:
                unique[normalize_recipient_id(value)] = None
            except InvalidRecipientError as error:
                if on_invalid is None:
                    raise
                on_invalid(value, error)
                invalid += 1

        added = self.ledger.add(list(unique), now=self.clock.now()) if unique else 0
        return PopulateResult(added=added, existing=len(chunk) - invalid - added, invalid=invalid)

    # -- sending --------------------------------------------------------------------------

    def send_batch(
        self,
        size: int,
        *,
        planner: BatchPlanner | None = None,
        on_slice: Callable[[int, int], None] | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> BatchResult:
        """Claim up to ``size`` pending recipients, plan them at the campaign's pace and hand
        them to the dispatcher.

        ``planner`` overrides the campaign's pace for this batch. ``on_plan(plan)`` is called
        once the batch is planned, before the first slice is dispatched, and
        ``on_slice(dispatched, claimed)`` after each slice.

        If the dispatcher raises, every recipient not yet handed over goes back to
        ``pending`` and :class:`~throttlemail.DispatchError` is raised. An interrupt
        (``KeyboardInterrupt``) releases them the same way and then propagates. Either way
        the unused end of the batch's pace is given back, unless a later batch has already
        reserved the time after it.
        """
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"batch size must be an int, got {type(size).__name__}")
        if size < 1:
            raise ValueError(f"batch size must be a positive integer, got {size}")
        if self.dispatcher is None:
            raise ThrottlemailError(
                f"campaign {self.name!r} has no dispatcher; pass dispatcher= to Campaign "
                "to send batches"
            )
        self._require_running("send a batch")

        planner = planner if planner is not None else self.planner
        claims = self.ledger.claim(size, now=self.clock.now())
        if not claims:
            logger.info("campaign %s: no pending recipients to claim", self.name)
            return BatchResult(self.name, 0, 0, 0, None, None)

        # From here on, anything that stops the batch (an error, Ctrl-C) must hand the
        # claims back, or the recipients would stay scheduled with no job to send them.
        try:
            span = planner.span(len(claims))
            start = self.ledger.reserve_pace(span, now=self.clock.now())
        except BaseException as exc:
            self._release_after_failure(claims, exc)
            raise

        plan = planner.plan(claims, start=start)
        logger.info(
            "campaign %s: claimed %d recipients in %d slices, due from %.3f to %.3f",
            self.name, len(claims), len(plan.slices), plan.slices[0].due_at,
            plan.slices[-1].due_at,
        )
        dispatched = self._dispatch_plan(plan, planner, start + span, on_plan, on_slice)
        return BatchResult(
            campaign=self.name,
            claimed=len(claims),
            dispatched=dispatched,
            slices=len(plan.slices),
            first_due_at=plan.slices[0].due_at,
            last_due_at=plan.slices[-1].due_at,
        )

    def _dispatch_plan(
        self,
        plan: Plan,
        planner: BatchPlanner,
        reserved_end: float,
        on_plan: Callable[[Plan], None] | None,
        on_slice: Callable[[int, int], None] | None,
    ) -> int:
        assert self.dispatcher is not None  # checked by send_batch
        claimed = plan.recipient_count
        dispatched = 0
        position = 0
        try:
            if on_plan is not None:
                on_plan(plan)
            for planned in plan.slices:
                position = planned.index
                self.dispatcher.dispatch(self.name, planned)
                dispatched += len(planned)
                if on_slice is not None:
                    on_slice(dispatched, claimed)
        except BaseException as exc:
            undelivered = [c for part in plan.slices[position:] for c in part.claims]
            released = self._release_after_failure(undelivered, exc)
            self._return_unused_pace(plan, position, planner, reserved_end)
            if not isinstance(exc, Exception):
                raise
            raise DispatchError(
                f"campaign {self.name!r}: dispatching slice {position} failed after "
                f"{dispatched} of {claimed} recipients: {describe_error(exc)}; "
                f"{released} recipients went back to pending",
                campaign=self.name,
                dispatched=dispatched,
                released=released,
            ) from exc
        return dispatched

    def _return_unused_pace(
        self, plan: Plan, stopped_at: int, planner: BatchPlanner, reserved_end: float
    ) -> None:
        # The slice being dispatched when the batch stopped may have been partly sent, and
        # late, so the pace resumes after it: at its planned successor's due time, and no
        # sooner than one interval from now. Nothing moves if a later batch reserved after
        # this one, because its slices are already planned.
        following = stopped_at + 1
        if following < len(plan.slices):
            used_until = plan.slices[following].due_at
        else:
            used_until = plan.next_due_at
        resume_at = max(used_until, self.clock.now() + planner.interval)
        if resume_at < reserved_end:
            self.ledger.return_pace(reserved_end, resume_at)

    def _release_after_failure(self, claims: list[Claim], error: BaseException) -> int:
        released = self.ledger.release(claims, now=self.clock.now())
        logger.warning(
            "campaign %s: batch stopped (%s); released %d of %d recipients not handed over",
            self.name, type(error).__name__, released, len(claims),
        )
        return released

    # -- delivery guard -----------------------------------------------------------------

    def deliver(
        self,
        recipient_id: object,
        send: Callable[[str], object],
        *,
        claim_id: int | None = None,
    ) -> DeliveryOutcome:
        """Call ``send(recipient_id)`` at most once for the recipient's current claim.

        Call this from the delivery job with the claim id the job carries. ``send`` runs only
        if this job wins the atomic ``scheduled → sending`` transition. Its return means
        ``sent``; :class:`~throttlemail.RetryLater` or an SMTP 4xx reply puts the recipient
        back to ``pending``; any other exception marks it ``failed`` with the error's text,
        and is not re-raised. When the campaign is paused or cancelled nothing is sent and
        the recipient goes back to ``pending``.

        Without ``claim_id`` the guard cannot tell a late copy of an earlier job from the
        current one; it then accepts whichever claim is current.

        An interrupt during ``send`` (``KeyboardInterrupt``, ``SystemExit``) leaves the
        recipient in ``sending``: whether the mail went out is unknown, and an operator
        decides.
        """
        recipient_id = normalize_recipient_id(recipient_id)
        start = self.ledger.begin_delivery(recipient_id, claim_id, now=self.clock.now())

        if start is DeliveryStart.UNKNOWN:
            raise UnknownRecipientError(
                f"campaign {self.name!r} has no recipient {recipient_id!r}; check that the "
                "job and the worker use the same campaign and ledger",
                campaign=self.name,
                recipient_id=recipient_id,
            )
        if start is DeliveryStart.STALE:
            logger.debug(
                "campaign %s: recipient %s claim %s is not current; sending nothing",
                self.name, recipient_id, claim_id,
            )
            return DeliveryOutcome.STALE
        if start is DeliveryStart.HELD:
            logger.warning(
                "campaign %s: recipient %s held back to pending, the campaign is not running",
                self.name, recipient_id,
            )
            return DeliveryOutcome.HELD

        return self._send_and_record(recipient_id, send, claim_id)

    def _send_and_record(
        self, recipient_id: str, send: Callable[[str], object], claim_id: int | None
    ) -> DeliveryOutcome:
        try:
            send(recipient_id)
        except Exception as error:
            if is_temporary(error):
                self._finish(recipient_id, claim_id, RecipientState.PENDING)
                logger.warning(
                    "campaign %s: recipient %s deferred after a temporary error: %s",
                    self.name, recipient_id, describe_error(error),
                )
                return DeliveryOutcome.DEFERRED

            text = describe_error(error)
            self._finish(recipient_id, claim_id, RecipientState.FAILED, error=text)
            logger.warning(
                "campaign %s: recipient %s failed: %s", self.name, recipient_id, text
            )
            return DeliveryOutcome.FAILED

        self._finish(recipient_id, claim_id, RecipientState.SENT)
        logger.debug("campaign %s: recipient %s sent", self.name, recipient_id)
        return DeliveryOutcome.SENT

    def _finish(
        self,
        recipient_id: str,
        claim_id: int | None,
        outcome: RecipientState,
        *,
        error: str | None = None,
    ) -> None:
        moved = self.ledger.finish_delivery(
            recipient_id, claim_id, outcome, now=self.clock.now(), error=error
        )
        if not moved:
            # Only an operator's recover can move a recipient out of sending under a job.
            logger.warning(
                "campaign %s: recipient %s was no longer sending when its send finished; "
                "recorded nothing",
                self.name, recipient_id,
            )

    # -- operator controls --------------------------------------------------------------

    def state(self) -> CampaignState:
        """Return the control state: running, paused or cancelled."""
        return self.ledger.campaign_state()

    def counts(self) -> Counts:
        """Return how many recipients are in each state."""
        return self.ledger.counts()

    def status(self) -> CampaignStatus:
        """Return the control state and the counts together."""
        return CampaignStatus(self.name, self.state(), self.counts())

    def pause(self) -> None:
        """Stop sending: jobs already queued send nothing and put their recipient back to
        ``pending``, and no batch can be sent until :meth:`resume`."""
        self._change_state(CampaignState.PAUSED)

    def resume(self) -> None:
        """Allow sending again after :meth:`pause`."""
        self._change_state(CampaignState.RUNNING)

    def cancel(self) -> None:
        """Stop sending for good: like :meth:`pause`, but a cancelled campaign cannot be
        resumed."""
        self._change_state(CampaignState.CANCELLED)

    def retry_failed(self) -> int:
        """Put every ``failed`` recipient back to ``pending``; return how many."""
        moved = self.ledger.retry_failed(now=self.clock.now())
        logger.info("campaign %s: %d failed recipients back to pending", self.name, moved)
        return moved

    def suppress(self, recipient_ids: Iterable[object]) -> int:
        """Mark the given ``pending`` recipients ``skipped`` so they are never claimed;
        return how many moved."""
        unique = list(dict.fromkeys(normalize_recipient_id(value) for value in recipient_ids))
        return self.ledger.suppress(unique, now=self.clock.now())

    def export(self, state: RecipientState | str) -> Iterator[str]:
        """Yield the ids of the recipients in ``state``, in import order."""
        return self.ledger.export(RecipientState(state))

    def close(self) -> None:
        """Close the ledger's connections, where the ledger has any to close.

        The campaign stays usable: ledgers reconnect when used again.
        """
        close = getattr(self.ledger, "close", None)
        if callable(close):
            close()

    def _change_state(self, state: CampaignState) -> None:
        previous = self.ledger.change_campaign_state(state)
        if previous is CampaignState.CANCELLED and state is not CampaignState.CANCELLED:
            raise CampaignStateError(
                f"campaign {self.name!r} is cancelled, and a cancelled campaign cannot be "
                "paused or resumed; start a new campaign under another name",
                campaign=self.name,
                state=previous.value,
            )
        logger.info("campaign %s: %s -> %s", self.name, previous.value, state.value)

    def _require_running(self, action: str) -> None:
        state = self.state()
        if state is not CampaignState.RUNNING:
            hint = "resume it first" if state is CampaignState.PAUSED else "it cannot resume"
            raise CampaignStateError(
                f"cannot {action}: campaign {self.name!r} is {state.value}; {hint}",
                campaign=self.name,
                state=state.value,
            )


def check_campaign_name(name: object) -> str:
    """Return ``name`` if it is a valid campaign name; raise otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"campaign name must be a str, got {type(name).__name__}")
    if not _CAMPAIGN_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid campaign name {name!r}: use 1 to 100 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    return name
