"""Small boto3 repositories over the platform's tables and the algorithm catalog.

Each takes its boto3 object (a DynamoDB ``Table`` resource or an S3 client) in the constructor, so
the portal can pass objects built from the tenant's assumed-role session and the handlers their own.
Writes that guard the status machine are conditional; a failed condition is an answer (False or
None), not an exception.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import ValidationError

from .ids import ALGORITHM_ID_PATTERN, iso_utc, utc_now
from .keys import catalog_key
from .models import (
    CatalogEntry,
    Job,
    JobStateUpdate,
    Notification,
    StatusChange,
    Tenant,
    to_dynamo_value,
    to_item,
)
from .sessions import new_session
from .status import RUNNING_STATUSES, JobStatus, allowed_predecessors

JOBS_BY_CREATED_AT_INDEX = "ByCreatedAt"

DynamoTable = Any
"""A ``boto3.resource("dynamodb").Table(...)`` object."""


def create_tables(dynamodb: Any, *, tenants: str, jobs: str, notifications: str) -> None:
    """Create the three tables with the contract's key schemas (on-demand), for moto and the
    local portal; the Training stack declares the same keys for AWS.

    ``dynamodb`` is a boto3 DynamoDB client. Tenants: ``tenant_id``; jobs: ``tenant_id`` +
    ``job_id`` with the ``ByCreatedAt`` index (``tenant_id`` + ``created_at``); notifications:
    ``tenant_id`` + ``notification_id``.
    """
    newest_first: dict[str, Any] = {
        "IndexName": JOBS_BY_CREATED_AT_INDEX,
        "KeySchema": [
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "created_at", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
    tables: list[tuple[str, str | None, list[dict[str, Any]]]] = [
        (tenants, None, []),
        (jobs, "job_id", [newest_first]),
        (notifications, "notification_id", []),
    ]
    for name, sort_key, indexes in tables:
        keys = [("tenant_id", "HASH")] + ([(sort_key, "RANGE")] if sort_key else [])
        attributes = {key for key, _ in keys} | {
            part["AttributeName"] for index in indexes for part in index["KeySchema"]
        }
        extra: dict[str, Any] = {"GlobalSecondaryIndexes": indexes} if indexes else {}
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
            AttributeDefinitions=[
                {"AttributeName": attribute, "AttributeType": "S"}
                for attribute in sorted(attributes)
            ],
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )


S3Client = Any
"""A ``boto3.client("s3")`` object."""


class JobAlreadyExistsError(Exception):
    """A job record with this tenant id and job id already exists."""


class CatalogError(Exception):
    """The catalog holds a document that isn't a valid algorithm entry (an administrator's fix)."""


def is_conditional_check_failure(error: ClientError) -> bool:
    """True when ``error`` is DynamoDB's ConditionalCheckFailedException."""
    return bool(error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def _table(name: str, session: boto3.Session | None) -> DynamoTable:
    return (session or new_session()).resource("dynamodb").Table(name)


def _query_all(table: DynamoTable, **kwargs: Any) -> Iterator[dict[str, Any]]:
    while True:
        page = table.query(**kwargs)
        yield page
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class TenantRepository:
    """``TENANTS_TABLE``: one item per tenant."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    @classmethod
    def from_table_name(cls, name: str, session: boto3.Session | None = None) -> TenantRepository:
        """A repository over the table called ``name``."""
        return cls(_table(name, session))

    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant, or None when there is no such record."""
        item = self.table.get_item(Key={"tenant_id": tenant_id}).get("Item")
        return None if item is None else Tenant.model_validate(item)

    def put(self, tenant: Tenant) -> None:
        """Create or replace a tenant (onboarding, quota changes)."""
        self.table.put_item(Item=to_item(tenant))


class JobRepository:
    """``JOBS_TABLE``: one item per job, keyed by ``tenant_id`` and ``job_id``."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    @classmethod
    def from_table_name(cls, name: str, session: boto3.Session | None = None) -> JobRepository:
        """A repository over the table called ``name``."""
        return cls(_table(name, session))

    def create(self, job: Job) -> None:
        """Write a new job record; JobAlreadyExistsError if the job id is taken."""
        try:
            self.table.put_item(Item=to_item(job), ConditionExpression=Attr("job_id").not_exists())
        except ClientError as error:
            if is_conditional_check_failure(error):
                raise JobAlreadyExistsError(job.job_id) from error
            raise

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        """The job record (strongly consistent read), or None."""
        item = self.table.get_item(
            Key={"tenant_id": tenant_id, "job_id": job_id}, ConsistentRead=True
        ).get("Item")
        return None if item is None else Job.model_validate(item)

    def list_for_tenant(self, tenant_id: str, limit: int = 50) -> list[Job]:
        """The tenant's most recent jobs, newest first (``ByCreatedAt`` index)."""
        page = self.table.query(
            IndexName=JOBS_BY_CREATED_AT_INDEX,
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [Job.model_validate(item) for item in page.get("Items", [])]

    def count_running(self, tenant_id: str) -> int:
        """How many of the tenant's jobs are STARTING, IN_PROGRESS or STOPPING."""
        statuses = sorted(status.value for status in RUNNING_STATUSES)
        return sum(
            int(page.get("Count", 0))
            for page in _query_all(
                self.table,
                KeyConditionExpression=Key("tenant_id").eq(tenant_id),
                FilterExpression=Attr("status").is_in(statuses),
                Select="COUNT",
            )
        )

    def transition(
        self,
        tenant_id: str,
        job_id: str,
        new_status: JobStatus,
        *,
        from_statuses: Iterable[JobStatus] | None = None,
        failure_reason: str | None = None,
        launch_attempts: int | None = None,
        training_job_arn: str | None = None,
    ) -> bool:
        """Move a job to ``new_status`` if the status machine (and ``from_statuses``) allows it.

        Appends to ``status_history``. Returns False, writing nothing, when the job doesn't exist
        or its current status may not move to ``new_status``: a final state is never overwritten.
        """
        allowed = allowed_predecessors(new_status)
        if from_statuses is not None:
            allowed = allowed & frozenset(from_statuses)
        if not allowed:
            return False
        now = utc_now()
        values: dict[str, Any] = {
            "status": new_status.value,
            "updated_at": iso_utc(now),
        }
        if failure_reason is not None:
            values["failure_reason"] = failure_reason
        if launch_attempts is not None:
            values["launch_attempts"] = launch_attempts
        if training_job_arn is not None:
            values["training_job_arn"] = training_job_arn
        entry = StatusChange(status=new_status, at=now)
        return self._update(tenant_id, job_id, values, entry, allowed) is not None

    def set_launch_attempts(self, tenant_id: str, job_id: str, attempts: int) -> bool:
        """Record how often the launch handler has handled the job while it is still QUEUED."""
        try:
            self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="SET launch_attempts = :n, updated_at = :now",
                ConditionExpression=Attr("job_id").exists()
                & Attr("status").eq(JobStatus.QUEUED.value),
                ExpressionAttributeValues={":n": attempts, ":now": iso_utc(utc_now())},
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def apply_state_update(self, tenant_id: str, job_id: str, update: JobStateUpdate) -> Job | None:
        """Apply a SageMaker state change; the updated record, or None when it was not applied.

        Not applied: unknown job, an event not newer than ``last_event_time`` (duplicate or out of
        order), or a status change the status machine forbids (out of a final state).
        """
        values: dict[str, Any] = {
            "status": update.status.value,
            "updated_at": iso_utc(utc_now()),
            "last_event_time": iso_utc(update.event_time),
        }
        optional: dict[str, Any] = {
            "secondary_status": update.secondary_status,
            "failure_reason": update.failure_reason,
            "training_job_arn": update.training_job_arn,
            "billable_seconds": update.billable_seconds,
            "model_artifact_key": update.model_artifact_key,
            "final_metrics": [m.model_dump() for m in update.final_metrics] or None,
        }
        values.update({key: value for key, value in optional.items() if value is not None})
        entry = StatusChange(
            status=update.status, secondary_status=update.secondary_status, at=update.event_time
        )
        newer = Attr("last_event_time").not_exists() | Attr("last_event_time").lt(
            iso_utc(update.event_time)
        )
        return self._update(
            tenant_id, job_id, values, entry, allowed_predecessors(update.status), newer
        )

    def _update(
        self,
        tenant_id: str,
        job_id: str,
        values: dict[str, Any],
        entry: StatusChange,
        allowed: frozenset[JobStatus],
        extra_condition: Any = None,
    ) -> Job | None:
        names = {f"#{key}": key for key in values}
        names["#history"] = "status_history"
        item_values = {f":{key}": to_dynamo_value(value) for key, value in values.items()}
        item_values[":entry"] = [to_item(entry)]
        item_values[":empty"] = []
        assignments = [f"#{key} = :{key}" for key in values]
        assignments.append("#history = list_append(if_not_exists(#history, :empty), :entry)")
        condition = Attr("job_id").exists() & Attr("status").is_in(
            sorted(status.value for status in allowed)
        )
        if extra_condition is not None:
            condition = condition & extra_condition
        try:
            response = self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=item_values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return None
            raise
        return Job.model_validate(response["Attributes"])


class NotificationRepository:
    """``NOTIFICATIONS_TABLE``: a tenant's notifications, time-ordered by ``notification_id``."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    @classmethod
    def from_table_name(
        cls, name: str, session: boto3.Session | None = None
    ) -> NotificationRepository:
        """A repository over the table called ``name``."""
        return cls(_table(name, session))

    def put_if_absent(self, notification: Notification) -> tuple[Notification, bool]:
        """Write ``notification`` unless one with its id exists; (the stored one, created?)."""
        try:
            self.table.put_item(
                Item=to_item(notification),
                ConditionExpression=Attr("notification_id").not_exists(),
            )
        except ClientError as error:
            if not is_conditional_check_failure(error):
                raise
            existing = self.get(notification.tenant_id, notification.notification_id)
            if existing is None:  # deleted between the two calls: nothing left to deduplicate
                raise
            return existing, False
        return notification, True

    def get(self, tenant_id: str, notification_id: str) -> Notification | None:
        """One notification, or None."""
        item = self.table.get_item(
            Key={"tenant_id": tenant_id, "notification_id": notification_id},
            ConsistentRead=True,
        ).get("Item")
        return None if item is None else Notification.model_validate(item)

    def mark_published(self, tenant_id: str, notification_id: str) -> None:
        """Record that the notification went out on SNS."""
        self.table.update_item(
            Key={"tenant_id": tenant_id, "notification_id": notification_id},
            UpdateExpression="SET published = :true",
            ConditionExpression=Attr("notification_id").exists(),
            ExpressionAttributeValues={":true": True},
        )

    def mark_read(self, tenant_id: str, notification_id: str) -> None:
        """The tenant has seen the notification."""
        self.table.update_item(
            Key={"tenant_id": tenant_id, "notification_id": notification_id},
            UpdateExpression="SET #read = :true",
            ConditionExpression=Attr("notification_id").exists(),
            ExpressionAttributeNames={"#read": "read"},
            ExpressionAttributeValues={":true": True},
        )

    def list_for_tenant(self, tenant_id: str, limit: int = 50) -> list[Notification]:
        """The tenant's most recent notifications, newest first."""
        page = self.table.query(
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [Notification.model_validate(item) for item in page.get("Items", [])]


class CatalogRepository:
    """The algorithm catalog: ``algorithms/<id>.json`` documents in ``CATALOG_BUCKET``.

    Entries are cached for ``cache_ttl_seconds`` (0 disables it), so a warm Lambda doesn't read
    S3 for every message; catalog edits show up within that time.
    """

    def __init__(self, s3_client: S3Client, bucket: str, cache_ttl_seconds: float = 60.0) -> None:
        self.s3 = s3_client
        self.bucket = bucket
        self.cache_ttl_seconds = cache_ttl_seconds
        self._cache: dict[str, tuple[float, CatalogEntry | None]] = {}

    def get(self, algorithm_id: str) -> CatalogEntry | None:
        """The entry, or None when the catalog has no such algorithm.

        CatalogError when the document exists but is not a valid entry.
        """
        cached = self._cache.get(algorithm_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        entry = self._load(algorithm_id)
        if self.cache_ttl_seconds > 0:
            self._cache[algorithm_id] = (time.monotonic() + self.cache_ttl_seconds, entry)
        return entry

    def _load(self, algorithm_id: str) -> CatalogEntry | None:
        if not re.fullmatch(ALGORITHM_ID_PATTERN, algorithm_id):
            return None
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=catalog_key(algorithm_id))["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
        try:
            entry = CatalogEntry.model_validate(json.loads(body.read()))
        except (ValueError, ValidationError) as error:
            raise CatalogError(
                f"catalog document {catalog_key(algorithm_id)} is invalid: {error}"
            ) from error
        if entry.id != algorithm_id:
            raise CatalogError(
                f"catalog document {catalog_key(algorithm_id)} declares id {entry.id!r}"
            )
        return entry

    def list_entries(self) -> list[CatalogEntry]:
        """Every valid entry of the catalog, by id; invalid documents are skipped."""
        entries: list[CatalogEntry] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix="algorithms/"):
            for obj in page.get("Contents", []):
                key: str = obj["Key"]
                if not key.endswith(".json"):
                    continue
                try:
                    entry = self.get(key.removeprefix("algorithms/").removesuffix(".json"))
                except CatalogError:
                    continue
                if entry is not None:
                    entries.append(entry)
        return sorted(entries, key=lambda entry: entry.id)

    def put(self, entry: CatalogEntry) -> None:
        """Write an entry (administration and tests)."""
        self.s3.put_object(
            Bucket=self.bucket,
            Key=catalog_key(entry.id),
            Body=entry.model_dump_json(by_alias=True).encode(),
            ContentType="application/json",
        )
        self._cache.pop(entry.id, None)
