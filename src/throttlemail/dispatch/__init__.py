"""Dispatchers: how a campaign hands planned slices to whatever sends the mail."""

from .base import Dispatcher, Job
from .callable import CallableDispatcher

__all__ = ["CallableDispatcher", "Dispatcher", "Job"]
