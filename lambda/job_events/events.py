"""The SageMaker state-change events the handler applies, as they arrive in SQS message bodies.

The envelope is Powertools' ``EventBridgeModel``; each ``detail`` has the shape of the matching
``Describe*`` response, with epoch-millisecond (or ISO 8601) times and ``Tags`` as a map:

- "SageMaker Training Job State Change": ``DescribeTrainingJob`` (training jobs that a tuning job
  started carry ``TuningJobArn``);
- "SageMaker HyperParameter Tuning Job State Change": ``DescribeHyperParameterTuningJob`` without
  ``BestTrainingJob`` (the handler describes the tuning job for it);
- "SageMaker Model Package State Change": ``DescribeModelPackage`` (no tags);
- "SageMaker Endpoint State Change": ``DescribeEndpoint`` (``EndpointName``, ``EndpointArn``,
  ``EndpointConfigName``, ``EndpointStatus`` as ``InService`` or ``IN_SERVICE``,
  ``FailureReason``, ``LastModifiedTime``, ``Tags``);
- "SageMaker Processing Job State Change": ``DescribeProcessingJob`` (``ProcessingJobName``,
  ``ProcessingJobStatus``, ``ExitMessage``, ``FailureReason``, ``MonitoringScheduleArn`` for a
  monitoring execution);
- "CloudWatch Alarm State Change" (source ``aws.cloudwatch``): ``alarmName``, ``state``
  (``value``, ``reason``), ``previousState``; ``resources[0]`` is the alarm's ARN.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, field_validator
from training_common import TuningProgress

TRAINING_JOB_STATE_CHANGE = "SageMaker Training Job State Change"
TUNING_JOB_STATE_CHANGE = "SageMaker HyperParameter Tuning Job State Change"
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
PROCESSING_JOB_STATE_CHANGE = "SageMaker Processing Job State Change"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


class _Detail(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _TaggedDetail(_Detail):
    """A detail with the resource's ``Tags``."""

    tags: dict[str, str] = Field(default_factory=dict, alias="Tags")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_as_map(cls, value: Any) -> Any:
        """Accept ``{"k": "v"}`` (EventBridge) and ``[{"Key": k, "Value": v}]`` (API) forms."""
        if value is None:
            return {}
        if isinstance(value, list):
            return {
                str(item.get("Key")): str(item.get("Value"))
                for item in value
                if isinstance(item, dict) and "Key" in item
            }
        return value


class FinalMetricData(_Detail):
    """One item of ``FinalMetricDataList``."""

    metric_name: str = Field(alias="MetricName")
    value: float = Field(alias="Value")


class ModelArtifacts(_Detail):
    """``ModelArtifacts``."""

    s3_model_artifacts: str | None = Field(default=None, alias="S3ModelArtifacts")


class MetricDefinitionName(_Detail):
    """One item of ``AlgorithmSpecification.MetricDefinitions`` (only the name is used)."""

    name: str = Field(alias="Name", min_length=1)


class AlgorithmSpecification(_Detail):
    """``AlgorithmSpecification``: the image and the metrics SageMaker sends to CloudWatch."""

    training_image: str | None = Field(default=None, alias="TrainingImage")
    metric_definitions: list[MetricDefinitionName] = Field(
        default_factory=list, alias="MetricDefinitions"
    )


class TrainingJobStateDetail(_TaggedDetail):
    """The parts of a training job event's ``detail`` the platform uses."""

    training_job_name: str = Field(alias="TrainingJobName", min_length=1)
    training_job_arn: str | None = Field(default=None, alias="TrainingJobArn")
    training_job_status: str = Field(alias="TrainingJobStatus")
    secondary_status: str | None = Field(default=None, alias="SecondaryStatus")
    failure_reason: str | None = Field(default=None, alias="FailureReason")
    billable_time_in_seconds: int | None = Field(default=None, alias="BillableTimeInSeconds")
    final_metric_data_list: list[FinalMetricData] = Field(
        default_factory=list, alias="FinalMetricDataList"
    )
    model_artifacts: ModelArtifacts | None = Field(default=None, alias="ModelArtifacts")
    tuning_job_arn: str | None = Field(default=None, alias="TuningJobArn")
    """Set when a hyperparameter tuning job started this training job."""
    hyperparameters: dict[str, str] = Field(default_factory=dict, alias="HyperParameters")
    algorithm_specification: AlgorithmSpecification | None = Field(
        default=None, alias="AlgorithmSpecification"
    )
    creation_time: datetime | None = Field(default=None, alias="CreationTime")
    training_start_time: datetime | None = Field(default=None, alias="TrainingStartTime")
    last_modified_time: datetime | None = Field(default=None, alias="LastModifiedTime")

    @property
    def metric_names(self) -> list[str]:
        """The names of the job's metric definitions, in their order, without duplicates."""
        spec = self.algorithm_specification
        names = [] if spec is None else [item.name for item in spec.metric_definitions]
        return list(dict.fromkeys(names))


class TrainingJobStateChangeEvent(EventBridgeModel):
    """A training job's state change."""

    detail: TrainingJobStateDetail

    @property
    def event_time(self) -> datetime:
        """When the state changed: ``LastModifiedTime`` (ms precision), else the envelope time."""
        return self.detail.last_modified_time or self.time


class TrainingJobStatusCounters(_Detail):
    """``TrainingJobStatusCounters`` of a tuning job."""

    completed: int = Field(default=0, alias="Completed", ge=0)
    in_progress: int = Field(default=0, alias="InProgress", ge=0)
    retryable_error: int = Field(default=0, alias="RetryableError", ge=0)
    non_retryable_error: int = Field(default=0, alias="NonRetryableError", ge=0)
    stopped: int = Field(default=0, alias="Stopped", ge=0)


class ObjectiveStatusCounters(_Detail):
    """``ObjectiveStatusCounters`` of a tuning job."""

    succeeded: int = Field(default=0, alias="Succeeded", ge=0)
    pending: int = Field(default=0, alias="Pending", ge=0)
    failed: int = Field(default=0, alias="Failed", ge=0)


class TuningJobStateDetail(_TaggedDetail):
    """The parts of a tuning job event's ``detail`` the platform uses."""

    tuning_job_name: str = Field(alias="HyperParameterTuningJobName", min_length=1)
    tuning_job_arn: str | None = Field(default=None, alias="HyperParameterTuningJobArn")
    tuning_job_status: str = Field(alias="HyperParameterTuningJobStatus")
    failure_reason: str | None = Field(default=None, alias="FailureReason")
    training_job_status_counters: TrainingJobStatusCounters | None = Field(
        default=None, alias="TrainingJobStatusCounters"
    )
    objective_status_counters: ObjectiveStatusCounters | None = Field(
        default=None, alias="ObjectiveStatusCounters"
    )
    last_modified_time: datetime | None = Field(default=None, alias="LastModifiedTime")

    def progress(self) -> TuningProgress:
        """The counters as the job record keeps them."""
        jobs = self.training_job_status_counters or TrainingJobStatusCounters()
        objective = self.objective_status_counters or ObjectiveStatusCounters()
        return TuningProgress(
            completed=jobs.completed,
            in_progress=jobs.in_progress,
            retryable_error=jobs.retryable_error,
            non_retryable_error=jobs.non_retryable_error,
            stopped=jobs.stopped,
            objective_succeeded=objective.succeeded,
            objective_pending=objective.pending,
            objective_failed=objective.failed,
        )


class TuningJobStateChangeEvent(EventBridgeModel):
    """A hyperparameter tuning job's state change."""

    detail: TuningJobStateDetail

    @property
    def event_time(self) -> datetime:
        """When the state changed: ``LastModifiedTime``, else the envelope time."""
        return self.detail.last_modified_time or self.time


class ModelPackageStateDetail(_Detail):
    """The parts of a model package event's ``detail`` the platform uses."""

    model_package_group_name: str = Field(alias="ModelPackageGroupName", min_length=1)
    model_package_version: int | None = Field(default=None, alias="ModelPackageVersion")
    model_package_arn: str = Field(alias="ModelPackageArn", min_length=1)
    model_approval_status: str = Field(alias="ModelApprovalStatus")
    model_package_status: str | None = Field(default=None, alias="ModelPackageStatus")
    customer_metadata_properties: dict[str, str] = Field(
        default_factory=dict, alias="CustomerMetadataProperties"
    )
    creation_time: datetime | None = Field(default=None, alias="CreationTime")
    last_modified_time: datetime | None = Field(default=None, alias="LastModifiedTime")

    @field_validator("customer_metadata_properties", mode="before")
    @classmethod
    def _none_as_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class ModelPackageStateChangeEvent(EventBridgeModel):
    """A model package version's state change (created, approved, rejected, ...)."""

    detail: ModelPackageStateDetail

    @property
    def event_time(self) -> datetime:
        """``LastModifiedTime``, else the envelope time.

        Not ``CreationTime``: an approval without ``LastModifiedTime`` would then be exactly as
        old as the creation event, and dropped as stale."""
        return self.detail.last_modified_time or self.time


class EndpointStateDetail(_TaggedDetail):
    """The parts of an endpoint event's ``detail`` the platform uses."""

    endpoint_name: str = Field(alias="EndpointName", min_length=1)
    endpoint_arn: str | None = Field(default=None, alias="EndpointArn")
    endpoint_config_name: str | None = Field(default=None, alias="EndpointConfigName")
    endpoint_status: str = Field(alias="EndpointStatus", min_length=1)
    failure_reason: str | None = Field(default=None, alias="FailureReason")
    last_modified_time: datetime | None = Field(default=None, alias="LastModifiedTime")

    @property
    def status_key(self) -> str:
        """The status without case or underscores: ``InService`` and ``IN_SERVICE`` are one."""
        return self.endpoint_status.replace("_", "").lower()


class EndpointStateChangeEvent(EventBridgeModel):
    """An endpoint's state change."""

    detail: EndpointStateDetail

    @property
    def event_time(self) -> datetime:
        """``LastModifiedTime``, else the envelope time."""
        return self.detail.last_modified_time or self.time

    @property
    def endpoint_arn(self) -> str | None:
        return self.detail.endpoint_arn or (self.resources[0] if self.resources else None)


class ProcessingJobStateDetail(_TaggedDetail):
    """The parts of a processing job event's ``detail`` the platform uses."""

    processing_job_name: str = Field(alias="ProcessingJobName", min_length=1)
    processing_job_status: str = Field(alias="ProcessingJobStatus", min_length=1)
    exit_message: str | None = Field(default=None, alias="ExitMessage")
    failure_reason: str | None = Field(default=None, alias="FailureReason")
    monitoring_schedule_arn: str | None = Field(default=None, alias="MonitoringScheduleArn")
    processing_end_time: datetime | None = Field(default=None, alias="ProcessingEndTime")
    last_modified_time: datetime | None = Field(default=None, alias="LastModifiedTime")


class ProcessingJobStateChangeEvent(EventBridgeModel):
    """A processing job's state change: a baseline job, or a monitoring execution."""

    detail: ProcessingJobStateDetail

    @property
    def event_time(self) -> datetime:
        detail = self.detail
        return detail.processing_end_time or detail.last_modified_time or self.time


class AlarmState(_Detail):
    value: str = Field(min_length=1)
    reason: str | None = None


class AlarmStateDetail(_Detail):
    """The parts of an alarm event's ``detail`` the platform uses."""

    alarm_name: str = Field(alias="alarmName", min_length=1)
    state: AlarmState
    previous_state: AlarmState | None = Field(default=None, alias="previousState")


class AlarmStateChangeEvent(EventBridgeModel):
    """A CloudWatch alarm's state change (``resources[0]`` is the alarm's ARN)."""

    detail: AlarmStateDetail

    @property
    def alarm_arn(self) -> str | None:
        return self.resources[0] if self.resources else None


StateChangeEvent = (
    TrainingJobStateChangeEvent
    | TuningJobStateChangeEvent
    | ModelPackageStateChangeEvent
    | EndpointStateChangeEvent
    | ProcessingJobStateChangeEvent
    | AlarmStateChangeEvent
)

_MODELS: dict[str, type[EventBridgeModel]] = {
    TRAINING_JOB_STATE_CHANGE: TrainingJobStateChangeEvent,
    TUNING_JOB_STATE_CHANGE: TuningJobStateChangeEvent,
    MODEL_PACKAGE_STATE_CHANGE: ModelPackageStateChangeEvent,
    ENDPOINT_STATE_CHANGE: EndpointStateChangeEvent,
    PROCESSING_JOB_STATE_CHANGE: ProcessingJobStateChangeEvent,
    ALARM_STATE_CHANGE: AlarmStateChangeEvent,
}


class UnexpectedEventError(ValueError):
    """A readable EventBridge event of a kind this handler does not apply."""


def parse_event(body: str) -> StateChangeEvent:
    """The typed event of an SQS message body.

    Raises pydantic's ValidationError for a body that isn't a valid event of its kind, and
    UnexpectedEventError for a valid envelope of another detail-type.
    """
    envelope = EventBridgeModel.model_validate_json(body)
    model = _MODELS.get(envelope.detail_type)
    if model is None:
        raise UnexpectedEventError(f"unexpected detail-type {envelope.detail_type!r}")
    return cast(StateChangeEvent, model.model_validate_json(body))
