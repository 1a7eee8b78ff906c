"""Small boto3 repositories over the platform's tables and the algorithm catalog.

Each takes its boto3 object (a DynamoDB ``Table`` resource or an S3 client) in the constructor, so
the portal can pass objects built from the tenant's assumed-role session and the handlers their own.
Writes that guard the status machine are conditional; a failed condition is an answer (False or
None), not an exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from .deployments import (
    API_CLIENTS_BY_CLIENT_ID_INDEX,
    SETTLED_DEPLOYMENT_STATUSES,
    ApiClient,
    Deployment,
    DeploymentAction,
    DeploymentChange,
    DeploymentRequest,
    DeploymentStatus,
    endpoint_name,
)
from .ids import ALGORITHM_ID_PATTERN, iso_utc, utc_now
from .keys import catalog_key
from .models import (
    MAX_METRIC_POINTS,
    MAX_METRIC_SERIES_POINTS,
    CatalogEntry,
    Job,
    JobStateUpdate,
    MetricSeries,
    Notification,
    StatusChange,
    Tenant,
    to_dynamo_value,
    to_item,
)
from .registry import ApprovalDecision, ModelApprovalStatus, ModelVersion
from .retraining import RUNS_BY_POLICY_SEPARATOR, RetrainingPolicy, RetrainingRun
from .sessions import new_session
from .status import RUNNING_STATUSES, JobStatus, allowed_predecessors
from .tuning import BestTrainingJob, Trial

JOBS_BY_CREATED_AT_INDEX = "ByCreatedAt"
JOBS_RUNNING_INDEX = "Running"
"""Sparse index of the jobs holding running-jobs slots: only a job in STARTING, IN_PROGRESS or
STOPPING has ``running_since``, so counting a tenant's slots reads its running jobs only."""
RUNNING_SINCE = "running_since"
TRIALS_BY_OBJECTIVE_INDEX = "ByObjective"
MAX_PAGE_SIZE = 100
"""The most items one page of a listing returns."""

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the opaque token of the next one (None on the last page)."""

    items: list[T] = field(default_factory=list)
    next_token: str | None = None


class PageTokenError(ValueError):
    """A continuation token that this listing did not hand out (tampered, another tenant's)."""


def encode_page_token(last_evaluated_key: dict[str, Any] | None) -> str | None:
    """DynamoDB's ``LastEvaluatedKey`` as an opaque URL-safe token (None stays None)."""
    if not last_evaluated_key:
        return None
    data = json.dumps(last_evaluated_key, sort_keys=True, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode_page_token(
    token: str | None, *, tenant_id: str, attributes: Iterable[str]
) -> dict[str, str] | None:
    """The ``ExclusiveStartKey`` a token stands for; PageTokenError unless it is a key of
    ``tenant_id``'s partition made of exactly ``attributes`` (all strings).

    The check keeps a query on the caller's own partition whatever the token says; the tenant
    role's ``dynamodb:LeadingKeys`` condition would refuse another tenant's key anyway.
    """
    if not token:
        return None
    if len(token) > 2048:
        raise PageTokenError("the page token is too long")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise PageTokenError("the page token is not one this portal handed out") from None
    expected = set(attributes) | {"tenant_id"}
    if (
        not isinstance(data, dict)
        or set(data) != expected
        or not all(isinstance(value, str) for value in data.values())
        or data["tenant_id"] != tenant_id
    ):
        raise PageTokenError("the page token is not one this portal handed out")
    return data


def _page(
    table: DynamoTable,
    parse: Callable[[dict[str, Any]], T],
    *,
    limit: int,
    token: str | None,
    tenant_id: str,
    key_attributes: Iterable[str],
    **query: Any,
) -> Page[T]:
    """One page of ``table.query(**query)`` of at most ``limit`` items (capped at
    :data:`MAX_PAGE_SIZE`), resuming after ``token``."""
    start = decode_page_token(token, tenant_id=tenant_id, attributes=key_attributes)
    query["Limit"] = max(1, min(limit, MAX_PAGE_SIZE))
    if start is not None:
        query["ExclusiveStartKey"] = start
    response = table.query(**query)
    return Page(
        [parse(item) for item in response.get("Items", [])],
        encode_page_token(response.get("LastEvaluatedKey")),
    )


DynamoTable = Any
"""A ``boto3.resource("dynamodb").Table(...)`` object."""


def create_tables(
    dynamodb: Any,
    *,
    tenants: str | None = None,
    jobs: str | None = None,
    notifications: str | None = None,
    trials: str | None = None,
    models: str | None = None,
    deployments: str | None = None,
    api_clients: str | None = None,
    retraining_policies: str | None = None,
    retraining_runs: str | None = None,
) -> None:
    """Create the platform's tables with the contract's key schemas (on-demand), for moto and
    the local portal; the Training stack declares the same keys for AWS.

    ``dynamodb`` is a boto3 DynamoDB client; only the tables named are created. Tenants:
    ``tenant_id``; jobs: ``tenant_id`` + ``job_id`` with the ``ByCreatedAt`` index
    (``tenant_id`` + ``created_at``); notifications:
    ``tenant_id`` + ``notification_id``; trials (when named): ``tenant_id`` + ``trial_id`` with
    the ``ByObjective`` local index (``tenant_id`` + ``objective_key``); models (when named):
    ``tenant_id`` + ``job_id``.
    """
    newest_first: dict[str, Any] = {
        "IndexName": JOBS_BY_CREATED_AT_INDEX,
        "KeySchema": [
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "created_at", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
    running: dict[str, Any] = {
        "IndexName": JOBS_RUNNING_INDEX,
        "KeySchema": [
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": RUNNING_SINCE, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["status", "tuning"]},
    }
    by_objective: dict[str, Any] = {
        "IndexName": TRIALS_BY_OBJECTIVE_INDEX,
        "KeySchema": [
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "objective_key", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
    by_client: dict[str, Any] = {
        "IndexName": API_CLIENTS_BY_CLIENT_ID_INDEX,
        "KeySchema": [{"AttributeName": "client_id", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"},
    }
    # name -> (sort key, global indexes, local indexes)
    shapes: list[tuple[str | None, str | None, list[dict[str, Any]], list[dict[str, Any]]]] = [
        (tenants, None, [], []),
        (jobs, "job_id", [newest_first, running], []),
        (notifications, "notification_id", [], []),
        (trials, "trial_id", [], [by_objective]),
        (models, "job_id", [], []),
        (deployments, "deployment_id", [], []),
        (api_clients, "client_id", [by_client], []),
        (retraining_policies, "policy_id", [], []),
        (retraining_runs, "run_id", [], []),
    ]
    for name, sort_key, indexes, local_indexes in shapes:
        if not name:
            continue
        keys = [("tenant_id", "HASH")] + ([(sort_key, "RANGE")] if sort_key else [])
        attributes = {key for key, _ in keys} | {
            part["AttributeName"]
            for index in [*indexes, *local_indexes]
            for part in index["KeySchema"]
        }
        extra: dict[str, Any] = {"GlobalSecondaryIndexes": indexes} if indexes else {}
        if local_indexes:
            extra["LocalSecondaryIndexes"] = local_indexes
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


_RESOURCES: weakref.WeakKeyDictionary[boto3.Session, Any] = weakref.WeakKeyDictionary()
_RESOURCES_LOCK = threading.Lock()


def _table(name: str, session: boto3.Session | None) -> DynamoTable:
    """``name`` through the one DynamoDB resource of ``session``, shared by every repository
    built from it: a resource brings its own client, which botocore takes 3 to 10 ms to build,
    and a handler builds up to nine repositories at a cold start. (Created under a lock: a boto3
    Session is not thread-safe.)"""
    session = session or new_session()
    with _RESOURCES_LOCK:
        resource = _RESOURCES.get(session)
        if resource is None:
            resource = _RESOURCES[session] = session.resource("dynamodb")
    return resource.Table(name)


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
        item = to_item(job)
        if job.status in RUNNING_STATUSES:
            item[RUNNING_SINCE] = iso_utc(job.updated_at)
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr("job_id").not_exists())
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

    def list_page(self, tenant_id: str, *, limit: int = 50, token: str | None = None) -> Page[Job]:
        """One page of the tenant's jobs, newest first (``ByCreatedAt`` index)."""
        return _page(
            self.table,
            Job.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("job_id", "created_at"),
            IndexName=JOBS_BY_CREATED_AT_INDEX,
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
            ScanIndexForward=False,
        )

    def count_running(self, tenant_id: str) -> int:
        """Running-jobs slots the tenant's jobs in STARTING, IN_PROGRESS or STOPPING occupy:
        one per training job, ``max_parallel_training_jobs`` per tuning job. Reads the sparse
        ``Running`` index, so the cost follows the running jobs, not all of the tenant's."""
        statuses = sorted(status.value for status in RUNNING_STATUSES)
        slots = 0
        for page in _query_all(
            self.table,
            IndexName=JOBS_RUNNING_INDEX,
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
            FilterExpression=Attr("status").is_in(statuses),
            ProjectionExpression="#tuning.#parallel",
            ExpressionAttributeNames={
                "#tuning": "tuning",
                "#parallel": "max_parallel_training_jobs",
            },
        ):
            for item in page.get("Items", []):
                tuning = item.get("tuning") or {}
                slots += int(tuning.get("max_parallel_training_jobs", 1))
        return slots

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
        tuning_job_arn: str | None = None,
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
        if tuning_job_arn is not None:
            values["tuning_job_arn"] = tuning_job_arn
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
            "tuning_job_arn": update.tuning_job_arn,
            "tuning_progress": None
            if update.tuning_progress is None
            else update.tuning_progress.model_dump(mode="json"),
            "best_training_job": None
            if update.best_training_job is None
            else update.best_training_job.model_dump(mode="json", exclude_none=True),
        }
        values.update({key: value for key, value in optional.items() if value is not None})
        entry = StatusChange(
            status=update.status, secondary_status=update.secondary_status, at=update.event_time
        )
        newer = Attr("last_event_time").not_exists() | Attr("last_event_time").lt(
            iso_utc(update.event_time)
        )
        allowed = allowed_predecessors(update.status)
        if update.tuning_progress is None:
            return self._update(tenant_id, job_id, values, entry, allowed, newer)
        # A tuning job reports progress many times while InProgress: only a change of status goes
        # into the history, so a job of 500 training jobs keeps a short record.
        status_changes = Attr("status").ne(update.status.value)
        changed = self._update(tenant_id, job_id, values, entry, allowed, newer & status_changes)
        if changed is not None:
            return changed
        same = allowed & {update.status}
        return self._update(tenant_id, job_id, values, None, same, newer) if same else None

    def set_best_training_job(self, tenant_id: str, job_id: str, best: BestTrainingJob) -> bool:
        """Record a tuning job's best training job on its record when the state update that
        carries it can't apply (the final event was redelivered after the record got there)."""
        try:
            self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="SET best_training_job = :best",
                ConditionExpression=Attr("job_id").exists(),
                ExpressionAttributeValues={
                    ":best": to_dynamo_value(best.model_dump(mode="json", exclude_none=True))
                },
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def set_metric_series(self, tenant_id: str, job_id: str, series: list[MetricSeries]) -> bool:
        """Replace the job's metrics over time, thinned evenly (first and last point kept) to at
        most :data:`MAX_METRIC_POINTS` a metric and :data:`MAX_METRIC_SERIES_POINTS` in all."""
        per_series = min(MAX_METRIC_POINTS, MAX_METRIC_SERIES_POINTS // max(1, len(series)))
        kept = [
            item.model_copy(update={"points": _thinned(item.points, max(2, per_series))})
            for item in series
        ]
        try:
            self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="SET metric_series = :series",
                ConditionExpression=Attr("job_id").exists(),
                ExpressionAttributeValues={
                    ":series": to_dynamo_value([item.model_dump(mode="json") for item in kept])
                },
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def _update(
        self,
        tenant_id: str,
        job_id: str,
        values: dict[str, Any],
        entry: StatusChange | None,
        allowed: frozenset[JobStatus],
        extra_condition: Any = None,
    ) -> Job | None:
        names = {f"#{key}": key for key in values}
        item_values = {f":{key}": to_dynamo_value(value) for key, value in values.items()}
        assignments = [f"#{key} = :{key}" for key in values]
        removals: list[str] = []
        status = JobStatus(values["status"]) if "status" in values else None
        if status in RUNNING_STATUSES:
            names["#running"] = RUNNING_SINCE
            item_values[":running"] = values["updated_at"]
            assignments.append("#running = if_not_exists(#running, :running)")
        elif status is not None and status != JobStatus.QUEUED:
            names["#running"] = RUNNING_SINCE
            removals.append("#running")
        if entry is not None:
            names["#history"] = "status_history"
            item_values[":entry"] = [to_item(entry)]
            item_values[":empty"] = []
            assignments.append("#history = list_append(if_not_exists(#history, :empty), :entry)")
        condition = Attr("job_id").exists() & Attr("status").is_in(
            sorted(status.value for status in allowed)
        )
        if extra_condition is not None:
            condition = condition & extra_condition
        try:
            response = self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="SET "
                + ", ".join(assignments)
                + (" REMOVE " + ", ".join(removals) if removals else ""),
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


def _thinned(points: list[T], most: int) -> list[T]:
    """At most ``most`` of ``points``, evenly spaced, the first and the last among them."""
    if len(points) <= most:
        return list(points)
    step = (len(points) - 1) / (most - 1)
    return [points[round(index * step)] for index in range(most)]


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

    def list_page(
        self, tenant_id: str, *, limit: int = 50, token: str | None = None
    ) -> Page[Notification]:
        """One page of the tenant's notifications, newest first."""
        return _page(
            self.table,
            Notification.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("notification_id",),
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
            ScanIndexForward=False,
        )


class TrialRepository:
    """``TRIALS_TABLE``: the training jobs of each tuning job (see :class:`Trial`)."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    @classmethod
    def from_table_name(cls, name: str, session: boto3.Session | None = None) -> TrialRepository:
        """A repository over the table called ``name``."""
        return cls(_table(name, session))

    def apply(self, trial: Trial) -> bool:
        """Write ``trial`` unless the stored one is as new or newer (``last_event_time``):
        duplicate and out-of-order events change nothing. True when written."""
        newer = Attr("last_event_time").not_exists() | Attr("last_event_time").lt(
            iso_utc(trial.last_event_time)
        )
        try:
            self.table.put_item(Item=to_item(trial), ConditionExpression=newer)
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def get(self, tenant_id: str, job_id: str, training_job_name: str) -> Trial | None:
        """One trial, or None."""
        item = self.table.get_item(
            Key={"tenant_id": tenant_id, "trial_id": Trial.make_id(job_id, training_job_name)},
            ConsistentRead=True,
        ).get("Item")
        return None if item is None else Trial.model_validate(item)

    def best_first(
        self, tenant_id: str, job_id: str, *, limit: int = 50, token: str | None = None
    ) -> Page[Trial]:
        """One page of a tuning job's trials, best objective first (``ByObjective`` index)."""
        return _page(
            self.table,
            Trial.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("trial_id", "objective_key"),
            IndexName=TRIALS_BY_OBJECTIVE_INDEX,
            KeyConditionExpression=Key("tenant_id").eq(tenant_id)
            & Key("objective_key").begins_with(f"{job_id}#"),
        )

    def in_launch_order(
        self, tenant_id: str, job_id: str, *, limit: int = 50, token: str | None = None
    ) -> Page[Trial]:
        """One page of a tuning job's trials in the order SageMaker started them."""
        return _page(
            self.table,
            Trial.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("trial_id",),
            KeyConditionExpression=Key("tenant_id").eq(tenant_id)
            & Key("trial_id").begins_with(f"{job_id}#"),
        )


class ModelRepository:
    """``MODELS_TABLE``: the tenant's registered model versions (see :class:`ModelVersion`)."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    @classmethod
    def from_table_name(cls, name: str, session: boto3.Session | None = None) -> ModelRepository:
        """A repository over the table called ``name``."""
        return cls(_table(name, session))

    def get(self, tenant_id: str, job_id: str) -> ModelVersion | None:
        """The model version registered for a job, or None."""
        item = self.table.get_item(
            Key={"tenant_id": tenant_id, "job_id": job_id}, ConsistentRead=True
        ).get("Item")
        return None if item is None else ModelVersion.model_validate(item)

    def put_if_absent(self, model: ModelVersion) -> tuple[ModelVersion, bool]:
        """Write ``model`` unless the job already has one; (the stored one, created?)."""
        try:
            self.table.put_item(
                Item=to_item(model), ConditionExpression=Attr("job_id").not_exists()
            )
        except ClientError as error:
            if not is_conditional_check_failure(error):
                raise
            existing = self.get(model.tenant_id, model.job_id)
            if existing is None:
                raise
            return existing, False
        return model, True

    def set_registered(
        self, tenant_id: str, job_id: str, *, arn: str, version: int | None
    ) -> ModelVersion | None:
        """Record the model package SageMaker created and move REGISTERING to pending approval;
        a status that a state-change event already wrote stays. None when there is no record."""
        values: dict[str, Any] = {":arn": arn, ":now": iso_utc(utc_now())}
        expression = "SET model_package_arn = :arn, updated_at = :now"
        if version is not None:
            expression += ", model_version = :version"
            values[":version"] = version
        try:
            self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression=expression,
                ConditionExpression=Attr("job_id").exists(),
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return None
            raise
        try:
            self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="SET approval_status = :pending",
                ConditionExpression=Attr("approval_status").eq(
                    ModelApprovalStatus.REGISTERING.value
                ),
                ExpressionAttributeValues={":pending": ModelApprovalStatus.PENDING.value},
            )
        except ClientError as error:
            if not is_conditional_check_failure(error):
                raise
        return self.get(tenant_id, job_id)

    def record_decision(self, tenant_id: str, job_id: str, decision: ApprovalDecision) -> bool:
        """Record the tenant's decision (the portal, with the tenant's credentials, on a version
        it read as pending approval) unless the version has one already; False otherwise.
        Recorded before SageMaker is told, so of two simultaneous decisions only one reaches
        SageMaker."""
        undecided = Attr("decisions").not_exists() | Attr("decisions").size().eq(0)
        try:
            # Only job_id and decisions in the condition: the tenant role may touch no other
            # attribute (dynamodb:Attributes), so the caller checks the status it read.
            self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="SET decisions = :decision, updated_at = :now",
                ConditionExpression=Attr("job_id").exists() & undecided,
                ExpressionAttributeValues={
                    ":decision": [to_item(decision)],
                    ":now": iso_utc(utc_now()),
                },
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def withdraw_decision(self, tenant_id: str, job_id: str) -> None:
        """Take back the decision :meth:`record_decision` wrote when SageMaker then refused it,
        so the tenant can decide again."""
        try:
            self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="REMOVE decisions SET updated_at = :now",
                ConditionExpression=Attr("decisions").size().eq(1),
                ExpressionAttributeValues={":now": iso_utc(utc_now())},
            )
        except ClientError as error:
            if not is_conditional_check_failure(error):
                raise

    def apply_status_event(
        self, tenant_id: str, job_id: str, status: ModelApprovalStatus, event_time: Any
    ) -> ModelVersion | None:
        """Apply a "Model Package State Change" event: the new approval status, if the event is
        newer than the last one applied. The updated record, or None (stale, duplicate, unknown).
        """
        at = iso_utc(event_time)
        try:
            response = self.table.update_item(
                Key={"tenant_id": tenant_id, "job_id": job_id},
                UpdateExpression="SET approval_status = :status, last_event_time = :at, "
                "updated_at = :now",
                ConditionExpression=Attr("job_id").exists()
                & (Attr("last_event_time").not_exists() | Attr("last_event_time").lt(at)),
                ExpressionAttributeValues={
                    ":status": status.value,
                    ":at": at,
                    ":now": iso_utc(utc_now()),
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return None
            raise
        return ModelVersion.model_validate(response["Attributes"])

    def list_page(
        self, tenant_id: str, *, limit: int = 50, token: str | None = None
    ) -> Page[ModelVersion]:
        """One page of the tenant's model versions, newest job first."""
        return _page(
            self.table,
            ModelVersion.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("job_id",),
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
            ScanIndexForward=False,
        )


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


REVISION = "revision"
"""A counter on every deployment item: each write expects the value it read, so two writers
(the deploy handler, the job-events handler, the portal) never overwrite each other's change."""
UNDEPLOYABLE_STATUSES = frozenset({DeploymentStatus.IN_SERVICE, DeploymentStatus.FAILED})
"""States from which the portal may ask for an undeploy."""


class _RevisionedTable(Generic[R]):
    """Whole-record puts conditional on the ``revision`` read, as :class:`DeploymentRepository`
    does: the writer computes the new record in Python and retries on a lost race."""

    model: type[R]
    sort_key: str

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def _get(self, tenant_id: str, key: str) -> tuple[R, int] | None:
        item = self.table.get_item(
            Key={"tenant_id": tenant_id, self.sort_key: key}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return self.model.model_validate(item), int(item.get(REVISION, 0))

    def _put(self, record: R, revision: int | None) -> bool:
        item = to_item(record)
        item[REVISION] = 0 if revision is None else revision + 1
        condition = (
            Attr(self.sort_key).not_exists() if revision is None else Attr(REVISION).eq(revision)
        )
        try:
            self.table.put_item(Item=item, ConditionExpression=condition)
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def get(self, tenant_id: str, key: str) -> R | None:
        """The record (strongly consistent read), or None."""
        found = self._get(tenant_id, key)
        return None if found is None else found[0]

    def put_if_absent(self, record: R) -> tuple[R, bool]:
        """Write ``record`` unless one with its key exists: (the stored record, whether this call
        wrote it)."""
        key = str(getattr(record, self.sort_key))
        tenant_id = str(record.tenant_id)  # type: ignore[attr-defined]
        if self._put(record, None):
            return record, True
        stored = self.get(tenant_id, key)
        if stored is None:  # deleted in between: nothing sensible to return but ours
            return record, False
        return stored, False

    def update(
        self, tenant_id: str, key: str, change: Callable[[R], R | None], *, attempts: int = 5
    ) -> R | None:
        """Read, let ``change`` compute the new record (None: leave it), write it if nobody wrote
        in between, else read again. The written record, or None (no record, or declined)."""
        for _ in range(attempts):
            found = self._get(tenant_id, key)
            if found is None:
                return None
            current, revision = found
            updated = change(current)
            if updated is None:
                return None
            updated = updated.model_copy(update={"updated_at": utc_now()})
            if self._put(updated, revision):
                return updated
        raise RuntimeError(
            f"{self.model.__name__} {tenant_id}/{key} changed {attempts} times while being updated"
        )


class DeploymentRepository(_RevisionedTable[Deployment]):
    """``DEPLOYMENTS_TABLE``: one item per deployment (see :class:`Deployment`).

    Every write is a whole-record put conditional on the ``revision`` it read: the deploy and
    job-events handlers compute the new record in Python (:meth:`update`) and retry on a lost
    race, instead of spreading the status machine over update expressions.
    """

    model = Deployment
    sort_key = "deployment_id"

    @classmethod
    def from_table_name(
        cls, name: str, session: boto3.Session | None = None
    ) -> DeploymentRepository:
        """A repository over the table called ``name``."""
        return cls(_table(name, session))

    def list_page(
        self, tenant_id: str, *, limit: int = 50, token: str | None = None
    ) -> Page[Deployment]:
        """One page of the tenant's deployments, by deployment id."""
        return _page(
            self.table,
            Deployment.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("deployment_id",),
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
        )

    def list_all(self, tenant_id: str) -> list[Deployment]:
        """Every deployment of the tenant (the endpoint quota counts them all)."""
        return [
            Deployment.model_validate(item)
            for page in _query_all(
                self.table, KeyConditionExpression=Key("tenant_id").eq(tenant_id)
            )
            for item in page.get("Items", [])
        ]

    def submit(self, request: DeploymentRequest) -> Deployment | None:
        """The portal's write before it sends ``request`` to the deployment-requests queue.

        Deploy: a new record, or one in a settled status (IN_SERVICE, FAILED, DELETED), becomes
        PENDING with the request's id, model and capacity; what serves now (``serving_*``,
        ``service_intervals``, alarms, schedule) stays. Undeploy: an IN_SERVICE or FAILED record
        becomes UNDEPLOYING. The stored record, or None when the deployment is busy (a request
        in flight), or there is nothing to undeploy. Monitor requests are the platform's own.
        """
        if request.action == DeploymentAction.MONITOR:
            raise ValueError("monitor requests are sent by the platform, not submitted")
        now = utc_now()
        found = self._get(request.tenant_id, request.deployment_id)
        if request.action == DeploymentAction.UNDEPLOY:
            if found is None or found[0].status not in UNDEPLOYABLE_STATUSES:
                return None
            current, revision = found
            record = current.model_copy(
                update={
                    "status": DeploymentStatus.UNDEPLOYING,
                    "request_id": request.request_id,
                    "updated_at": now,
                    "submitted_by": request.submitted_by,
                    "history": [
                        *current.history,
                        DeploymentChange(status=DeploymentStatus.UNDEPLOYING, at=now),
                    ],
                }
            )
            return record if self._put(record, revision) else None
        assert request.model_job_id is not None and request.kind is not None
        change = DeploymentChange(
            status=DeploymentStatus.PENDING, at=now, model_job_id=request.model_job_id
        )
        requested = {
            "status": DeploymentStatus.PENDING,
            "request_id": request.request_id,
            "model_job_id": request.model_job_id,
            "model_version": None,
            "model_package_arn": None,
            "kind": request.kind,
            "realtime": request.realtime,
            "serverless": request.serverless,
            "failure_reason": None,
            "updated_at": now,
            "submitted_by": request.submitted_by,
        }
        if found is None:
            record = Deployment(
                tenant_id=request.tenant_id,
                deployment_id=request.deployment_id,
                endpoint_name=endpoint_name(request.tenant_id, request.deployment_id),
                created_at=now,
                history=[change],
                **requested,
            )
            return record if self._put(record, None) else None
        current, revision = found
        if current.status not in SETTLED_DEPLOYMENT_STATUSES:
            return None
        record = current.model_copy(update={**requested, "history": [*current.history, change]})
        return record if self._put(record, revision) else None


class ApiClientRepository:
    """``API_CLIENTS_TABLE``: the tenant's OAuth app clients (see :class:`ApiClient`).

    Written by the portal's own role only; a tenant session only queries its partition."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    @classmethod
    def from_table_name(
        cls, name: str, session: boto3.Session | None = None
    ) -> ApiClientRepository:
        """A repository over the table called ``name``."""
        return cls(_table(name, session))

    def put(self, client: ApiClient) -> bool:
        """Record a new client; False when this client id is recorded already (anywhere: a
        Cognito client id is unique in the pool, so a second record would be a second owner)."""
        if self.tenant_of_client(client.client_id, unique=False) is not None:
            return False
        try:
            self.table.put_item(
                Item=to_item(client), ConditionExpression=Attr("client_id").not_exists()
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def get(self, tenant_id: str, client_id: str) -> ApiClient | None:
        """One client of the tenant, or None."""
        item = self.table.get_item(
            Key={"tenant_id": tenant_id, "client_id": client_id}, ConsistentRead=True
        ).get("Item")
        return None if item is None else ApiClient.model_validate(item)

    def list_page(
        self, tenant_id: str, *, limit: int = 50, token: str | None = None
    ) -> Page[ApiClient]:
        """One page of the tenant's clients."""
        return _page(
            self.table,
            ApiClient.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("client_id",),
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
        )

    def delete(self, tenant_id: str, client_id: str) -> bool:
        """Delete the tenant's client record; False when the tenant has no such client (the
        caller then must not delete the Cognito client either)."""
        try:
            self.table.delete_item(
                Key={"tenant_id": tenant_id, "client_id": client_id},
                ConditionExpression=Attr("client_id").exists(),
            )
        except ClientError as error:
            if is_conditional_check_failure(error):
                return False
            raise
        return True

    def tenant_of_client(self, client_id: str, *, unique: bool = True) -> str | None:
        """The tenant that owns ``client_id`` (index ``ByClientId``): exactly one record, else
        None (no record, or, with ``unique``, more than one: ambiguous ownership is no owner)."""
        response = self.table.query(
            IndexName=API_CLIENTS_BY_CLIENT_ID_INDEX,
            KeyConditionExpression=Key("client_id").eq(client_id),
            Limit=2,
        )
        items = response.get("Items", [])
        if not items or (unique and len(items) != 1):
            return None
        return str(items[0]["tenant_id"])


class RetrainingPolicyRepository(_RevisionedTable[RetrainingPolicy]):
    """``RETRAINING_POLICIES_TABLE``: one item per policy (see :class:`RetrainingPolicy`).

    The portal writes it with a tenant session (its own partition only, by IAM); the retraining,
    launch and job-events handlers update their fields through :meth:`update`.
    """

    model = RetrainingPolicy
    sort_key = "policy_id"

    @classmethod
    def from_table_name(
        cls, name: str, session: boto3.Session | None = None
    ) -> RetrainingPolicyRepository:
        return cls(_table(name, session))

    def list_page(
        self, tenant_id: str, *, limit: int = 50, token: str | None = None
    ) -> Page[RetrainingPolicy]:
        """One page of the tenant's policies, by policy id."""
        return _page(
            self.table,
            RetrainingPolicy.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("policy_id",),
            KeyConditionExpression=Key("tenant_id").eq(tenant_id),
        )


class RetrainingRunRepository(_RevisionedTable[RetrainingRun]):
    """``RETRAINING_RUNS_TABLE``: one item per policy and slot (see :class:`RetrainingRun`).

    Written by the launch handler (the run, once per slot: :meth:`put_if_absent`) and the
    job-events handler (the decision); read by tenant sessions.
    """

    model = RetrainingRun
    sort_key = "run_id"

    @classmethod
    def from_table_name(
        cls, name: str, session: boto3.Session | None = None
    ) -> RetrainingRunRepository:
        return cls(_table(name, session))

    def list_page(
        self,
        tenant_id: str,
        policy_id: str,
        *,
        limit: int = 50,
        token: str | None = None,
    ) -> Page[RetrainingRun]:
        """One page of a policy's runs, newest first."""
        return _page(
            self.table,
            RetrainingRun.model_validate,
            limit=limit,
            token=token,
            tenant_id=tenant_id,
            key_attributes=("run_id",),
            KeyConditionExpression=Key("tenant_id").eq(tenant_id)
            & Key("run_id").begins_with(f"{policy_id}{RUNS_BY_POLICY_SEPARATOR}"),
            ScanIndexForward=False,
        )
