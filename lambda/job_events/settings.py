"""The job-events handler's configuration, read once from its environment variables."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict
from training_common import settings_from_env


class JobEventsSettings(BaseModel):
    """Everything the job-events handler needs from its environment (names in ``from_env``)."""

    model_config = ConfigDict(frozen=True)

    jobs_table: str
    notifications_table: str
    artifacts_bucket: str
    notifications_topic_arn: str
    events_dlq_url: str
    portal_job_url_template: str | None = None
    """E.g. ``https://portal.example.com/jobs/{job_id}``; without it the text names the job."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> JobEventsSettings:
        """Read the settings; ValueError naming every missing or invalid variable."""
        names = {
            "jobs_table": "JOBS_TABLE",
            "notifications_table": "NOTIFICATIONS_TABLE",
            "artifacts_bucket": "ARTIFACTS_BUCKET",
            "notifications_topic_arn": "NOTIFICATIONS_TOPIC_ARN",
            "events_dlq_url": "JOB_EVENTS_DLQ_URL",
            "portal_job_url_template": "PORTAL_JOB_URL_TEMPLATE",
        }
        return settings_from_env(cls, names, environ)
