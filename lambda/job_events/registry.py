"""Registering a job's model in the tenant's SageMaker model package group.

One version per platform job (a tuning job registers its best training job's model), in three
idempotent steps, each safe to repeat on a redelivered event:

1. ``ModelRepository.put_if_absent`` a REGISTERING :class:`ModelVersion` with the lineage (job,
   training job, algorithm, dataset, image, artifact, metrics, objective, hyperparameters);
   a record that already has a model package ARN means the job is registered: nothing to do.
2. Make sure the tenant's group ``<tenant>-models`` exists (``CreateModelPackageGroup`` tagged
   ``tenant`` on the tenant's first registration; "already exists" is success), write the
   version's model-metrics JSON under the job's prefix, and ``CreateModelPackage`` pending
   manual approval with ``ClientToken = registration_token(job_id)``: a repeated call with the
   same request returns the version the first one created.
3. ``ModelRepository.set_registered`` with the package's ARN and version number.

The model-metrics document (``ModelMetrics.ModelQuality.Statistics``) is deterministic, so the
repeated request is identical, content digest included::

    {"version": 0.0, "job_id": ..., "training_job_name": ..., "algorithm_id": ...,
     "dataset_key": ..., "objective": {"name": ..., "type": ..., "value": ...},
     "metrics": {"<metric name>": {"value": <float>}, ...}}

Throttling and other transient SageMaker errors propagate (SQS delivers the event again); a
request SageMaker refuses as invalid, or refuses for a full account quota
(``ResourceLimitExceeded``: retrying within the queue's few receives won't free it), raises
:class:`RegistrationError`, which the service dead-letters with its reason, to be redriven once
the request or the quota is fixed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from training_common import (
    CatalogError,
    CatalogRepository,
    FinalMetric,
    Job,
    ModelApprovalStatus,
    ModelObjective,
    ModelRepository,
    ModelVersion,
    job_prefix,
    model_package_group_name,
    model_version_of_arn,
    registration_token,
    s3_uri,
    utc_now,
)

from .telemetry import logger, metrics

MODEL_METRICS_FILE = "registry/model-metrics.json"
DEFAULT_CONTENT_TYPE = "text/csv"
_METADATA_VALUE = re.compile(r"[^\w\s.:/=+\-@]")
_MAX_METADATA_VALUE = 256
_MAX_DESCRIPTION = 1024


class RegistrationError(Exception):
    """The model can't be registered from what the event and SageMaker say (dead-letter it)."""


@dataclass(frozen=True)
class ModelSource:
    """What a registration takes from the training job that produced the model."""

    training_job_name: str
    training_job_arn: str | None
    image_uri: str
    model_artifact_key: str
    metrics: list[FinalMetric]
    hyperparameters: dict[str, str]
    objective: ModelObjective | None = None


def model_metrics_key(tenant_id: str, job_id: str) -> str:
    """Where a version's model-metrics JSON lives: below the job's prefix."""
    return f"{job_prefix(tenant_id, job_id)}{MODEL_METRICS_FILE}"


def model_metrics_document(version: ModelVersion) -> bytes:
    """The version's ModelQuality statistics document (same bytes for the same version)."""
    document: dict[str, Any] = {
        "version": 0.0,
        "job_id": version.job_id,
        "training_job_name": version.training_job_name,
        "algorithm_id": version.algorithm_id,
        "dataset_key": version.dataset_key,
        "metrics": {metric.name: {"value": metric.value} for metric in version.metrics},
    }
    if version.objective is not None:
        document["objective"] = version.objective.model_dump(mode="json")
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _metadata_value(value: str) -> str:
    """A CustomerMetadataProperties value: SageMaker's character set, 1 to 256 characters."""
    return (_METADATA_VALUE.sub("_", value)[:_MAX_METADATA_VALUE]) or "-"


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


@dataclass
class ModelRegistrar:
    """Registers job models; the SageMaker and S3 clients and the repositories are injected."""

    sagemaker: Any
    s3: Any
    models: ModelRepository
    artifacts_bucket: str
    catalog: CatalogRepository | None = None
    _known_groups: set[str] = field(default_factory=set, repr=False)
    """Groups seen to exist by this execution environment (groups are never deleted)."""

    def ensure_registered(self, job: Job, source: Callable[[], ModelSource]) -> ModelVersion:
        """The job's registered version, registering it first if needed.

        ``source`` is called only while the version has no model package yet (it may call
        SageMaker). RegistrationError when the model can't be registered.
        """
        stored = self.models.get(job.tenant_id, job.job_id)
        if stored is not None and stored.model_package_arn:
            logger.info("Model already registered", model_package_arn=stored.model_package_arn)
            return stored
        origin = source()
        if stored is None:
            stored, created = self.models.put_if_absent(self._new_version(job, origin))
            if stored.model_package_arn:
                return stored
            logger.info("Model version recorded", first_delivery=created)
        self.ensure_group(stored.tenant_id)
        metrics_uri, digest = self._write_metrics(stored)
        arn = self._create_package(job, stored, origin, metrics_uri, digest)
        registered = self.models.set_registered(
            stored.tenant_id, stored.job_id, arn=arn, version=model_version_of_arn(arn)
        )
        logger.info("Model registered", model_package_arn=arn)
        metrics.add_metric(name="ModelsRegistered", unit=MetricUnit.Count, value=1)
        return registered or stored.model_copy(update={"model_package_arn": arn})

    def _new_version(self, job: Job, origin: ModelSource) -> ModelVersion:
        now = utc_now()
        return ModelVersion(
            tenant_id=job.tenant_id,
            job_id=job.job_id,
            training_job_name=origin.training_job_name,
            algorithm_id=job.algorithm_id,
            dataset_key=job.dataset_key,
            validation_key=job.validation_key,
            image_uri=origin.image_uri,
            model_artifact_key=origin.model_artifact_key,
            metrics=list(origin.metrics),
            objective=origin.objective,
            hyperparameters=dict(origin.hyperparameters),
            model_package_group=model_package_group_name(job.tenant_id),
            approval_status=ModelApprovalStatus.REGISTERING,
            created_at=now,
            updated_at=now,
        )

    def ensure_group(self, tenant_id: str) -> str:
        """The tenant's model package group's name, creating the group (tagged) if missing."""
        name = model_package_group_name(tenant_id)
        if name in self._known_groups:
            return name
        try:
            self.sagemaker.describe_model_package_group(ModelPackageGroupName=name)
        except ClientError as error:
            if _error_code(error) not in {"ValidationException", "ResourceNotFound"}:
                raise
            self._create_group(tenant_id, name)
        self._known_groups.add(name)
        return name

    def _create_group(self, tenant_id: str, name: str) -> None:
        try:
            self.sagemaker.create_model_package_group(
                ModelPackageGroupName=name,
                ModelPackageGroupDescription=f"Model versions of tenant {tenant_id}",
                Tags=[{"Key": "tenant", "Value": tenant_id}],
            )
        except ClientError as error:
            already = _error_code(error) == "ResourceInUse" or (
                _error_code(error) == "ValidationException"
                and "already exists" in _error_message(error)
            )
            if _error_code(error) == "ResourceLimitExceeded":
                raise RegistrationError(
                    f"SageMaker's model package group quota is reached: {_error_message(error)}"
                ) from error
            if not already:
                raise
            logger.info("Model package group already exists", group=name)
            return
        logger.info("Model package group created", group=name)

    def _write_metrics(self, version: ModelVersion) -> tuple[str, str]:
        body = model_metrics_document(version)
        key = model_metrics_key(version.tenant_id, version.job_id)
        self.s3.put_object(
            Bucket=self.artifacts_bucket, Key=key, Body=body, ContentType="application/json"
        )
        return s3_uri(self.artifacts_bucket, key), "sha256:" + hashlib.sha256(body).hexdigest()

    def _content_type(self, algorithm_id: str) -> str:
        if self.catalog is None:
            return DEFAULT_CONTENT_TYPE
        try:
            entry = self.catalog.get(algorithm_id)
        except CatalogError as error:
            logger.warning("Catalog entry unreadable; default content type", error=str(error))
            return DEFAULT_CONTENT_TYPE
        return DEFAULT_CONTENT_TYPE if entry is None else entry.input_content_type

    def _create_package(
        self, job: Job, version: ModelVersion, origin: ModelSource, metrics_uri: str, digest: str
    ) -> str:
        content_type = self._content_type(version.algorithm_id)
        metadata = {
            "job_id": version.job_id,
            "dataset": version.dataset_key,
            "training_job": version.training_job_name,
            "algorithm": version.algorithm_id,
        }
        if version.objective is not None:
            value = "none" if version.objective.value is None else repr(version.objective.value)
            metadata["objective"] = (
                f"{version.objective.name} {version.objective.type.value} {value}"
            )
        description = (
            f"{version.algorithm_id} model of job {version.job_id} "
            f"(training job {version.training_job_name}, dataset {version.dataset_key})"
        )
        request: dict[str, Any] = {
            "ModelPackageGroupName": version.model_package_group,
            "ModelPackageDescription": description[:_MAX_DESCRIPTION],
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": version.image_uri,
                        "ModelDataUrl": s3_uri(self.artifacts_bucket, version.model_artifact_key),
                    }
                ],
                "SupportedContentTypes": [content_type],
                "SupportedResponseMIMETypes": [content_type],
            },
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": metrics_uri,
                        "ContentDigest": digest,
                    }
                }
            },
            "ModelApprovalStatus": ModelApprovalStatus.PENDING.value,
            "CustomerMetadataProperties": {
                key: _metadata_value(value) for key, value in metadata.items()
            },
            "ClientToken": registration_token(job.job_id),
            # No Tags: a version in a group carries the group's tags (tenant), and SageMaker
            # refuses Tags together with ModelPackageGroupName.
        }
        if origin.training_job_arn:
            request["MetadataProperties"] = {"GeneratedBy": origin.training_job_arn}
        try:
            response = self.sagemaker.create_model_package(**request)
        except ClientError as error:
            if _error_code(error) in {"ValidationException", "ResourceLimitExceeded"}:
                raise RegistrationError(
                    f"SageMaker refused the model package of job {job.job_id}: "
                    f"{_error_message(error)}"
                ) from error
            raise
        return str(response["ModelPackageArn"])
