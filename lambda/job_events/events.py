"""The SageMaker "Training Job State Change" event, as it arrives in an SQS message body.

The envelope is Powertools' ``EventBridgeModel``; ``detail`` has the shape of a
``DescribeTrainingJob`` response, with epoch-millisecond times and ``Tags`` as a map.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, field_validator

TRAINING_JOB_STATE_CHANGE = "SageMaker Training Job State Change"


class FinalMetricData(BaseModel):
    """One item of ``FinalMetricDataList``."""

    model_config = ConfigDict(extra="ignore")

    metric_name: str = Field(alias="MetricName")
    value: float = Field(alias="Value")


class ModelArtifacts(BaseModel):
    """``ModelArtifacts``."""

    model_config = ConfigDict(extra="ignore")

    s3_model_artifacts: str | None = Field(default=None, alias="S3ModelArtifacts")


class TrainingJobStateDetail(BaseModel):
    """The parts of the event's ``detail`` the platform uses."""

    model_config = ConfigDict(extra="ignore")

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
    last_modified_time: datetime | None = Field(default=None, alias="LastModifiedTime")
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


class TrainingJobStateChangeEvent(EventBridgeModel):
    """The EventBridge envelope with a typed ``detail``."""

    detail: TrainingJobStateDetail

    @property
    def event_time(self) -> datetime:
        """When the state changed: ``LastModifiedTime`` (ms precision), else the envelope time."""
        return self.detail.last_modified_time or self.time
