"""throttlemail: send one e-mail to millions of users, paced, resumable and accounted for."""

from ._states import CampaignState, Claim, Counts, DeliveryStart, PopulateResult, RecipientState
from .campaign import BatchResult, Campaign, CampaignStatus
from .clock import Clock, SystemClock
from .dispatch import CallableDispatcher, Dispatcher, Job
from .errors import (
    CampaignNotFoundError,
    CampaignStateError,
    DispatchError,
    InvalidInputError,
    InvalidRecipientError,
    LedgerError,
    MissingDependencyError,
    RetryLater,
    ThrottlemailError,
    UnknownRecipientError,
)
from .guard import DeliveryOutcome
from .ids import MAX_RECIPIENT_ID_LENGTH, normalize_recipient_id
from .ledger import (
    InMemoryLedger,
    RecipientLedger,
    RecipientRecord,
    RedisLedger,
    SqliteLedger,
)
from .ledger.url import open_ledger
from .planner import BatchPlanner, Plan, Slice

__version__ = "0.1.0.dev0"

__all__ = [
    "MAX_RECIPIENT_ID_LENGTH",
    "BatchPlanner",
    "BatchResult",
    "CallableDispatcher",
    "Campaign",
    "CampaignNotFoundError",
    "CampaignState",
    "CampaignStateError",
    "CampaignStatus",
    "Claim",
    "Clock",
    "Counts",
    "DeliveryOutcome",
    "DeliveryStart",
    "DispatchError",
    "Dispatcher",
    "InMemoryLedger",
    "InvalidInputError",
    "InvalidRecipientError",
    "Job",
    "LedgerError",
    "MissingDependencyError",
    "Plan",
    "PopulateResult",
    "RecipientLedger",
    "RecipientRecord",
    "RecipientState",
    "RedisLedger",
    "RetryLater",
    "Slice",
    "SqliteLedger",
    "SystemClock",
    "ThrottlemailError",
    "UnknownRecipientError",
    "__version__",
    "normalize_recipient_id",
    "open_ledger",
]
