"""The model registry: one SageMaker model package group per tenant, one version per job.

The group is named from the tenant id (:func:`model_package_group_name`) and created at run time
by the job-events handler on the tenant's first registration, never by a template. The portal's
view of a version is a :class:`ModelVersion` in ``MODELS_TABLE`` (key ``tenant_id`` +
``job_id``: a job registers at most one model, its own or, for a tuning job, its best training
job's), written by the job-events handler and, for the tenant's decision, by the portal.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .ids import TENANT_ID_PATTERN, UtcDatetime, is_tenant_id
from .models import FinalMetric
from .tuning import ObjectiveType

MODEL_PACKAGE_GROUP_SUFFIX = "-models"
_GROUP_NAME = re.compile(r"^(?P<tenant>[a-z][a-z0-9-]{2,23})-models$")
_CLIENT_TOKEN_NAMESPACE = uuid.UUID("6f1c1d3e-5b7a-4b1e-9a57-2f0d6f1b9c42")


class ModelApprovalStatus(StrEnum):
    """A version's state: REGISTERING until SageMaker has the package, then SageMaker's own."""

    REGISTERING = "Registering"
    PENDING = "PendingManualApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"


DECISIONS: frozenset[ModelApprovalStatus] = frozenset(
    {ModelApprovalStatus.APPROVED, ModelApprovalStatus.REJECTED}
)
"""What a tenant may set a version to."""


class ApprovalDecision(BaseModel):
    """One approval or rejection: who, when, why (``ApprovalDescription`` in SageMaker too)."""

    model_config = ConfigDict(extra="ignore")

    status: ModelApprovalStatus
    by: str = Field(min_length=1, max_length=256)
    at: UtcDatetime
    comment: str = Field(default="", max_length=1000)


class ModelObjective(BaseModel):
    """The objective a tuning job optimised and the registered model's value of it."""

    name: str
    type: ObjectiveType
    value: float | None = None


class ModelVersion(BaseModel):
    """A registered model in ``MODELS_TABLE``: lineage, metrics and the approval state."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    job_id: str
    """The platform job the model came from (a training job or a tuning job)."""
    training_job_name: str
    """The SageMaker training job that produced the artifact (a tuning job's best)."""
    algorithm_id: str
    dataset_key: str
    validation_key: str | None = None
    """The held-out validation channel the objective was measured on (None: none given)."""
    image_uri: str
    model_artifact_key: str
    metrics: list[FinalMetric] = Field(default_factory=list)
    objective: ModelObjective | None = None
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    model_package_group: str
    model_package_arn: str | None = None
    model_version: int | None = None
    approval_status: ModelApprovalStatus = ModelApprovalStatus.REGISTERING
    decisions: list[ApprovalDecision] = Field(default_factory=list)
    """Every decision taken in the portal, oldest first."""
    created_at: UtcDatetime
    updated_at: UtcDatetime
    last_event_time: UtcDatetime | None = None
    """Time of the newest "Model Package State Change" event applied."""

    def metric(self, name: str) -> float | None:
        """The value of metric ``name``, or None."""
        return next((m.value for m in self.metrics if m.name == name), None)


def model_package_group_name(tenant_id: str) -> str:
    """``<tenant>-models``: at most 31 characters, valid as a SageMaker name."""
    if not is_tenant_id(tenant_id):
        raise ValueError(f"invalid tenant id {tenant_id!r}: expected {TENANT_ID_PATTERN}")
    return f"{tenant_id}{MODEL_PACKAGE_GROUP_SUFFIX}"


def tenant_of_group(group_name: str) -> str | None:
    """The tenant whose group ``group_name`` is, or None for a group that isn't the platform's."""
    match = _GROUP_NAME.fullmatch(group_name)
    return match.group("tenant") if match else None


def registration_token(job_id: str) -> str:
    """``CreateModelPackage``'s ``ClientToken`` for a job: the same on every redelivery."""
    return str(uuid.uuid5(_CLIENT_TOKEN_NAMESPACE, job_id))


def model_version_of_arn(arn: str) -> int | None:
    """The version number at the end of a versioned model package ARN (``…/<group>/<n>``)."""
    tail = arn.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


__all__ = [
    "DECISIONS",
    "MODEL_PACKAGE_GROUP_SUFFIX",
    "ApprovalDecision",
    "ModelApprovalStatus",
    "ModelObjective",
    "ModelVersion",
    "model_package_group_name",
    "model_version_of_arn",
    "registration_token",
    "tenant_of_group",
]
