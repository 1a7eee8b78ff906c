"""The model registry as the job-events handler and SageMaker would run it, for the simulator.

:meth:`LocalRegistry.register` writes the portal's :class:`ModelVersion` (REGISTERING), creates
the tenant's model package group on first use (tagged ``tenant``) and a model package version
in moto (``ClientToken`` from :func:`registration_token`, the job in its description and
``CustomerMetadataProperties``), records it
(``set_registered``) and plays the "Model Package State Change" event of its creation.
:meth:`LocalRegistry.session_hook` watches the portal's ``UpdateModelPackage`` calls;
:meth:`LocalRegistry.deliver_events` then plays the state-change event SageMaker sends for the
new status: ``apply_status_event`` and a notification with ``model_status``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

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
    ) -> None:
        self.sagemaker = sagemaker
        self.s3 = s3
        self.artifacts_bucket = artifacts_bucket
        self.models = models
        self.notifications = notifications
        self.clock = clock
        self._updated: deque[str] = deque()
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

    def _on_update(self, parsed: dict[str, Any], **_: Any) -> None:
        arn = parsed.get("ModelPackageArn")
        if isinstance(arn, str) and "Error" not in parsed:
            with self._lock:
                self._updated.append(arn)

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
