"""Identifiers and timestamps shared by the handlers and the portal.

Every timestamp the platform stores is an ISO-8601 UTC string with exactly three fractional
digits (``2024-05-01T12:00:00.000Z``). The fixed width makes string order equal time order, which
the job-events handler relies on in its conditional writes (``last_event_time < :t``).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer

TENANT_ID_PATTERN = r"^[a-z][a-z0-9-]{2,23}$"
ALGORITHM_ID_PATTERN = r"^[a-z][a-z0-9-]{2,39}$"
JOB_ID_PATTERN = r"^[a-z][a-z0-9-]{2,23}-\d{14}-[0-9a-f]{6}$"
SAGEMAKER_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"

_TENANT_ID_RE = re.compile(TENANT_ID_PATTERN)
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC, truncated to milliseconds."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """The platform's one timestamp format: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (fixed width, UTC)."""
    value = as_utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_iso_utc(value: str) -> datetime:
    """Parse ISO-8601 (``Z``, an offset, or naive meaning UTC) into an aware UTC datetime."""
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _to_utc_ms(value: datetime) -> datetime:
    value = as_utc(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_to_utc_ms),
    PlainSerializer(iso_utc, return_type=str, when_used="json"),
]
"""A datetime that validates from ISO strings or datetimes and serialises in the fixed format."""


def is_tenant_id(value: str) -> bool:
    """True when ``value`` is a well-formed tenant id."""
    return bool(_TENANT_ID_RE.fullmatch(value))


def new_job_id(tenant_id: str, now: datetime | None = None) -> str:
    """A new job id, which is also the SageMaker training job name.

    ``f"{tenant_id}-{utc:%Y%m%d%H%M%S}-{6 hex chars}"``: at most 46 characters, valid as a
    SageMaker name, sortable by creation time within a tenant.
    """
    if not is_tenant_id(tenant_id):
        raise ValueError(f"invalid tenant id {tenant_id!r}: expected {TENANT_ID_PATTERN}")
    stamp = as_utc(now or utc_now()).strftime("%Y%m%d%H%M%S")
    return f"{tenant_id}-{stamp}-{secrets.token_hex(3)}"


def is_job_id_of_tenant(job_id: str, tenant_id: str) -> bool:
    """True when ``job_id`` is well formed and was minted for ``tenant_id``."""
    return (
        bool(_JOB_ID_RE.fullmatch(job_id))
        and job_id.startswith(f"{tenant_id}-")
        and (len(job_id) == len(tenant_id) + 22)
    )
