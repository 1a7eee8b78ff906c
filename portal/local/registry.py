"""The model registry as the job-events handler and SageMaker would run it, for the simulator.

:meth:`LocalRegistry.register` writes the portal's :class:`ModelVersion` (REGISTERING), creates
the tenant's model package group on first use (tagged ``tenant``) and a model package version
in moto (``ClientToken`` from :func:`registration_token`, the job in its description and
``CustomerMetadataProperties``), records it
(``set_registered``) and plays the "Model Package State Change" event of its creation.
:meth:`LocalRegistry.session_hook` watches the portal's ``UpdateModelPackage`` calls;
:meth:`LocalRegistry.deliver_events` then plays the state-change event SageMaker sends for the
new status: ``apply_status_event`` and a notification with ``model_status``.

A retraining run's model (``job.retraining`` set) is then handed to ``promotion.on_registered``
(the job-events handler's ``PromotionService``): the decision, the registry's approval or
rejection, the notification and, for a promotion, the deployment request. The promotion
service's own session carries :meth:`LocalRegistry.sync_hook`, which plays the state-change
event of its ``UpdateModelPackage`` before the call returns, so the version reads Approved
before the deployment request that follows it reaches the deploy handler.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError
from training_common import (
    FinalMetric,
    Job,
    JobStatus,
    ModelApprovalStatus,
    ModelObjective,
    ModelRepository,
    ModelVersion,
    Notification,
    NotificationRepository,
    is_job_id_of_tenant,
    iso_utc,
    job_prefix,
    model_package_group_name,
    model_version_of_arn,
    registration_token,
    s3_uri,
    tenant_of_group,
)

from .common import sagemaker_arn

if TYPE_CHECKING:
    from .retraining import Promotion

log = logging.getLogger("local.registry")

_JOB_IN_DESCRIPTION = re.compile(r" model of job (?P<job>[a-z0-9-]+)")

_SUBJECTS = {
    ModelApprovalStatus.PENDING: "Model registered, pending approval",
    ModelApprovalStatus.APPROVED: "Model approved",
    ModelApprovalStatus.REJECTED: "Model rejected",
}


class LocalRegistry:
    """Registers models and answers approvals like the job-events handler and SageMaker."""

    def __init__(
        self,
        *,
        sagemaker: Any,
        s3: Any,
        artifacts_bucket: str,
        models: ModelRepository,
        notifications: NotificationRepository,
        clock: Callable[[], datetime],
        promotion: Promotion | None = None,
    ) -> None:
        self.promotion = promotion
        self.sagemaker = sagemaker
        self.s3 = s3
        self.artifacts_bucket = artifacts_bucket
        self.models = models
        self.notifications = notifications
        self.clock = clock
        self._updated: deque[str] = deque()
        self._retry: list[tuple[Job, ModelVersion]] = []
        self._lock = threading.Lock()

    def register(
        self,
        job: Job,
        *,
        training_job_name: str,
        artifact_key: str,
        image_uri: str,
        content_type: str,
        metrics: list[FinalMetric],
        hyperparameters: dict[str, str],
        objective: ModelObjective | None = None,
    ) -> ModelVersion:
        """Register the model of a completed job (once: a repeat returns the stored version)."""
        now = self.clock()
        group = model_package_group_name(job.tenant_id)
        stored, _ = self.models.put_if_absent(
            ModelVersion(
                tenant_id=job.tenant_id,
                job_id=job.job_id,
                training_job_name=training_job_name,
                algorithm_id=job.algorithm_id,
                dataset_key=job.dataset_key,
                validation_key=job.validation_key,
                image_uri=image_uri,
                model_artifact_key=artifact_key,
                metrics=metrics,
                objective=objective,
                hyperparameters=hyperparameters,
                model_package_group=group,
                created_at=now,
                updated_at=now,
            )
        )
        if stored.model_package_arn is not None:
            return stored
        registered = self._create_package(
            job, stored, group, training_job_name, artifact_key, image_uri, content_type, metrics
        )
        self._promote(job, registered)
        return registered

    def _promote(self, job: Job, version: ModelVersion) -> None:
        """A retraining run's registered model goes to the promotion rule."""
        if job.retraining is None or self.promotion is None:
            return
        try:
            self.promotion.on_registered(job, version)
        except Exception as error:  # the event is retried, as the job-events queue would
            log.info("promotion retried later", extra={"job_id": job.job_id, "why": str(error)})
            with self._lock:
                self._retry.append((job, version))

    def retry_promotions(self) -> int:
        """Hand the registrations whose promotion raised to the promotion rule again."""
        with self._lock:
            pending, self._retry = self._retry, []
        for job, version in pending:
            self._promote(job, version)
        return len(pending)

    def _create_package(
        self,
        job: Job,
        stored: ModelVersion,
        group: str,
        training_job_name: str,
        artifact_key: str,
        image_uri: str,
        content_type: str,
        metrics: list[FinalMetric],
    ) -> ModelVersion:
        self._ensure_group(job.tenant_id, group)
        metrics_key = f"{job_prefix(job.tenant_id, job.job_id)}model-metrics.json"
        self.s3.put_object(
            Bucket=self.artifacts_bucket,
            Key=metrics_key,
            Body=json.dumps({m.name: {"value": m.value} for m in metrics}).encode(),
            ContentType="application/json",
        )
        arn: str = self.sagemaker.create_model_package(
            ModelPackageGroupName=group,
            ModelPackageDescription=(
                f"{job.algorithm_id} model of job {job.job_id} "
                f"(training job {training_job_name}, dataset {job.dataset_key})"
            )[:1024],
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": image_uri,
                        "ModelDataUrl": s3_uri(self.artifacts_bucket, artifact_key),
                    }
                ],
                "SupportedContentTypes": [content_type],
                "SupportedResponseMIMETypes": ["application/json", "text/csv"],
            },
            ModelApprovalStatus=ModelApprovalStatus.PENDING.value,
            ModelMetrics={
                "ModelQuality": {
                    "Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": s3_uri(self.artifacts_bucket, metrics_key),
                    }
                }
            },
            CustomerMetadataProperties={
                "job_id": job.job_id,
                "dataset": job.dataset_key[:256],
                "training_job": training_job_name,
                "algorithm": job.algorithm_id,
            },
            MetadataProperties={"GeneratedBy": sagemaker_arn("training-job", training_job_name)},
            ClientToken=registration_token(job.job_id),
            # No Tags: a version in a group carries the group's tags (tenant), and SageMaker
            # refuses Tags together with ModelPackageGroupName.
        )["ModelPackageArn"]
        registered = self.models.set_registered(
            job.tenant_id, job.job_id, arn=arn, version=model_version_of_arn(arn)
        )
        self._apply(job.tenant_id, job.job_id, ModelApprovalStatus.PENDING)
        log.info("model registered", extra={"job_id": job.job_id, "arn": arn})
        return registered or stored

    def _ensure_group(self, tenant_id: str, group: str) -> None:
        try:
            self.sagemaker.describe_model_package_group(ModelPackageGroupName=group)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in {
                "ValidationException",
                "ResourceNotFound",
            }:
                raise
            self.sagemaker.create_model_package_group(
                ModelPackageGroupName=group,
                ModelPackageGroupDescription=f"Models of tenant {tenant_id}",
                Tags=[{"Key": "tenant", "Value": tenant_id}],
            )

    def session_hook(self, session: boto3.Session) -> None:
        """Watch ``UpdateModelPackage`` on ``session``'s clients (moto answers the call itself)."""
        session.events.register("after-call.sagemaker.UpdateModelPackage", self._on_update)

    def sync_hook(self, session: boto3.Session) -> None:
        """Like :meth:`session_hook`, but the event is played before the call returns."""
        session.events.register("after-call.sagemaker.UpdateModelPackage", self._on_update_now)

    def _on_update(self, parsed: dict[str, Any], **_: Any) -> None:
        arn = parsed.get("ModelPackageArn")
        if isinstance(arn, str) and "Error" not in parsed:
            with self._lock:
                self._updated.append(arn)

    def _on_update_now(self, parsed: dict[str, Any], **kwargs: Any) -> None:
        self._on_update(parsed, **kwargs)
        self.deliver_events()

    def deliver_events(self) -> int:
        """Play the "Model Package State Change" event of every package updated since the last
        call; how many events were applied."""
        applied = 0
        while True:
            with self._lock:
                if not self._updated:
                    return applied
                arn = self._updated.popleft()
            package = self.sagemaker.describe_model_package(ModelPackageName=arn)
            tenant_id = tenant_of_group(package.get("ModelPackageGroupName", ""))
            # moto's UpdateModelPackage drops CustomerMetadataProperties and its ListTags can't
            # parse versioned package ARNs, so the job id comes from the description we wrote.
            match = _JOB_IN_DESCRIPTION.search(package.get("ModelPackageDescription", ""))
            job_id = match.group("job") if match else ""
            if tenant_id is None or not is_job_id_of_tenant(job_id, tenant_id):
                log.warning("model package of no tenant's job", extra={"arn": arn})
                continue
            status = ModelApprovalStatus(package["ModelApprovalStatus"])
            if self._apply(tenant_id, job_id, status) is not None:
                applied += 1

    def _apply(
        self, tenant_id: str, job_id: str, status: ModelApprovalStatus
    ) -> ModelVersion | None:
        """The state-change event: the record's new status and a notification for the tenant."""
        at = self.clock()
        model = self.models.apply_status_event(tenant_id, job_id, status, at)
        if model is None:
            return None
        version = "" if model.model_version is None else f" (version {model.model_version})"
        subject = _SUBJECTS.get(status, f"Model {status.value}")
        self.notifications.put_if_absent(
            Notification(
                tenant_id=tenant_id,
                notification_id=Notification.make_id(iso_utc(at), job_id),
                job_id=job_id,
                status=JobStatus.COMPLETED,
                subject=f"{subject}: {job_id}"[:100],
                message=f"The model of job {job_id}{version} is now {status.value}. "
                "Open the Models page to review it.",
                created_at=at,
                model_status=status.value,
            )
        )
        return model
