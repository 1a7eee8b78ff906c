"""The retraining handler's configuration, read once from its environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field
from training_common import SQS_MAX_VISIBILITY_TIMEOUT_SECONDS, settings_from_env


class RetrainingSettings(BaseModel):
    """Everything the retraining handler needs from its environment (names in ``from_env``)."""

    model_config = ConfigDict(frozen=True)

    retraining_policies_table: str
    dead_letter_queue_url: str
    """The retraining-requests queue's dead-letter queue (unreadable requests)."""
    schedule_group: str = Field(min_length=1, max_length=64)
    """The environment's schedule group; every policy's schedule lives in it."""
    scheduler_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    """The role EventBridge Scheduler assumes to send the trigger (passed, never assumed here)."""
    training_requests_queue_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sqs:.+$")
    """The schedules' target: the training-requests queue."""
    scheduler_dlq_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sqs:.+$")
    """Where Scheduler puts a trigger it could not deliver."""
    max_receive_count: int = Field(default=5, ge=1)
    backoff_base_seconds: int = Field(default=30, ge=0)
    backoff_max_seconds: int = Field(default=900, ge=0, le=SQS_MAX_VISIBILITY_TIMEOUT_SECONDS)
    requests_queue_url: str | None = None
    """For the back-off (``ChangeMessageVisibility``); without it the queue's timeout applies."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RetrainingSettings:
        """Read the settings; ValueError naming every missing or invalid variable."""
        names = {
            "retraining_policies_table": "RETRAINING_POLICIES_TABLE",
            "dead_letter_queue_url": "DEAD_LETTER_QUEUE_URL",
            "schedule_group": "SCHEDULE_GROUP",
            "scheduler_role_arn": "SCHEDULER_ROLE_ARN",
            "training_requests_queue_arn": "TRAINING_REQUESTS_QUEUE_ARN",
            "scheduler_dlq_arn": "SCHEDULER_DLQ_ARN",
            "max_receive_count": "MAX_RECEIVE_COUNT",
            "backoff_base_seconds": "RETRY_BACKOFF_BASE_SECONDS",
            "backoff_max_seconds": "RETRY_BACKOFF_MAX_SECONDS",
            "requests_queue_url": "RETRAINING_REQUESTS_QUEUE_URL",
        }
        return settings_from_env(cls, names, environ)
