"""The launch handler's configuration, read once from its environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator
from training_common import (
    MAX_TRIGGER_AGE_HOURS,
    SQS_MAX_DELAY_SECONDS,
    SQS_MAX_VISIBILITY_TIMEOUT_SECONDS,
    settings_from_env,
)


class LaunchSettings(BaseModel):
    """Everything the launch handler needs from its environment (names in ``from_env``)."""

    model_config = ConfigDict(frozen=True)

    tenants_table: str
    jobs_table: str
    catalog_bucket: str
    data_bucket: str
    artifacts_bucket: str
    requests_queue_url: str
    requests_dlq_url: str
    sagemaker_role_arn: str
    subnet_ids: tuple[str, ...] = Field(min_length=1)
    security_group_ids: tuple[str, ...] = Field(min_length=1)
    kms_key_arn: str
    max_receive_count: int = Field(default=5, ge=1)
    max_deferrals: int = Field(default=96, ge=0)
    defer_base_seconds: int = Field(default=60, ge=0, le=SQS_MAX_DELAY_SECONDS)
    defer_max_seconds: int = Field(default=SQS_MAX_DELAY_SECONDS, ge=0, le=SQS_MAX_DELAY_SECONDS)
    backoff_base_seconds: int = Field(default=30, ge=0)
    backoff_max_seconds: int = Field(default=900, ge=0, le=SQS_MAX_VISIBILITY_TIMEOUT_SECONDS)
    volume_size_gb: int = Field(default=50, ge=1, le=16384)
    spot_wait_factor: float = Field(default=2.0, ge=1.0)
    catalog_cache_seconds: float = Field(default=60.0, ge=0)
    retraining_policies_table: str | None = None
    """With the three below: the tables a retraining trigger needs (unset: triggers are
    dead-lettered as "retraining is not configured")."""
    retraining_runs_table: str | None = None
    models_table: str | None = None
    deployments_table: str | None = None
    data_key_arn: str | None = None
    """The data bucket's KMS key, for the runs' manifests (default: ``kms_key_arn``)."""
    max_trigger_age_hours: int = Field(default=MAX_TRIGGER_AGE_HOURS, ge=1)

    @property
    def retraining_enabled(self) -> bool:
        """True when every table a retraining trigger needs is configured."""
        return bool(
            self.retraining_policies_table
            and self.retraining_runs_table
            and self.models_table
            and self.deployments_table
        )

    @property
    def manifest_key_arn(self) -> str:
        """The KMS key the runs' manifests are written with (SSE-KMS)."""
        return self.data_key_arn or self.kms_key_arn

    @field_validator("subnet_ids", "security_group_ids", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LaunchSettings:
        """Read the settings; ValueError naming every missing or invalid variable."""
        names = {
            "tenants_table": "TENANTS_TABLE",
            "jobs_table": "JOBS_TABLE",
            "catalog_bucket": "CATALOG_BUCKET",
            "data_bucket": "DATA_BUCKET",
            "artifacts_bucket": "ARTIFACTS_BUCKET",
            "requests_queue_url": "TRAINING_REQUESTS_QUEUE_URL",
            "requests_dlq_url": "TRAINING_REQUESTS_DLQ_URL",
            "sagemaker_role_arn": "SAGEMAKER_ROLE_ARN",
            "subnet_ids": "TRAINING_SUBNET_IDS",
            "security_group_ids": "TRAINING_SECURITY_GROUP_IDS",
            "kms_key_arn": "TRAINING_KMS_KEY_ARN",
            "max_receive_count": "MAX_RECEIVE_COUNT",
            "max_deferrals": "MAX_QUOTA_DEFERRALS",
            "defer_base_seconds": "QUOTA_DEFER_BASE_SECONDS",
            "defer_max_seconds": "QUOTA_DEFER_MAX_SECONDS",
            "backoff_base_seconds": "RETRY_BACKOFF_BASE_SECONDS",
            "backoff_max_seconds": "RETRY_BACKOFF_MAX_SECONDS",
            "volume_size_gb": "TRAINING_VOLUME_SIZE_GB",
            "spot_wait_factor": "SPOT_MAX_WAIT_FACTOR",
            "catalog_cache_seconds": "CATALOG_CACHE_SECONDS",
            "retraining_policies_table": "RETRAINING_POLICIES_TABLE",
            "retraining_runs_table": "RETRAINING_RUNS_TABLE",
            "models_table": "MODELS_TABLE",
            "deployments_table": "DEPLOYMENTS_TABLE",
            "data_key_arn": "DATA_KEY_ARN",
            "max_trigger_age_hours": "MAX_TRIGGER_AGE_HOURS",
        }
        return settings_from_env(cls, names, environ)
