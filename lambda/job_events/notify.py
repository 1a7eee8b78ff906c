"""Tenant notifications: stored in the notifications table, published on SNS exactly once.

Every notification has a deterministic id (from the time of the state it reports), so a
redelivered event computes the same id, the conditional put finds the stored one, and its
``published`` flag says whether the SNS publish still has to happen: an interrupted publish is
finished by the redelivery, a finished one is never repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from training_common import (
    Job,
    JobKind,
    JobStatus,
    ModelApprovalStatus,
    ModelVersion,
    Notification,
    NotificationRepository,
    iso_utc,
)

from .settings import JobEventsSettings
from .telemetry import logger, metrics


@dataclass
class Notifier:
    """Writes and publishes the tenant's notifications (SNS attribute ``tenant_id``)."""

    settings: JobEventsSettings
    notifications: NotificationRepository
    sns: Any

    def ensure_notified(self, job: Job, model: ModelVersion | None = None) -> Notification:
        """Write the job's final-state notification if missing, and publish it if not yet done.

        The id derives from the time of the job's first entry into its final state. ``model``,
        the version registered from the job, adds a line about the registry to a new text.
        """
        final_at = next(
            (entry.at for entry in job.status_history if entry.status == job.status),
            job.last_event_time or job.updated_at,
        )
        created_at = iso_utc(final_at)
        compose = self.compose_tuning if job.kind == JobKind.TUNING else self.compose
        subject, text = compose(job)
        if model is not None and model.model_version is not None:
            text += (
                f"\nThe model is registered as version {model.model_version} of your model "
                f"registry, pending your approval: {self._models_page(job.job_id)}."
            )
        return self._deliver(
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

    def ensure_model_notified(
        self, model: ModelVersion, job_status: JobStatus, event_time: datetime
    ) -> Notification:
        """The notification that a version was approved or rejected, once per status event."""
        status = model.approval_status
        decided = "approved" if status == ModelApprovalStatus.APPROVED else "rejected"
        created_at = iso_utc(event_time)
        version = f"version {model.model_version}" if model.model_version else "the version"
        lines = [
            f"{version.capitalize()} of your model registry from job {model.job_id} "
            f"({model.algorithm_id}, training job {model.training_job_name}) was {decided}.",
        ]
        decision = next((d for d in reversed(model.decisions) if d.status == status), None)
        if decision is not None:
            comment = f": {decision.comment}" if decision.comment else ""
            lines.append(f"Decided by {decision.by} at {iso_utc(decision.at)}{comment}")
        if model.objective is not None and model.objective.value is not None:
            lines.append(
                f"Objective: {model.objective.name} = {model.objective.value:g} "
                f"({model.objective.type.value.lower()})."
            )
        elif model.metrics:
            lines.append("Metrics: " + ", ".join(f"{m.name}={m.value:g}" for m in model.metrics))
        lines.append(f"Lineage and download: {self._models_page(model.job_id)}.")
        return self._deliver(
            Notification(
                tenant_id=model.tenant_id,
                notification_id=f"{Notification.make_id(created_at, model.job_id)}"
                f"#model-{status.value}",
                job_id=model.job_id,
                status=job_status,
                subject=f"Model of job {model.job_id} {decided}"[:100],
                message="\n".join(lines),
                created_at=event_time,
                model_status=status.value,
            )
        )

    def deliver(self, candidate: Notification) -> Notification:
        """Store ``candidate`` unless its id is stored already, and publish it once."""
        return self._deliver(candidate)

    def portal_url(self, path: str) -> str:
        """The portal's URL of ``path`` (e.g. ``/deployments/x``) when the job URL template
        gives the portal's origin, else the path."""
        template = self.settings.portal_job_url_template
        if template and "/jobs/{job_id}" in template:
            return template.split("/jobs/{job_id}", 1)[0] + path
        return path

    def _deliver(self, candidate: Notification) -> Notification:
        notification, created = self.notifications.put_if_absent(candidate)
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
                "tenant_id": {"DataType": "String", "StringValue": notification.tenant_id},
            },
        )
        self.notifications.mark_published(notification.tenant_id, notification.notification_id)
        metrics.add_metric(name="NotificationsPublished", unit=MetricUnit.Count, value=1)
        logger.info(
            "Notification published",
            notification_id=notification.notification_id,
            first_delivery=created,
        )
        return notification.model_copy(update={"published": True})

    def _job_page(self, job_id: str) -> str:
        template = self.settings.portal_job_url_template
        if template:
            return f"the job's page in the portal: {template.format(job_id=job_id)}"
        return f"the job's page in the portal (Jobs, then {job_id})"

    def _models_page(self, job_id: str) -> str:
        template = self.settings.portal_job_url_template
        if template and "/jobs/{job_id}" in template:
            url = template.replace("/jobs/{job_id}", "/models/{job_id}").format(job_id=job_id)
            return f"the model's page in the portal: {url}"
        return f"the portal's Models page ({job_id})"

    def compose(self, job: Job) -> tuple[str, str]:
        """Subject and text of the notification for a training job in a final state."""
        where = self._job_page(job.job_id)
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

    def compose_tuning(self, job: Job) -> tuple[str, str]:
        """Subject and text for a tuning job in a final state: counts, best job, objective."""
        where = self._job_page(job.job_id)
        verb = {
            JobStatus.COMPLETED: "completed",
            JobStatus.FAILED: "failed",
        }.get(job.status, "was stopped")
        subject = f"Tuning job {job.job_id} {verb.removeprefix('was ')}"
        lines = [f"Your hyperparameter tuning job {job.job_id} ({job.algorithm_id}) {verb}."]
        if job.status == JobStatus.FAILED:
            lines.append(f"Reason: {job.failure_reason or 'not given by SageMaker'}.")
        progress = job.tuning_progress
        if progress is not None:
            lines.append(
                f"Training jobs: {progress.completed} completed, {progress.failed} failed, "
                f"{progress.stopped} stopped early, {progress.in_progress} still running."
            )
        best = job.best_training_job
        if best is not None:
            objective = job.tuning.objective_metric if job.tuning else "objective"
            value = "no value" if best.objective_value is None else f"{best.objective_value:g}"
            lines.append(f"Best training job: {best.training_job_name}, {objective} = {value}.")
            if best.hyperparameters:
                tuned = ", ".join(f"{k}={v}" for k, v in sorted(best.hyperparameters.items()))
                lines.append(f"Its tuned hyperparameters: {tuned}.")
        else:
            lines.append("No training job reported an objective value.")
        lines.append(f"Every training job, best first, and the objective chart are on {where}.")
        return subject, "\n".join(lines)
