"""What the handler did with one event, and the errors that send an event to the DLQ."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from .telemetry import logger, metrics


class Outcome(StrEnum):
    """What the handler did with one event (the message is acknowledged in every case)."""

    APPLIED = "APPLIED"
    STALE = "STALE"
    UNKNOWN_JOB = "UNKNOWN_JOB"
    NOT_PLATFORM_JOB = "NOT_PLATFORM_JOB"
    IGNORED = "IGNORED"
    DEAD_LETTERED = "DEAD_LETTERED"


class BadEventError(Exception):
    """A readable event that can't be applied (dead-letter it with this reason)."""


def ignored(outcome: Outcome, text: str, **keys: Any) -> Outcome:
    """Log and count an event that changes nothing (unknown jobs are worth a warning)."""
    log = logger.warning if outcome == Outcome.UNKNOWN_JOB else logger.info
    log(text, **keys)
    metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
    return outcome


def stale(text: str, **keys: Any) -> Outcome:
    """Log and count a stale or duplicate event."""
    logger.info(text, **keys)
    metrics.add_metric(name="EventsStale", unit=MetricUnit.Count, value=1)
    return Outcome.STALE
