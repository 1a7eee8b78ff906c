"""'SageMaker Model Package State Change' events: a version's approval status.

The tenant comes from the group's name (``tenant_of_group``: other groups are not the
platform's), the version's record from the package's ``job_id`` metadata property (in the
event, else ``DescribeModelPackage``). The status applies when the event is newer than the last
one applied; a change to Approved or Rejected notifies the tenant once: the notification id
derives from the event's time, and a redelivery finishes a publish the first delivery began.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from training_common import (
    DECISIONS,
    JobRepository,
    JobStatus,
    ModelApprovalStatus,
    ModelRepository,
    ModelVersion,
    is_job_id_of_tenant,
    iso_utc,
    tenant_of_group,
)

from .events import ModelPackageStateChangeEvent
from .notify import Notifier
from .outcomes import BadEventError, Outcome, ignored, stale
from .telemetry import logger, metrics

SAGEMAKER_STATUSES = frozenset(DECISIONS | {ModelApprovalStatus.PENDING})


@dataclass
class ModelStatusEvents:
    """Applies model package state changes to ``MODELS_TABLE`` records."""

    models: ModelRepository
    jobs: JobRepository
    notifier: Notifier
    sagemaker: Any

    def apply(self, event: ModelPackageStateChangeEvent) -> Outcome:
        """Apply one event; BadEventError for a status SageMaker doesn't define."""
        detail = event.detail
        tenant_id = tenant_of_group(detail.model_package_group_name)
        if tenant_id is None:
            return ignored(
                Outcome.NOT_PLATFORM_JOB,
                "Ignoring a model package outside the platform's groups",
                group=detail.model_package_group_name,
            )
        status = next(
            (s for s in SAGEMAKER_STATUSES if s.value == detail.model_approval_status), None
        )
        if status is None:
            raise BadEventError(f"unknown model approval status {detail.model_approval_status!r}")
        arn = detail.model_package_arn
        job_id = detail.customer_metadata_properties.get("job_id") or self._job_of_package(arn)
        if not job_id or not is_job_id_of_tenant(job_id, tenant_id):
            return ignored(Outcome.UNKNOWN_JOB, "Model package without a platform job", arn=arn)
        with logger.append_context_keys(tenant_id=tenant_id, job_id=job_id, model_package=arn):
            before = self.models.get(tenant_id, job_id)
            if before is None or (
                before.model_package_arn is not None
                and before.model_package_arn.lower() != arn.lower()
            ):
                return ignored(Outcome.UNKNOWN_JOB, "Model package event without its record")
            after = self.models.apply_status_event(tenant_id, job_id, status, event.event_time)
            if after is None:
                self._finish_redelivery(tenant_id, job_id, event.event_time)
                return stale("Stale or duplicate model package event ignored")
            logger.info("Model version status updated", status=status.value)
            metrics.add_metric(name="ModelStatusEventsApplied", unit=MetricUnit.Count, value=1)
            if status in DECISIONS and before.approval_status != status:
                self._notify(after, event.event_time)
            return Outcome.APPLIED

    def _finish_redelivery(self, tenant_id: str, job_id: str, event_time: datetime) -> None:
        """When this event is the record's newest (a redelivery), make sure its notification
        went out: the first delivery may have stopped between the update and the publish."""
        current = self.models.get(tenant_id, job_id)
        if (
            current is not None
            and current.approval_status in DECISIONS
            and current.last_event_time is not None
            and iso_utc(current.last_event_time) == iso_utc(event_time)
        ):
            self._notify(current, event_time)

    def _job_of_package(self, arn: str) -> str | None:
        """The platform job a model package came from (its ``job_id`` metadata property)."""
        try:
            described = self.sagemaker.describe_model_package(ModelPackageName=arn)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ValidationException":
                return None
            raise
        job_id = (described.get("CustomerMetadataProperties") or {}).get("job_id")
        return str(job_id) if job_id else None

    def _notify(self, model: ModelVersion, event_time: datetime) -> None:
        job = self.jobs.get(model.tenant_id, model.job_id)
        self.notifier.ensure_model_notified(
            model, job.status if job else JobStatus.COMPLETED, event_time
        )
