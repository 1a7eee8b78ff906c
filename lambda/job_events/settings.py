"""The job-events handler's configuration, read once from its environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field
from training_common import settings_from_env


class JobEventsSettings(BaseModel):
    """Everything the job-events handler needs from its environment (names in ``from_env``)."""

    model_config = ConfigDict(frozen=True)

    jobs_table: str
    notifications_table: str
    trials_table: str
    models_table: str
    artifacts_bucket: str
    notifications_topic_arn: str
    events_dlq_url: str
    portal_job_url_template: str | None = None
    """E.g. ``https://portal.example.com/jobs/{job_id}``; without it the text names the job."""
    catalog_bucket: str | None = None
    """The algorithm catalog, for a model package's content types (text/csv without it)."""
    catalog_cache_seconds: float = Field(default=60.0, ge=0)
    deployments_table: str | None = None
    """Without it, endpoint, processing job and alarm events go to the dead-letter queue."""
    deployment_requests_queue_url: str | None = None
    """Where a completed baseline job's ``monitor`` request goes."""
    alarm_prefix: str | None = None
    """Alarms named ``<ALARM_PREFIX>-*`` are the platform's endpoint alarms."""
    retraining_policies_table: str | None = None
    retraining_runs_table: str | None = None
    """With both retraining tables, a retraining run's registered model is compared with the
    deployed one and promoted or rejected (``job_events.retraining``); without, retraining is
    off and a run's job is an ordinary job."""
    job_events_queue_url: str | None = None
    """The job-events queue: a promoted run whose deployment is busy leaves its event there with
    back-off (``ChangeMessageVisibility``); without it the queue's visibility timeout applies."""
    busy_backoff_base_seconds: int = Field(default=60, ge=0)
    busy_backoff_max_seconds: int = Field(default=900, ge=0, le=43_200)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> JobEventsSettings:
        """Read the settings; ValueError naming every missing or invalid variable."""
        names = {
            "jobs_table": "JOBS_TABLE",
            "notifications_table": "NOTIFICATIONS_TABLE",
            "trials_table": "TRIALS_TABLE",
            "models_table": "MODELS_TABLE",
            "artifacts_bucket": "ARTIFACTS_BUCKET",
            "notifications_topic_arn": "NOTIFICATIONS_TOPIC_ARN",
            "events_dlq_url": "JOB_EVENTS_DLQ_URL",
            "portal_job_url_template": "PORTAL_JOB_URL_TEMPLATE",
            "catalog_bucket": "CATALOG_BUCKET",
            "catalog_cache_seconds": "CATALOG_CACHE_SECONDS",
            "deployments_table": "DEPLOYMENTS_TABLE",
            "deployment_requests_queue_url": "DEPLOYMENT_REQUESTS_QUEUE_URL",
            "alarm_prefix": "ALARM_PREFIX",
            "retraining_policies_table": "RETRAINING_POLICIES_TABLE",
            "retraining_runs_table": "RETRAINING_RUNS_TABLE",
            "job_events_queue_url": "JOB_EVENTS_QUEUE_URL",
            "busy_backoff_base_seconds": "RETRY_BACKOFF_BASE_SECONDS",
            "busy_backoff_max_seconds": "RETRY_BACKOFF_MAX_SECONDS",
        }
        return settings_from_env(cls, names, environ)
