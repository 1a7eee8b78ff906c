"""The deploy handler's configuration, read once from its environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator
from training_common import SQS_MAX_VISIBILITY_TIMEOUT_SECONDS, settings_from_env


class DeploySettings(BaseModel):
    """Everything the deploy handler needs from its environment (names in ``from_env``)."""

    model_config = ConfigDict(frozen=True)

    deployments_table: str
    models_table: str
    tenants_table: str
    dead_letter_queue_url: str
    data_bucket: str
    data_key_arn: str
    endpoint_role_arn: str
    """The SageMaker execution role of the platform's models."""
    monitoring_role_arn: str
    """The role of baseline and monitoring processing jobs."""
    subnet_ids: tuple[str, ...] = Field(min_length=1)
    security_group_ids: tuple[str, ...] = Field(min_length=1)
    alarm_prefix: str = Field(min_length=1, max_length=64)
    model_latency_alarm_ms: int = Field(default=1000, ge=1)
    capture_sampling_percentage: int = Field(default=100, ge=1, le=100)
    monitoring_instance_type: str = Field(
        default="ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
    )
    monitoring_schedule: str = Field(default="cron(0 * ? * * *)", min_length=1)
    model_monitor_image_uri: str | None = None
    """Overrides the region table of ``deploy.images`` (a mirror, or a region it lacks)."""
    blue_green_bake_seconds: int = Field(default=600, ge=0, le=3600)
    region: str | None = None
    """The region for the image table; the session's region when unset (``AWS_REGION``)."""
    max_receive_count: int = Field(default=5, ge=1)
    backoff_base_seconds: int = Field(default=30, ge=0)
    backoff_max_seconds: int = Field(default=900, ge=0, le=SQS_MAX_VISIBILITY_TIMEOUT_SECONDS)
    requests_queue_url: str | None = None
    """For the back-off (``ChangeMessageVisibility``); without it the queue's timeout applies."""

    @field_validator("subnet_ids", "security_group_ids", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DeploySettings:
        """Read the settings; ValueError naming every missing or invalid variable."""
        names = {
            "deployments_table": "DEPLOYMENTS_TABLE",
            "models_table": "MODELS_TABLE",
            "tenants_table": "TENANTS_TABLE",
            "dead_letter_queue_url": "DEAD_LETTER_QUEUE_URL",
            "data_bucket": "DATA_BUCKET",
            "data_key_arn": "DATA_KEY_ARN",
            "endpoint_role_arn": "ENDPOINT_ROLE_ARN",
            "monitoring_role_arn": "MONITORING_ROLE_ARN",
            "subnet_ids": "ENDPOINT_SUBNET_IDS",
            "security_group_ids": "ENDPOINT_SECURITY_GROUP_IDS",
            "alarm_prefix": "ALARM_PREFIX",
            "model_latency_alarm_ms": "MODEL_LATENCY_ALARM_MS",
            "capture_sampling_percentage": "CAPTURE_SAMPLING_PERCENTAGE",
            "monitoring_instance_type": "MONITORING_INSTANCE_TYPE",
            "monitoring_schedule": "MONITORING_SCHEDULE",
            "model_monitor_image_uri": "MODEL_MONITOR_IMAGE_URI",
            "blue_green_bake_seconds": "BLUE_GREEN_BAKE_SECONDS",
            "region": "AWS_REGION",
            "max_receive_count": "MAX_RECEIVE_COUNT",
            "backoff_base_seconds": "RETRY_BACKOFF_BASE_SECONDS",
            "backoff_max_seconds": "RETRY_BACKOFF_MAX_SECONDS",
            "requests_queue_url": "DEPLOYMENT_REQUESTS_QUEUE_URL",
        }
        return settings_from_env(cls, names, environ)
