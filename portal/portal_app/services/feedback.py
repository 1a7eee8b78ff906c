"""Feedback from a deployment: export captured inputs, upload their labels.

A real-time endpoint's data capture (SageMaker's JSON Lines under ``<capture_prefix><endpoint>/
<variant>/yyyy/mm/dd/hh/``, one request per line) is exported for a time window into one CSV,
``tenants/<t>/feedback/<deployment>/<start>-<end>/inputs.csv``, for the tenant to label; the
labelled CSV comes back to ``tenants/<t>/feedback/<deployment>/labelled/<file>``, which a
retraining policy with feedback adds to its runs' training data. Everything is read and written
with the tenant's credentials, below the tenant's prefix.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from training_common import Deployment, EndpointKind, feedback_prefix, tenant_prefix

from ..aws import TenantAws
from ..errors import BadRequest, Conflict, NotFound

log = logging.getLogger("portal.feedback")

MAX_WINDOW = timedelta(days=7)
MAX_EXPORT_ROWS = 10_000
MAX_EXPORT_FILES = 1_000
MAX_LABELLED_BYTES = 25 * 1024 * 1024
"""The largest labelled CSV the portal takes (it passes through the portal's memory)."""
MAX_LISTED = 1_000
CSV_TYPES = frozenset({"text/csv", "application/csv"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Export:
    """An export's outcome: where it went (None: nothing in the window) and how much."""

    key: str | None
    rows: int
    files: int
    truncated: bool
    start: datetime
    end: datetime


@dataclass(frozen=True)
class FeedbackFile:
    key: str
    name: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class Listing:
    exports: list[FeedbackFile]
    labelled: list[FeedbackFile]


def deployment_prefix(tenant_id: str, deployment_id: str) -> str:
    """``tenants/<t>/feedback/<deployment>/``."""
    return f"{feedback_prefix(tenant_id)}{deployment_id}/"


def labelled_prefix(tenant_id: str, deployment_id: str) -> str:
    return f"{deployment_prefix(tenant_id, deployment_id)}labelled/"


def capture_problem(deployment: Deployment) -> str | None:
    """Why the deployment has no captured inputs to export, or None."""
    if deployment.kind != EndpointKind.REALTIME:
        return (
            f"Deployment {deployment.deployment_id} is serverless: SageMaker captures no data "
            "for serverless endpoints, so there is nothing to export. Labelled files can still "
            "be uploaded."
        )
    if not deployment.capture_prefix:
        return f"Deployment {deployment.deployment_id} has no data capture configured yet."
    return None


def _time(form: dict[str, str], name: str, label: str) -> datetime:
    raw = form.get(name, "").strip()
    if not raw:
        raise BadRequest(f"{label} is required.")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{label} must be an ISO date and time such as 2026-12-01T08:00, not {raw[:40]!r}."
        ) from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def window_from_form(form: dict[str, str]) -> tuple[datetime, datetime]:
    """(start, end) in UTC; the end after the start, at most 7 days later (BadRequest)."""
    start = _time(form, "start", "Start")
    end = _time(form, "end", "End")
    if end <= start:
        raise BadRequest("The end of the window must be after its start.")
    if end - start > MAX_WINDOW:
        raise BadRequest(
            f"A window is at most {MAX_WINDOW.days} days long; export a longer period in parts."
        )
    return start, end


def _code(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def export_key(tenant_id: str, deployment_id: str, start: datetime, end: datetime) -> str:
    return f"{deployment_prefix(tenant_id, deployment_id)}{_code(start)}-{_code(end)}/inputs.csv"


def _hours(start: datetime, end: datetime) -> list[datetime]:
    hour = start.replace(minute=0, second=0, microsecond=0)
    found = []
    while hour < end:
        found.append(hour)
        hour += timedelta(hours=1)
    return found


def _own_capture_prefix(aws: TenantAws, deployment: Deployment) -> str:
    prefix = deployment.capture_prefix or ""
    if not prefix.startswith(tenant_prefix(aws.tenant_id)) or ".." in prefix.split("/"):
        log.error(
            "capture prefix outside the tenant",
            extra={"deployment_id": deployment.deployment_id, "prefix": prefix},
        )
        raise NotFound("The deployment's data capture is not where it should be.")
    return prefix if prefix.endswith("/") else prefix + "/"


def _variants(aws: TenantAws, bucket: str, endpoint_prefix: str) -> list[str]:
    response = aws.s3.list_objects_v2(Bucket=bucket, Prefix=endpoint_prefix, Delimiter="/")
    return sorted(str(p["Prefix"]) for p in response.get("CommonPrefixes", []))


def _rows_of(record: dict[str, Any]) -> list[str]:
    """The CSV rows of one captured request (a CSV body may hold several)."""
    captured = record.get("captureData", {}).get("endpointInput", {})
    data = captured.get("data")
    if not isinstance(data, str):
        return []
    encoding = str(captured.get("encoding", "CSV")).upper()
    if encoding == "BASE64":
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return []
    else:
        text = data
    content_type = str(captured.get("observedContentType", "")).split(";")[0].strip().lower()
    if encoding == "CSV" or content_type in CSV_TYPES:
        return [line for line in text.splitlines() if line.strip()]
    # JSON (or another type) as one quoted field per request.
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([text])
    return [out.getvalue()]


def _inference_time(record: dict[str, Any]) -> datetime | None:
    raw = record.get("eventMetadata", {}).get("inferenceTime")
    if not isinstance(raw, str):
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _capture_keys(
    aws: TenantAws, bucket: str, endpoint_prefix: str, start: datetime, end: datetime
) -> Iterator[str]:
    """The capture files of the hours ``[start, end)`` touches, variant by variant, hour by
    hour (SageMaker writes a request under the hour it was captured in)."""
    paginator = aws.s3.get_paginator("list_objects_v2")
    for variant in _variants(aws, bucket, endpoint_prefix):
        for hour in _hours(start, end):
            prefix = f"{variant}{hour:%Y/%m/%d/%H}/"
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield str(obj["Key"])


def _rows_in(body: bytes, start: datetime, end: datetime) -> Iterator[str]:
    """The CSV rows of the requests in one capture file captured in ``[start, end)``."""
    for line in body.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        when = _inference_time(record)
        if when is not None and start <= when < end:
            yield from _rows_of(record)


def export(
    aws: TenantAws, bucket: str, deployment: Deployment, start: datetime, end: datetime
) -> Export:
    """The inputs captured in ``[start, end)`` as one CSV (at most :data:`MAX_EXPORT_ROWS` rows
    from :data:`MAX_EXPORT_FILES` capture files); Conflict for a deployment without capture."""
    problem = capture_problem(deployment)
    if problem:
        raise Conflict(problem)
    endpoint_prefix = f"{_own_capture_prefix(aws, deployment)}{deployment.endpoint_name}/"
    rows: list[str] = []
    files = 0
    truncated = False
    for key in _capture_keys(aws, bucket, endpoint_prefix, start, end):
        if files >= MAX_EXPORT_FILES or len(rows) >= MAX_EXPORT_ROWS:
            truncated = True
            break
        files += 1
        rows.extend(_rows_in(aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read(), start, end))
    if len(rows) > MAX_EXPORT_ROWS:
        rows = rows[:MAX_EXPORT_ROWS]
        truncated = True
    if not rows:
        return Export(None, 0, files, truncated, start, end)
    key = export_key(aws.tenant_id, deployment.deployment_id, start, end)
    aws.s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=("\n".join(rows) + "\n").encode(),
        ContentType="text/csv",
    )
    log.info(
        "feedback exported",
        extra={
            "tenant_id": aws.tenant_id,
            "deployment_id": deployment.deployment_id,
            "rows": len(rows),
            "files": files,
            "truncated": truncated,
        },
    )
    return Export(key, len(rows), files, truncated, start, end)


def safe_file_name(name: str) -> str:
    """The uploaded file's base name with anything but letters, digits, ``.``, ``-`` and ``_``
    replaced; BadRequest unless it is a ``.csv`` name."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    safe = _SAFE_NAME.sub("-", base).strip(".-")[:100]
    if not safe.lower().endswith(".csv") or len(safe) <= len(".csv"):
        raise BadRequest("Upload a labelled file with a .csv name (for example labelled.csv).")
    return safe


def upload_labelled(
    aws: TenantAws, bucket: str, deployment: Deployment, file_name: str, body: bytes
) -> str:
    """Store a labelled CSV under the deployment's ``labelled/`` prefix; its key."""
    name = safe_file_name(file_name)
    if not body.strip():
        raise BadRequest("The uploaded file is empty.")
    if len(body) > MAX_LABELLED_BYTES:
        raise BadRequest(
            f"A labelled file is at most {MAX_LABELLED_BYTES // (1024 * 1024)} MB; split it."
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("A labelled file must be UTF-8 text (CSV).") from None
    key = f"{labelled_prefix(aws.tenant_id, deployment.deployment_id)}{name}"
    aws.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/csv")
    log.info(
        "labelled feedback uploaded",
        extra={"tenant_id": aws.tenant_id, "deployment_id": deployment.deployment_id, "key": key},
    )
    return key


_DOWNLOADABLE = re.compile(r"^(\d{14}-\d{14}/inputs\.csv|labelled/[A-Za-z0-9._-]+)$")


def download_url(
    aws: TenantAws, bucket: str, deployment: Deployment, name: str, expires: int
) -> str:
    """A presigned GET of one export (``<start>-<end>/inputs.csv``) or labelled file
    (``labelled/<file>``) of the tenant's deployment; BadRequest for any other name (the key is
    built from the tenant's own prefix, never taken from the request)."""
    if not _DOWNLOADABLE.fullmatch(name) or ".." in name:
        raise BadRequest(
            "file must be an export (<start>-<end>/inputs.csv) or a labelled file "
            "(labelled/<name>) of this deployment"
        )
    key = f"{deployment_prefix(aws.tenant_id, deployment.deployment_id)}{name}"
    file_name = name.replace("/", "-")
    url: str = aws.s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ResponseContentDisposition": f'attachment; filename="{file_name}"',
        },
        ExpiresIn=expires,
    )
    return url


def listing(aws: TenantAws, bucket: str, deployment: Deployment) -> Listing:
    """The deployment's exports (newest window first) and labelled files (by name)."""
    prefix = deployment_prefix(aws.tenant_id, deployment.deployment_id)
    labelled = labelled_prefix(aws.tenant_id, deployment.deployment_id)
    exports: list[FeedbackFile] = []
    labels: list[FeedbackFile] = []
    paginator = aws.s3.get_paginator("list_objects_v2")
    seen = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            item = FeedbackFile(key, key[len(prefix) :], int(obj["Size"]), obj["LastModified"])
            if key.startswith(labelled):
                labels.append(FeedbackFile(key, key[len(labelled) :], item.size, item.modified))
            elif key.endswith("/inputs.csv"):
                exports.append(item)
            seen += 1
        if seen >= MAX_LISTED:
            break
    exports.sort(key=lambda f: f.name, reverse=True)
    labels.sort(key=lambda f: f.name)
    return Listing(exports, labels)
