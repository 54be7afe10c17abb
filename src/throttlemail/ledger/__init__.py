"""Ledgers: where a campaign records every recipient and its state."""

from .base import RecipientLedger, RecipientRecord
from .memory import InMemoryLedger
from .redis import RedisLedger
from .sqlite import SqliteLedger

__all__ = [
    "InMemoryLedger",
    "RecipientLedger",
    "RecipientRecord",
    "RedisLedger",
    "SqliteLedger",
]
