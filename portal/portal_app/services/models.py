"""A tenant's model registry: list, read, approve or reject, download.

The versions are listed from ``MODELS_TABLE`` (the tenant role has no SageMaker List* call). A
decision is recorded first, with who, when and the comment, on a version pending approval that
has none yet (a conditional write, so of two simultaneous decisions one wins), then sent to
SageMaker (``UpdateModelPackage`` with the tenant's credentials, which IAM limits to the
tenant's own group and to Approved/Rejected); a refused call withdraws it. The version's
approval status itself changes when SageMaker's "Model Package State Change" event reaches the
job-events handler.
"""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError
from training_common import (
    DECISIONS,
    ApprovalDecision,
    ModelApprovalStatus,
    ModelVersion,
    Page,
    is_job_id_of_tenant,
    model_package_group_name,
    utc_now,
)

from ..aws import TenantAws
from ..errors import BadRequest, Conflict, NotFound
from . import jobs

log = logging.getLogger("portal.models")

MODELS_PAGE_SIZE = 50
"""Model versions per page of the models list."""

MAX_COMMENT_LENGTH = 1000
"""SageMaker's ``ApprovalDescription`` limit, and the decision record's."""


def list_page(aws: TenantAws, token: str | None) -> Page[ModelVersion]:
    """One page of the tenant's model versions, newest first (PageTokenError: 400)."""
    return aws.models.list_page(aws.tenant_id, limit=MODELS_PAGE_SIZE, token=token or None)


def metric_names(models: list[ModelVersion]) -> list[str]:
    """The metric columns of a models list: objectives first, then the others, each once."""
    names: list[str] = []
    for model in models:
        if model.objective is not None and model.objective.name not in names:
            names.append(model.objective.name)
    for model in models:
        names.extend(m.name for m in model.metrics if m.name not in names)
    return names


def get(aws: TenantAws, job_id: str) -> ModelVersion:
    """The tenant's model version of ``job_id``; NotFound for any other (another tenant's
    version looks like a missing one)."""
    if not is_job_id_of_tenant(job_id, aws.tenant_id):
        raise NotFound(f"You have no model version of a job called {job_id[:64]!r}.")
    model = aws.models.get(aws.tenant_id, job_id)
    if model is None:
        raise NotFound(f"You have no model version of a job called {job_id!r}.")
    return model


def awaiting_event(model: ModelVersion) -> bool:
    """True when a decision was recorded but SageMaker's status change hasn't arrived yet."""
    return bool(model.decisions) and model.approval_status == ModelApprovalStatus.PENDING


def can_decide(model: ModelVersion) -> bool:
    """True while the version waits for the tenant's decision."""
    return model.approval_status == ModelApprovalStatus.PENDING and not model.decisions


def decide(
    aws: TenantAws, job_id: str, status: ModelApprovalStatus, *, comment: str, by: str
) -> tuple[ModelVersion, ApprovalDecision]:
    """Approve or reject the version: the decision on the record first (conditional: one
    decision per version), then ``UpdateModelPackage`` with the tenant's credentials; a refused
    update withdraws the decision. Conflict while it is still registering or once decided."""
    if status not in DECISIONS:
        raise BadRequest(f"A decision is Approved or Rejected, not {status.value}.")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_LENGTH:
        raise BadRequest(f"Comment must be at most {MAX_COMMENT_LENGTH} characters.")
    model = get(aws, job_id)
    if model.approval_status == ModelApprovalStatus.REGISTERING or not model.model_package_arn:
        raise Conflict(
            f"The model of job {job_id} is still being registered; decide once it is pending "
            "approval."
        )
    if not can_decide(model):
        taken = (model.decisions[-1].status if model.decisions else model.approval_status).value
        raise Conflict(f"The model of job {job_id} is already decided ({taken}).")
    _check_arn(aws, model)
    decision = ApprovalDecision(status=status, by=by, at=utc_now(), comment=comment)
    if not aws.models.record_decision(aws.tenant_id, job_id, decision):
        raise Conflict(f"The model of job {job_id} was decided or changed meanwhile; reload.")
    try:
        aws.sagemaker.update_model_package(
            ModelPackageArn=model.model_package_arn,
            ModelApprovalStatus=status.value,
            ApprovalDescription=comment,
        )
    except ClientError:
        # A refusal: SageMaker did not take the decision, so the tenant may decide again. Any
        # other failure (a timeout after SageMaker got the call) leaves the decision recorded:
        # the status event tells whether it took effect, and the audit trail stays whole.
        aws.models.withdraw_decision(aws.tenant_id, job_id)
        raise
    log.info(
        "model decision",
        extra={"tenant_id": aws.tenant_id, "job_id": job_id, "status": status.value},
    )
    return model, decision


def _check_arn(aws: TenantAws, model: ModelVersion) -> None:
    # Defence in depth: IAM limits UpdateModelPackage to the tenant's group anyway.
    group = f":model-package/{model_package_group_name(aws.tenant_id)}/"
    if group not in (model.model_package_arn or ""):
        log.error(
            "model package outside the tenant's group",
            extra={"job_id": model.job_id, "arn": model.model_package_arn},
        )
        raise NotFound("The model package is not in your model registry.")


def download_url(aws: TenantAws, artifacts_bucket: str, job_id: str, expires: int) -> str:
    """A presigned GET of the version's model archive, only below the tenant's job prefix."""
    model = get(aws, job_id)
    return jobs.archive_download_url(
        aws, artifacts_bucket, job_id, model.model_artifact_key, expires
    )
