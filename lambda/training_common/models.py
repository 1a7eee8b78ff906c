"""Pydantic v2 models of the data contract (``/work/contract.md``).

Records round-trip through DynamoDB with :func:`to_item` / ``Model.model_validate(item)``; the
training request travels as JSON on the training-requests queue.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .ids import (
    ALGORITHM_ID_PATTERN,
    JOB_ID_PATTERN,
    TENANT_ID_PATTERN,
    UtcDatetime,
    utc_now,
)
from .status import JobStatus
from .tuning import (
    BestTrainingJob,
    TunableHyperparameter,
    TuningProgress,
    TuningSpec,
    tuning_job_name,
)

INSTANCE_TYPE_PATTERN = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
MAX_RUNTIME_LIMIT_SECONDS = 28 * 24 * 3600
"""SageMaker's own ceiling on ``MaxRuntimeInSeconds`` (28 days)."""


class _Record(BaseModel):
    """Base of stored records: unknown attributes are ignored so the schema can grow."""

    model_config = ConfigDict(extra="ignore", use_enum_values=False)


class TenantStatus(StrEnum):
    """Whether a tenant may launch jobs."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


class Tenant(_Record):
    """A tenant's record in ``TENANTS_TABLE``: identity and quota."""

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    display_name: str
    status: TenantStatus
    max_running_jobs: int = Field(ge=0)
    max_instance_count: int = Field(ge=1)
    allowed_instance_types: list[str] = Field(default_factory=list)
    allowed_algorithms: list[str] = Field(
        default_factory=list, description="Empty means the whole catalog."
    )
    max_runtime_seconds: int = Field(ge=1, le=MAX_RUNTIME_LIMIT_SECONDS)
    max_tuning_training_jobs: int = Field(default=50, ge=0, le=500)
    """The most training jobs one tuning job of the tenant may run in all (0: no tuning)."""
    notification_email: str | None = None
    max_endpoint_instances: int = Field(default=2, ge=0, le=100)
    """The most instances all of the tenant's real-time endpoints may run at once (0: none)."""
    allowed_endpoint_instance_types: list[str] = Field(
        default_factory=list, description="Empty means allowed_instance_types."
    )
    max_serverless_concurrency: int = Field(default=10, ge=0, le=200)
    """The most concurrency one serverless endpoint of the tenant may have (0: no serverless)."""
    require_vpc_inference: bool = False
    """Endpoints must run in the VPC: serverless inference (which can't) is refused."""
    created_at: UtcDatetime = Field(default_factory=utc_now)


class MetricDefinition(BaseModel):
    """A SageMaker metric definition (the catalog and SageMaker spell the keys Name, Regex)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    name: str = Field(alias="Name", min_length=1, max_length=255)
    regex: str = Field(alias="Regex", min_length=1, max_length=500)

    def to_sagemaker(self) -> dict[str, str]:
        """The ``AlgorithmSpecification.MetricDefinitions`` item."""
        return {"Name": self.name, "Regex": self.regex}


class CatalogEntry(BaseModel):
    """One algorithm of the catalog (``algorithms/<id>.json`` in ``CATALOG_BUCKET``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(pattern=ALGORITHM_ID_PATTERN)
    name: str
    description: str = ""
    image_uri: str = Field(min_length=1)
    default_hyperparameters: dict[str, str] = Field(default_factory=dict)
    metric_definitions: list[MetricDefinition] = Field(default_factory=list)
    supported_instance_types: list[str] = Field(
        default_factory=list, description="Empty means any instance type."
    )
    supports_spot: bool = False
    input_content_type: str = "application/octet-stream"
    tunable_hyperparameters: list[TunableHyperparameter] = Field(
        default_factory=list, description="Empty means the algorithm can't be tuned."
    )
    objective_metrics: list[str] = Field(
        default_factory=list,
        description="Metric names a tuning job may optimise (each one of metric_definitions); "
        "empty means any metric of metric_definitions.",
    )

    def tunable(self, name: str) -> TunableHyperparameter | None:
        """The tunable hyperparameter called ``name``, or None."""
        return next((item for item in self.tunable_hyperparameters if item.name == name), None)

    @property
    def tuning_objectives(self) -> list[str]:
        """The metrics a tuning job of this algorithm may optimise."""
        defined = [metric.name for metric in self.metric_definitions]
        return [name for name in self.objective_metrics if name in defined] or defined

    @property
    def can_tune(self) -> bool:
        """True when the catalog lists tunable hyperparameters and at least one metric."""
        return bool(self.tunable_hyperparameters and self.tuning_objectives)


class JobKind(StrEnum):
    """What a job record describes: one training job, or a tuning job and its training jobs."""

    TRAINING = "training"
    TUNING = "tuning"


class DatasetType(StrEnum):
    """How the training channel names its data (SageMaker's ``S3DataType``)."""

    S3_PREFIX = "S3Prefix"
    """``dataset_key`` is a prefix: every object below it."""
    MANIFEST_FILE = "ManifestFile"
    """``dataset_key`` is a manifest listing the objects (a retraining run's selection)."""


class RetrainingLink(BaseModel):
    """On a retraining run's request and job: the policy and run it belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_id: str = Field(min_length=1, max_length=32)
    run_id: str = Field(min_length=1, max_length=64)


class TrainingRequest(BaseModel):
    """The training-requests queue's message body (version 1).

    Schema rules only: whether the tenant may run it is :func:`validate_request`'s job.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    job_id: str = Field(pattern=JOB_ID_PATTERN, max_length=63)
    algorithm_id: str = Field(pattern=ALGORITHM_ID_PATTERN)
    dataset_key: str = Field(min_length=1, max_length=1024)
    hyperparameters: dict[str, str] = Field(default_factory=dict, max_length=100)
    instance_type: str = Field(pattern=INSTANCE_TYPE_PATTERN)
    instance_count: int = Field(ge=1, le=100)
    max_runtime_seconds: int = Field(ge=1, le=MAX_RUNTIME_LIMIT_SECONDS)
    use_spot: bool = False
    submitted_by: str = Field(min_length=1, max_length=256)
    submitted_at: UtcDatetime
    tuning: TuningSpec | None = None
    """Present for a hyperparameter tuning job; ``hyperparameters`` are then the static ones."""
    dataset_type: DatasetType = DatasetType.S3_PREFIX
    validation_key: str | None = Field(default=None, min_length=1, max_length=1024)
    """A held-out validation channel (``validation``), a prefix of the tenant's datasets."""
    retraining: RetrainingLink | None = None
    """Set when a retraining policy's schedule asked for the job (``launch.retraining``)."""

    @model_validator(mode="after")
    def _job_id_belongs_to_tenant(self) -> Self:
        if not self.job_id.startswith(f"{self.tenant_id}-"):
            raise ValueError("job_id must start with the tenant id")
        for key, value in self.hyperparameters.items():
            if not 0 < len(key) <= 256 or len(value) > 2500:
                raise ValueError(f"hyperparameter {key[:40]!r} is too long or empty")
        if self.tuning is not None:
            both = sorted(set(self.hyperparameters) & {r.name for r in self.tuning.ranges})
            if both:
                raise ValueError(
                    f"hyperparameters {', '.join(both)} are both static and tuned: keep one"
                )
        return self

    @property
    def kind(self) -> JobKind:
        """Training or tuning."""
        return JobKind.TRAINING if self.tuning is None else JobKind.TUNING

    @property
    def slots(self) -> int:
        """Running-jobs slots the job can occupy at once (a tuning job: its parallel jobs)."""
        return 1 if self.tuning is None else self.tuning.slots

    def to_message_body(self) -> str:
        """The JSON body to send to the training-requests queue."""
        return self.model_dump_json()


class StatusChange(BaseModel):
    """One entry of a job's ``status_history``."""

    model_config = ConfigDict(extra="ignore")

    status: JobStatus
    secondary_status: str | None = None
    at: UtcDatetime


class FinalMetric(BaseModel):
    """One entry of a job's ``final_metrics``."""

    name: str
    value: float


class MetricPoint(BaseModel):
    """One value of a training metric, as SageMaker reported it to CloudWatch."""

    at: UtcDatetime
    value: float


class MetricSeries(BaseModel):
    """A training metric over time (at most :data:`MAX_METRIC_POINTS` points, oldest first)."""

    name: str
    points: list[MetricPoint] = Field(default_factory=list)


MAX_METRIC_POINTS = 240
"""Points kept per metric on a job record."""

MAX_METRIC_SERIES_POINTS = 600
"""Points kept over all of a job's metrics (about 30 KB): a job record stays far below
DynamoDB's 400 KB item limit and a page of 50 jobs below a query's 1 MB, with up to the 40
metric definitions SageMaker allows."""


class Job(_Record):
    """A job's record in ``JOBS_TABLE`` (key: ``tenant_id``, ``job_id``).

    ``kind`` says whether it is one training job (SageMaker name = job id) or a tuning job
    (SageMaker name = ``tuning_job_name``, see :func:`training_common.tuning_job_name`).
    """

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    job_id: str
    algorithm_id: str
    dataset_key: str
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    instance_type: str
    instance_count: int
    max_runtime_seconds: int
    use_spot: bool = False
    created_at: UtcDatetime
    updated_at: UtcDatetime
    submitted_by: str
    status: JobStatus
    secondary_status: str | None = None
    failure_reason: str | None = None
    status_history: list[StatusChange] = Field(default_factory=list)
    training_job_arn: str | None = None
    billable_seconds: int | None = None
    final_metrics: list[FinalMetric] = Field(default_factory=list)
    model_artifact_key: str | None = None
    last_event_time: UtcDatetime | None = None
    launch_attempts: int = 0
    kind: JobKind = JobKind.TRAINING
    tuning: TuningSpec | None = None
    tuning_job_name: str | None = None
    tuning_job_arn: str | None = None
    tuning_progress: TuningProgress | None = None
    best_training_job: BestTrainingJob | None = None
    metric_series: list[MetricSeries] = Field(default_factory=list)
    """A training job's metrics over time (refreshed by the job-events handler)."""
    dataset_type: DatasetType = DatasetType.S3_PREFIX
    validation_key: str | None = None
    retraining: RetrainingLink | None = None

    @property
    def sagemaker_name(self) -> str:
        """The SageMaker resource's name: the job id, or the tuning job's name."""
        return self.tuning_job_name or self.job_id

    @property
    def slots(self) -> int:
        """Running-jobs slots the job can occupy at once (a tuning job: its parallel jobs)."""
        return 1 if self.tuning is None else self.tuning.slots

    @classmethod
    def from_request(cls, request: TrainingRequest) -> Job:
        """The QUEUED record the portal writes before it sends ``request`` to the queue."""
        now = utc_now()
        return cls(
            kind=request.kind,
            tuning=request.tuning,
            tuning_job_name=None if request.tuning is None else tuning_job_name(request.job_id),
            tenant_id=request.tenant_id,
            job_id=request.job_id,
            algorithm_id=request.algorithm_id,
            dataset_key=request.dataset_key,
            hyperparameters=dict(request.hyperparameters),
            instance_type=request.instance_type,
            instance_count=request.instance_count,
            max_runtime_seconds=request.max_runtime_seconds,
            use_spot=request.use_spot,
            dataset_type=request.dataset_type,
            validation_key=request.validation_key,
            retraining=request.retraining,
            created_at=request.submitted_at,
            updated_at=now,
            submitted_by=request.submitted_by,
            status=JobStatus.QUEUED,
            status_history=[StatusChange(status=JobStatus.QUEUED, at=now)],
        )


class JobStateUpdate(BaseModel):
    """What one SageMaker state-change event says about a job, ready to apply to its record."""

    model_config = ConfigDict(frozen=True)

    status: JobStatus
    event_time: UtcDatetime
    secondary_status: str | None = None
    failure_reason: str | None = None
    training_job_arn: str | None = None
    billable_seconds: int | None = None
    final_metrics: list[FinalMetric] = Field(default_factory=list)
    model_artifact_key: str | None = None
    tuning_job_arn: str | None = None
    tuning_progress: TuningProgress | None = None
    best_training_job: BestTrainingJob | None = None


class Notification(_Record):
    """A tenant notification in ``NOTIFICATIONS_TABLE`` (key: ``tenant_id``, ``notification_id``).

    ``published`` records that the SNS publish happened, so a redelivered event publishes a
    notification whose first publish was interrupted, and never publishes one twice otherwise.
    """

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    notification_id: str
    job_id: str
    status: JobStatus
    subject: str = Field(max_length=100)
    message: str
    created_at: UtcDatetime
    read: bool = False
    published: bool = False
    model_status: str | None = None
    """Set on a model registry notification: the version's new approval status."""
    deployment_id: str | None = None
    """Set on a deployment or endpoint-alarm notification (``job_id`` is then the model's job)."""
    policy_id: str | None = None
    """Set on a retraining notification (a run's decision)."""
    link: str | None = None
    """The portal path the notification points to, when not the job's or the model's page."""

    @staticmethod
    def make_id(created_at: str, job_id: str) -> str:
        """``f"{created_at}#{job_id}"``: a tenant's notifications sort by time."""
        return f"{created_at}#{job_id}"


def to_item(model: BaseModel) -> dict[str, Any]:
    """A model as a DynamoDB item for boto3's Table resource (floats to Decimal, no None)."""
    item: dict[str, Any] = to_dynamo_value(model.model_dump(mode="json", exclude_none=True))
    return item


def to_dynamo_value(value: Any) -> Any:
    """A JSON-like value with floats turned into Decimal, as boto3's Table resource needs."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: to_dynamo_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_dynamo_value(item) for item in value]
    return value


__all__ = [
    "INSTANCE_TYPE_PATTERN",
    "MAX_METRIC_POINTS",
    "MAX_METRIC_SERIES_POINTS",
    "MAX_RUNTIME_LIMIT_SECONDS",
    "CatalogEntry",
    "DatasetType",
    "FinalMetric",
    "Job",
    "JobKind",
    "JobStateUpdate",
    "MetricDefinition",
    "MetricPoint",
    "MetricSeries",
    "Notification",
    "RetrainingLink",
    "StatusChange",
    "Tenant",
    "TenantStatus",
    "TrainingRequest",
    "to_dynamo_value",
    "to_item",
]
