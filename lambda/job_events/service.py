"""The job-events handler's logic, one state-change event at a time.

Applies the event to the job record with a conditional write (newer than ``last_event_time``,
allowed by the status machine), ignores events for unknown jobs, for jobs that aren't the
platform's (no ``tenant`` tag) and stale or duplicate events, and on a final state makes sure the
tenant's notification exists and went out on SNS exactly once per job and final status: the
notification id derives from the time of the job's first final-state entry, so every redelivery
computes the same id and the conditional put deduplicates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError
from training_common import (
    FinalMetric,
    Job,
    JobRepository,
    JobStateUpdate,
    JobStatus,
    Notification,
    NotificationRepository,
    QueueMessage,
    describe_schema_errors,
    from_sagemaker_status,
    is_final,
    is_tenant_id,
    iso_utc,
    job_prefix,
    key_in_bucket,
    new_session,
    send_to_dead_letter_queue,
)

from .events import (
    TRAINING_JOB_STATE_CHANGE,
    TrainingJobStateChangeEvent,
)
from .settings import JobEventsSettings

logger = Logger()
metrics = Metrics()
tracer = Tracer()

HANDLER_NAME = "job_events"


class Outcome(StrEnum):
    """What the handler did with one event (the message is acknowledged in every case)."""

    APPLIED = "APPLIED"
    STALE = "STALE"
    UNKNOWN_JOB = "UNKNOWN_JOB"
    NOT_PLATFORM_JOB = "NOT_PLATFORM_JOB"
    DEAD_LETTERED = "DEAD_LETTERED"


@dataclass
class JobEventsService:
    """Applies SageMaker state changes to job records and notifies tenants."""

    settings: JobEventsSettings
    jobs: JobRepository
    notifications: NotificationRepository
    sns: Any
    sqs: Any

    @classmethod
    def from_settings(
        cls, settings: JobEventsSettings, session: boto3.Session | None = None
    ) -> JobEventsService:
        """Build the service with boto3 clients from ``session`` (default: a new session)."""
        session = session or new_session()
        return cls(
            settings=settings,
            jobs=JobRepository.from_table_name(settings.jobs_table, session),
            notifications=NotificationRepository.from_table_name(
                settings.notifications_table, session
            ),
            sns=session.client("sns"),
            sqs=session.client("sqs"),
        )

    @tracer.capture_method
    def handle(self, message: QueueMessage) -> Outcome:
        """Process one event; raises (AWS errors) to leave it on the queue for another attempt."""
        try:
            event = TrainingJobStateChangeEvent.model_validate_json(message.body)
        except ValidationError as error:
            reason = "unreadable state-change event: " + "; ".join(describe_schema_errors(error))
            return self._dead_letter(message, reason)
        if event.detail_type != TRAINING_JOB_STATE_CHANGE:
            return self._dead_letter(message, f"unexpected detail-type {event.detail_type!r}")
        detail = event.detail
        tenant_id = detail.tags.get("tenant", "")
        if not is_tenant_id(tenant_id):
            logger.info(
                "Ignoring a training job without a tenant tag", job=detail.training_job_name
            )
            metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
            return Outcome.NOT_PLATFORM_JOB
        try:
            status = from_sagemaker_status(detail.training_job_status)
        except ValueError as error:
            return self._dead_letter(message, str(error))
        update = JobStateUpdate(
            status=status,
            event_time=event.event_time,
            secondary_status=detail.secondary_status,
            failure_reason=detail.failure_reason,
            training_job_arn=detail.training_job_arn,
            billable_seconds=detail.billable_time_in_seconds,
            final_metrics=[
                FinalMetric(name=m.metric_name, value=m.value)
                for m in detail.final_metric_data_list
            ],
            model_artifact_key=self._artifact_key(tenant_id, detail.training_job_name, event),
        )
        with logger.append_context_keys(tenant_id=tenant_id, job_id=detail.training_job_name):
            return self._apply(tenant_id, detail.training_job_name, update)

    def _artifact_key(
        self, tenant_id: str, job_id: str, event: TrainingJobStateChangeEvent
    ) -> str | None:
        artifacts = event.detail.model_artifacts
        if artifacts is None or not artifacts.s3_model_artifacts:
            return None
        key = key_in_bucket(artifacts.s3_model_artifacts, self.settings.artifacts_bucket)
        if key is None or not key.startswith(job_prefix(tenant_id, job_id)):
            logger.warning(
                "Model artifacts outside the job's prefix", uri=artifacts.s3_model_artifacts
            )
            return None
        return key

    def _apply(self, tenant_id: str, job_id: str, update: JobStateUpdate) -> Outcome:
        job = self.jobs.apply_state_update(tenant_id, job_id, update)
        outcome = Outcome.APPLIED
        if job is None:
            job = self.jobs.get(tenant_id, job_id)
            if job is None:
                logger.warning("Event for an unknown job ignored", status=update.status.value)
                metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
                return Outcome.UNKNOWN_JOB
            outcome = Outcome.STALE
            logger.info(
                "Stale or duplicate event ignored",
                event_status=update.status.value,
                event_time=iso_utc(update.event_time),
                record_status=job.status.value,
                last_event_time=iso_utc(job.last_event_time) if job.last_event_time else None,
            )
            metrics.add_metric(name="EventsStale", unit=MetricUnit.Count, value=1)
        else:
            logger.info("Job record updated", status=job.status.value)
            metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=1)
            if is_final(job.status):
                # TrainingJobsCompleted / TrainingJobsFailed / TrainingJobsStopped: the
                # Observability stack's dashboard and its failed-jobs alarm read these.
                metrics.add_metric(
                    name=f"TrainingJobs{job.status.value.title()}", unit=MetricUnit.Count, value=1
                )
        if is_final(job.status) and job.status != JobStatus.REJECTED:
            self.ensure_notified(job)
        return outcome

    def ensure_notified(self, job: Job) -> Notification:
        """Write the job's final-state notification if missing, and publish it if not yet done."""
        final_at = next(
            (entry.at for entry in job.status_history if entry.status == job.status),
            job.last_event_time or job.updated_at,
        )
        created_at = iso_utc(final_at)
        subject, text = self.compose(job)
        notification, created = self.notifications.put_if_absent(
            Notification(
                tenant_id=job.tenant_id,
                notification_id=Notification.make_id(created_at, job.job_id),
                job_id=job.job_id,
                status=job.status,
                subject=subject,
                message=text,
                created_at=final_at,
            )
        )
        if notification.published:
            logger.info(
                "Notification already published", notification_id=notification.notification_id
            )
            return notification
        self.sns.publish(
            TopicArn=self.settings.notifications_topic_arn,
            Subject=notification.subject,
            Message=notification.message,
            MessageAttributes={
                "tenant_id": {"DataType": "String", "StringValue": job.tenant_id},
            },
        )
        self.notifications.mark_published(job.tenant_id, notification.notification_id)
        metrics.add_metric(name="NotificationsPublished", unit=MetricUnit.Count, value=1)
        logger.info(
            "Notification published",
            notification_id=notification.notification_id,
            first_delivery=created,
        )
        return notification.model_copy(update={"published": True})

    def compose(self, job: Job) -> tuple[str, str]:
        """Subject and text of the notification for a job in a final state."""
        template = self.settings.portal_job_url_template
        where = (
            f"the job's page in the portal: {template.format(job_id=job.job_id)}"
            if template
            else f"the job's page in the portal (Jobs, then {job.job_id})"
        )
        if job.status == JobStatus.COMPLETED:
            subject = f"Training job {job.job_id} completed"
            lines = [
                f"Your training job {job.job_id} ({job.algorithm_id}) completed.",
                f"Download the trained model from {where}: choose 'Download model'. "
                "The link it gives is valid for a short time; open the page again for a new one.",
            ]
            if job.final_metrics:
                metrics_text = ", ".join(f"{m.name}={m.value:g}" for m in job.final_metrics)
                lines.append(f"Final metrics: {metrics_text}.")
        elif job.status == JobStatus.FAILED:
            subject = f"Training job {job.job_id} failed"
            lines = [
                f"Your training job {job.job_id} ({job.algorithm_id}) failed.",
                f"Reason: {job.failure_reason or 'not given by SageMaker'}.",
                f"The job's details and logs summary are on {where}.",
            ]
        else:
            subject = f"Training job {job.job_id} stopped"
            lines = [
                f"Your training job {job.job_id} ({job.algorithm_id}) was stopped.",
                f"Any checkpoints and partial output are listed on {where}.",
            ]
        if job.billable_seconds is not None:
            lines.append(f"Billable time: {job.billable_seconds} s.")
        return subject, "\n".join(lines)

    def _dead_letter(self, message: QueueMessage, reason: str) -> Outcome:
        dlq_id = send_to_dead_letter_queue(
            self.sqs, self.settings.events_dlq_url, message, reason=reason, handler=HANDLER_NAME
        )
        metrics.add_metric(name="EventsDeadLettered", unit=MetricUnit.Count, value=1)
        logger.error(
            "Message sent to the dead-letter queue",
            reason=reason,
            message_id=message.message_id,
            dlq_message_id=dlq_id,
        )
        return Outcome.DEAD_LETTERED
