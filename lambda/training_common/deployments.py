"""Deployments: an approved model version served by a tenant endpoint, and the API clients that
call it.

A tenant names a deployment (``thermostat``); its SageMaker endpoint is
``<tenant>-<deployment>`` (:func:`endpoint_name`) and keeps that name while new model versions
replace the old in place, so devices call a fixed URL. Everything per deployment (model,
endpoint configuration, endpoint, data-quality baseline, monitoring schedule, alarms) is created
at run time by the deploy and job-events handlers, tagged ``tenant`` and ``deployment``, never by
a template.

- ``DEPLOYMENT_REQUESTS_QUEUE``: :class:`DeploymentRequest` (deploy, undeploy), sent by the
  portal after it wrote the :class:`Deployment` record, consumed by the deploy handler.
- ``DEPLOYMENTS_TABLE``: :class:`Deployment` (key ``tenant_id`` + ``deployment_id``).
- ``API_CLIENTS_TABLE``: :class:`ApiClient` (key ``tenant_id`` + ``client_id``, index
  ``ByClientId`` on ``client_id``): the Cognito app clients (OAuth 2.0 client credentials) a
  tenant's devices and back ends use to call the inference API. Written by the portal's own role
  (a tenant session could otherwise claim another tenant's client id); read by tenant sessions
  (the portal's list) and by the inference function (client id to tenant).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .ids import TENANT_ID_PATTERN, UtcDatetime, is_tenant_id
from .keys import tenant_prefix

DEPLOYMENT_ID_PATTERN = r"^[a-z][a-z0-9]{2,31}$"
"""3 to 32 lower-case letters and digits, no hyphen: the endpoint name ``<tenant>-<deployment>``
(at most 57 characters) then belongs to exactly one tenant and deployment, although tenant ids
may hold hyphens (``acme`` + ``foo-bar`` and ``acme-foo`` + ``bar`` would otherwise collide)."""
_DEPLOYMENT_ID_RE = re.compile(DEPLOYMENT_ID_PATTERN)
API_CLIENTS_BY_CLIENT_ID_INDEX = "ByClientId"
INFERENCE_SCOPE = "inference/invoke"
"""The OAuth scope of the inference API's resource server (identifier ``inference``)."""
INFERENCE_RESOURCE_SERVER = "inference"
VARIANT_NAME = "AllTraffic"
"""The one production variant of every platform endpoint."""
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)
"""What SageMaker Serverless Inference allows for ``MemorySizeInMB``."""
MAX_SERVERLESS_CONCURRENCY = 200
MAX_ENDPOINT_INSTANCE_COUNT = 20
DEPLOYMENT_TAG = "deployment"
"""Every per-deployment SageMaker and CloudWatch resource carries ``tenant`` and this tag."""


class EndpointKind(StrEnum):
    """Real-time (instances in the VPC, data capture, Model Monitor) or serverless."""

    REALTIME = "realtime"
    SERVERLESS = "serverless"


class DeploymentAction(StrEnum):
    DEPLOY = "deploy"
    """Create the endpoint, or update it in place (blue/green) to another model version."""
    UNDEPLOY = "undeploy"
    """Delete the endpoint, its monitoring schedule and alarms; keep the record and history."""
    MONITOR = "monitor"
    """Internal: the job-events handler's word that the deployment's baseline job completed.
    The deploy handler checks that itself (``DescribeProcessingJob`` of the record's baseline)
    before it creates the data-quality job definition and the monitoring schedule, so a forged
    one makes the platform do nothing it would not do anyway."""


class DeploymentStatus(StrEnum):
    """A deployment's state in ``DEPLOYMENTS_TABLE``.

    PENDING (record written, request queued) -> CREATING or UPDATING (SageMaker working) ->
    IN_SERVICE; a failed creation ends FAILED, a failed or rolled-back update returns to
    IN_SERVICE on the previous version with ``failure_reason`` saying why;
    UNDEPLOYING -> DELETED. DELETED and FAILED accept a new deploy request.
    """

    PENDING = "PENDING"
    CREATING = "CREATING"
    UPDATING = "UPDATING"
    IN_SERVICE = "IN_SERVICE"
    FAILED = "FAILED"
    UNDEPLOYING = "UNDEPLOYING"
    DELETED = "DELETED"


SETTLED_DEPLOYMENT_STATUSES: frozenset[DeploymentStatus] = frozenset(
    {DeploymentStatus.IN_SERVICE, DeploymentStatus.FAILED, DeploymentStatus.DELETED}
)
"""States in which the portal accepts a new request for the deployment."""


class RealtimeCapacity(BaseModel):
    """Instances of a real-time endpoint (within the tenant's endpoint quota)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_type: str = Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(ge=1, le=MAX_ENDPOINT_INSTANCE_COUNT)


class ServerlessCapacity(BaseModel):
    """Memory and concurrency of a serverless endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int
    max_concurrency: int = Field(ge=1, le=MAX_SERVERLESS_CONCURRENCY)

    @model_validator(mode="after")
    def _memory(self) -> Self:
        if self.memory_mb not in SERVERLESS_MEMORY_SIZES:
            allowed = ", ".join(str(size) for size in SERVERLESS_MEMORY_SIZES)
            raise ValueError(f"memory_mb must be one of {allowed}")
        return self


class DeploymentRequest(BaseModel):
    """The deployment-requests queue's message body (version 1).

    ``request_id`` is minted by the portal for each request and recorded on the deployment; the
    deploy handler names the model and endpoint configuration after it, so a redelivered request
    creates nothing twice, and ignores a request that is not the record's latest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    action: DeploymentAction
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    deployment_id: str = Field(pattern=DEPLOYMENT_ID_PATTERN)
    request_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    model_job_id: str | None = None
    """Deploy: the job whose registered model version to serve (``MODELS_TABLE`` key)."""
    kind: EndpointKind | None = None
    realtime: RealtimeCapacity | None = None
    serverless: ServerlessCapacity | None = None
    submitted_by: str = Field(min_length=1, max_length=256)
    submitted_at: UtcDatetime

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.action == DeploymentAction.DEPLOY:
            if self.model_job_id is None or self.kind is None:
                raise ValueError("a deploy request names model_job_id and kind")
            if self.kind == EndpointKind.REALTIME and (
                self.realtime is None or self.serverless is not None
            ):
                raise ValueError("a real-time deployment has realtime capacity only")
            if self.kind == EndpointKind.SERVERLESS and (
                self.serverless is None or self.realtime is not None
            ):
                raise ValueError("a serverless deployment has serverless capacity only")
        elif any(
            v is not None for v in (self.model_job_id, self.kind, self.realtime, self.serverless)
        ):
            raise ValueError("an undeploy request names only the deployment")
        return self

    def to_message_body(self) -> str:
        return self.model_dump_json(exclude_none=True)


class DeploymentChange(BaseModel):
    """One entry of a deployment's ``history``."""

    model_config = ConfigDict(extra="ignore")

    status: DeploymentStatus
    at: UtcDatetime
    model_job_id: str | None = None
    model_version: int | None = None
    reason: str | None = None


class ServiceInterval(BaseModel):
    """A period the endpoint ran on given capacity: what the cost view multiplies by price."""

    model_config = ConfigDict(extra="ignore")

    kind: EndpointKind
    instance_type: str | None = None
    instance_count: int = 0
    memory_mb: int | None = None
    start: UtcDatetime
    end: UtcDatetime | None = None
    """None while the interval is open (the endpoint still runs on this capacity)."""


class Deployment(BaseModel):
    """A tenant's deployment in ``DEPLOYMENTS_TABLE``."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    deployment_id: str = Field(pattern=DEPLOYMENT_ID_PATTERN)
    endpoint_name: str
    status: DeploymentStatus
    kind: EndpointKind
    realtime: RealtimeCapacity | None = None
    serverless: ServerlessCapacity | None = None
    request_id: str
    """The latest request; the deploy handler acts only on it."""
    model_job_id: str
    """The model version requested (being deployed, or in service)."""
    model_version: int | None = None
    model_package_arn: str | None = None
    serving_model_job_id: str | None = None
    """The version actually in service (differs from ``model_job_id`` during an update)."""
    serving_model_version: int | None = None
    model_name: str | None = None
    endpoint_config_name: str | None = None
    failure_reason: str | None = None
    history: list[DeploymentChange] = Field(default_factory=list)
    service_intervals: list[ServiceInterval] = Field(default_factory=list)
    capture_prefix: str | None = None
    """``tenants/<tenant>/monitoring/<endpoint>/capture/`` in the data bucket (real-time)."""
    baseline_job_name: str | None = None
    monitoring_schedule_name: str | None = None
    alarm_names: list[str] = Field(default_factory=list)
    created_at: UtcDatetime
    updated_at: UtcDatetime
    submitted_by: str
    last_event_time: UtcDatetime | None = None
    """Time of the newest SageMaker endpoint event applied."""


class ApiClient(BaseModel):
    """An OAuth 2.0 client-credentials app client of the user pool, owned by one tenant."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    client_id: str = Field(pattern=r"^[0-9a-z]{1,128}$")
    name: str = Field(min_length=1, max_length=64)
    created_by: str
    created_at: UtcDatetime


def is_deployment_id(value: str) -> bool:
    return bool(_DEPLOYMENT_ID_RE.fullmatch(value))


def endpoint_name(tenant_id: str, deployment_id: str) -> str:
    """``<tenant>-<deployment>``: the endpoint's name for its whole life (at most 57 characters).

    Injective (a deployment id holds no hyphen), but the handlers still take an endpoint's
    tenant from its tags, never from its name.
    """
    if not is_tenant_id(tenant_id):
        raise ValueError(f"invalid tenant id {tenant_id!r}: expected {TENANT_ID_PATTERN}")
    if not is_deployment_id(deployment_id):
        raise ValueError(
            f"invalid deployment id {deployment_id!r}: expected {DEPLOYMENT_ID_PATTERN}"
        )
    return f"{tenant_id}-{deployment_id}"


def resource_name(kind: Literal["m", "c", "b", "q", "s"], tenant_id: str, *parts: str) -> str:
    """A deterministic SageMaker name ``<tenant>-<kind><20 hex>`` for a model (``m``), endpoint
    configuration (``c``), baseline job (``b``), data-quality job definition (``q``) or
    monitoring schedule (``s``), from what identifies it (deployment id, request id): the same on
    every redelivery, at most 46 characters. The tenant is everything before the last hyphen."""
    digest = hashlib.sha256("\0".join((tenant_id, *parts)).encode()).hexdigest()[:20]
    return f"{tenant_id}-{kind}{digest}"


def tenant_of_resource_name(name: str) -> str | None:
    """The tenant of a :func:`resource_name`, or None for a name that isn't one."""
    tenant, _, tail = name.rpartition("-")
    if not is_tenant_id(tenant) or not re.fullmatch(r"[mcbqs][0-9a-f]{20}", tail):
        return None
    return tenant


def monitoring_prefix(tenant_id: str, endpoint: str) -> str:
    """``tenants/<tenant>/monitoring/<endpoint>/`` in the data bucket: capture, baseline,
    monitoring reports."""
    return f"{tenant_prefix(tenant_id)}monitoring/{endpoint}/"


def capture_prefix(tenant_id: str, endpoint: str) -> str:
    return f"{monitoring_prefix(tenant_id, endpoint)}capture/"


def baseline_prefix(tenant_id: str, endpoint: str) -> str:
    return f"{monitoring_prefix(tenant_id, endpoint)}baseline/"


def reports_prefix(tenant_id: str, endpoint: str) -> str:
    return f"{monitoring_prefix(tenant_id, endpoint)}reports/"


class AlarmKind(StrEnum):
    """The alarms the deploy handler creates for each endpoint."""

    INVOCATION_5XX = "invocation-5xx"
    """SageMaker ``Invocation5XXErrors`` (also a blue/green rollback alarm)."""
    MODEL_LATENCY = "model-latency"
    """SageMaker ``ModelLatency`` p99 over the configured threshold (also a rollback alarm)."""
    INVOCATION_ERRORS = "invocation-errors"
    """The inference API's ``ServerErrors`` for the endpoint (``TrainingPlatform/Inference``)."""
    DATA_QUALITY = "data-quality"
    """``TrainingPlatform/Monitoring`` ``Violations``: a monitoring run found drift."""


ROLLBACK_ALARMS = (AlarmKind.INVOCATION_5XX, AlarmKind.MODEL_LATENCY)


def alarm_name(alarm_prefix: str, endpoint: str, kind: AlarmKind) -> str:
    """``<prefix>-<endpoint>-<kind>``; ``alarm_prefix`` is the environment's (``ALARM_PREFIX``),
    which IAM grants and the EventBridge rules match on."""
    return f"{alarm_prefix}-{endpoint}-{kind.value}"


def new_request_id() -> str:
    """A fresh :attr:`DeploymentRequest.request_id` (32 hex digits)."""
    return uuid.uuid4().hex


def open_interval(
    intervals: Iterable[ServiceInterval],
    *,
    kind: EndpointKind,
    realtime: RealtimeCapacity | None,
    serverless: ServerlessCapacity | None,
    start: datetime,
) -> list[ServiceInterval]:
    """``intervals`` with every open one closed at ``start`` and a new one opened on the given
    capacity: the endpoint now runs on it (what the cost view multiplies by price)."""
    closed = close_intervals(intervals, start)
    closed.append(
        ServiceInterval(
            kind=kind,
            instance_type=realtime.instance_type if realtime else None,
            instance_count=realtime.instance_count if realtime else 0,
            memory_mb=serverless.memory_mb if serverless else None,
            start=start,
        )
    )
    return closed


def close_intervals(intervals: Iterable[ServiceInterval], end: datetime) -> list[ServiceInterval]:
    """``intervals`` with the open ones ended at ``end`` (never before their own start)."""
    return [
        item if item.end is not None else item.model_copy(update={"end": max(end, item.start)})
        for item in intervals
    ]


def open_service_interval(intervals: Iterable[ServiceInterval]) -> ServiceInterval | None:
    """The interval the endpoint runs on now, or None."""
    return next((item for item in reversed(list(intervals)) if item.end is None), None)


def capacity_of_endpoint_config(
    described: Mapping[str, Any],
) -> tuple[EndpointKind, RealtimeCapacity | None, ServerlessCapacity | None, str | None]:
    """Kind, capacity and model name of a ``DescribeEndpointConfig`` response's variant: what
    an endpoint runs on, read from SageMaker rather than from a record that may say what was
    requested instead."""
    variant = (described.get("ProductionVariants") or [{}])[0]
    model = variant.get("ModelName")
    serverless = variant.get("ServerlessConfig")
    if serverless:
        return (
            EndpointKind.SERVERLESS,
            None,
            ServerlessCapacity(
                memory_mb=int(serverless["MemorySizeInMB"]),
                max_concurrency=int(serverless["MaxConcurrency"]),
            ),
            model,
        )
    return (
        EndpointKind.REALTIME,
        RealtimeCapacity(
            instance_type=str(variant["InstanceType"]),
            instance_count=int(variant.get("InitialInstanceCount", 1)),
        ),
        None,
        model,
    )


def back_to_serving(
    record: Deployment,
    *,
    reason: str,
    at: datetime,
    endpoint_config: Mapping[str, Any] | None,
) -> Deployment:
    """``record`` after a refused, failed or rolled-back change: IN_SERVICE on the version that
    serves (``serving_*``, the capacity of ``endpoint_config``, the endpoint's current
    configuration) with ``reason``; FAILED with ``reason`` when nothing served before."""
    if record.serving_model_job_id is None or endpoint_config is None:
        return record.model_copy(
            update={
                "status": DeploymentStatus.FAILED,
                "failure_reason": reason,
                "service_intervals": close_intervals(record.service_intervals, at),
                "history": [
                    *record.history,
                    DeploymentChange(
                        status=DeploymentStatus.FAILED,
                        at=at,
                        model_job_id=record.model_job_id,
                        model_version=record.model_version,
                        reason=reason,
                    ),
                ],
            }
        )
    kind, realtime, serverless, model_name = capacity_of_endpoint_config(endpoint_config)
    return record.model_copy(
        update={
            "status": DeploymentStatus.IN_SERVICE,
            "failure_reason": reason,
            "model_job_id": record.serving_model_job_id,
            "model_version": record.serving_model_version,
            "kind": kind,
            "realtime": realtime,
            "serverless": serverless,
            "model_name": model_name or record.model_name,
            "endpoint_config_name": endpoint_config.get(
                "EndpointConfigName", record.endpoint_config_name
            ),
            "history": [
                *record.history,
                DeploymentChange(
                    status=DeploymentStatus.IN_SERVICE,
                    at=at,
                    model_job_id=record.serving_model_job_id,
                    model_version=record.serving_model_version,
                    reason=reason,
                ),
            ],
        }
    )


INFERENCE_METRICS_NAMESPACE = "TrainingPlatform/Inference"
"""Per tenant and endpoint: ``Invocations``, ``ClientErrors``, ``ServerErrors`` (counts) and
``Latency`` (milliseconds, the whole API call); dimensions ``tenant`` and ``endpoint``."""
MONITORING_METRICS_NAMESPACE = "TrainingPlatform/Monitoring"
"""``Violations`` per monitoring run (dimensions ``tenant`` and ``endpoint``), from the
job-events handler."""


__all__ = [
    "API_CLIENTS_BY_CLIENT_ID_INDEX",
    "DEPLOYMENT_ID_PATTERN",
    "DEPLOYMENT_TAG",
    "INFERENCE_METRICS_NAMESPACE",
    "INFERENCE_RESOURCE_SERVER",
    "INFERENCE_SCOPE",
    "MAX_ENDPOINT_INSTANCE_COUNT",
    "MAX_SERVERLESS_CONCURRENCY",
    "MONITORING_METRICS_NAMESPACE",
    "ROLLBACK_ALARMS",
    "SERVERLESS_MEMORY_SIZES",
    "SETTLED_DEPLOYMENT_STATUSES",
    "VARIANT_NAME",
    "AlarmKind",
    "ApiClient",
    "Deployment",
    "DeploymentAction",
    "DeploymentChange",
    "DeploymentRequest",
    "DeploymentStatus",
    "EndpointKind",
    "RealtimeCapacity",
    "ServerlessCapacity",
    "ServiceInterval",
    "alarm_name",
    "back_to_serving",
    "baseline_prefix",
    "capacity_of_endpoint_config",
    "capture_prefix",
    "close_intervals",
    "endpoint_name",
    "is_deployment_id",
    "monitoring_prefix",
    "new_request_id",
    "open_interval",
    "open_service_interval",
    "reports_prefix",
    "resource_name",
    "tenant_of_resource_name",
]
