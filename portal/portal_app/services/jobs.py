"""Jobs for a tenant (training and tuning jobs alike): submit, list, read, stop, download."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from training_common import (
    MAX_RUNTIME_LIMIT_SECONDS,
    RUNNING_STATUSES,
    CatalogEntry,
    CatalogRepository,
    Job,
    JobKind,
    JobStatus,
    Page,
    Tenant,
    TrainingRequest,
    check_request,
    datasets_prefix,
    describe_schema_errors,
    is_job_id_of_tenant,
    job_prefix,
    new_job_id,
    tuning_job_name,
    utc_now,
)

from ..aws import TenantAws
from ..errors import BadRequest, Conflict, NotFound
from . import forms

log = logging.getLogger("portal.jobs")

JOBS_PAGE_SIZE = 50
"""Jobs per page of the jobs list."""


def tenant_record(aws: TenantAws) -> Tenant:
    tenant = aws.tenants.get(aws.tenant_id)
    if tenant is None:
        raise NotFound("Your tenant is not registered on the platform; contact an administrator.")
    return tenant


def visible_algorithms(tenant: Tenant, catalog: CatalogRepository) -> list[CatalogEntry]:
    """The catalog entries the tenant may use (all of them when its allow-list is empty)."""
    entries = catalog.list_entries()
    if tenant.allowed_algorithms:
        entries = [entry for entry in entries if entry.id in tenant.allowed_algorithms]
    return entries


def request_from_form(tenant_id: str, submitted_by: str, form: dict[str, str]) -> TrainingRequest:
    """The training request the form describes; BadRequest naming each malformed field.

    The tenant id comes from the verified identity only: a ``tenant_id`` form field is ignored.
    """
    fields = job_fields_from_form(tenant_id, form)
    try:
        return TrainingRequest(
            tenant_id=tenant_id,
            job_id=new_job_id(tenant_id),
            submitted_by=submitted_by,
            submitted_at=utc_now(),
            **fields,
        )
    except ValidationError as error:
        raise BadRequest(
            "The job request is invalid.", details=describe_schema_errors(error)
        ) from error


def job_fields_from_form(tenant_id: str, form: dict[str, str]) -> dict[str, Any]:
    """The fields a training job and a tuning job share: algorithm, dataset, static
    hyperparameters and instance settings (BadRequest for the first malformed one)."""
    dataset = forms.required(form, "dataset_key", "Dataset")
    if not dataset.startswith("tenants/"):
        dataset = f"{datasets_prefix(tenant_id)}{dataset.strip('/')}/"
    return {
        "algorithm_id": forms.required(form, "algorithm_id", "Algorithm"),
        "dataset_key": dataset,
        "hyperparameters": forms.key_values(form, "hyperparameters", "Hyperparameters"),
        "instance_type": forms.required(form, "instance_type", "Instance type"),
        "instance_count": forms.integer(
            form, "instance_count", "Instance count", minimum=1, maximum=100
        ),
        "max_runtime_seconds": forms.integer(
            form,
            "max_runtime_seconds",
            "Maximum runtime (seconds)",
            minimum=60,
            maximum=MAX_RUNTIME_LIMIT_SECONDS,
        ),
        "use_spot": forms.checkbox(form, "use_spot"),
    }


def submit(
    aws: TenantAws,
    catalog: CatalogRepository,
    queue_url: str,
    request: TrainingRequest,
) -> tuple[Job, str | None]:
    """Validate, write the QUEUED record and queue the request; (job, note for the tenant).

    Problems other than a full running-jobs quota are a BadRequest listing every one. With the
    quota full the job is queued anyway: the launch handler starts it when a slot frees up.
    """
    result = check_request(request, tenants=aws.tenants, jobs=aws.jobs, catalog=catalog)
    note = None
    if not result.ok:
        if not result.only_transient:
            raise BadRequest(
                "The job can't run as requested.", details=[p.message for p in result.problems]
            )
        note = result.reason
    job = Job.from_request(request)
    aws.jobs.create(job)
    try:
        aws.sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=request.to_message_body(),
            MessageAttributes={
                "tenant_id": {"DataType": "String", "StringValue": request.tenant_id},
                "job_id": {"DataType": "String", "StringValue": request.job_id},
            },
        )
    except Exception:
        # The record must not stay QUEUED for a request that never reached the queue.
        aws.jobs.transition(
            request.tenant_id,
            request.job_id,
            JobStatus.REJECTED,
            from_statuses=[JobStatus.QUEUED],
            failure_reason="The portal could not queue the request; submit the job again.",
        )
        raise
    log.info(
        "job queued",
        extra={"tenant_id": request.tenant_id, "job_id": request.job_id, "quota_note": note},
    )
    return job, note


def get(aws: TenantAws, job_id: str) -> Job:
    """The tenant's job; NotFound for any other (another tenant's job looks like a missing one)."""
    if not is_job_id_of_tenant(job_id, aws.tenant_id):
        raise NotFound(f"You have no job called {job_id[:64]!r}.")
    job = aws.jobs.get(aws.tenant_id, job_id)
    if job is None:
        raise NotFound(f"You have no job called {job_id!r}.")
    return job


def stop(aws: TenantAws, job_id: str) -> Job:
    """Ask SageMaker to stop the tenant's running job (tenant credentials; IAM checks the tag).

    A tuning job is stopped as a whole (``StopHyperParameterTuningJob``): SageMaker then stops
    the training jobs it started.
    """
    job = get(aws, job_id)
    if job.status not in {JobStatus.STARTING, JobStatus.IN_PROGRESS}:
        raise Conflict(f"Job {job_id} is {job.status.value}; only a running job can be stopped.")
    if job.kind == JobKind.TUNING:
        name = job.tuning_job_name or tuning_job_name(job_id)
        aws.sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    else:
        aws.sagemaker.stop_training_job(TrainingJobName=job_id)
    log.info(
        "job stop requested",
        extra={"tenant_id": aws.tenant_id, "job_id": job_id, "kind": job.kind.value},
    )
    return job


def list_page(aws: TenantAws, token: str | None) -> Page[Job]:
    """One page of the tenant's jobs, newest first (a bad token raises PageTokenError: 400)."""
    return aws.jobs.list_page(aws.tenant_id, limit=JOBS_PAGE_SIZE, token=token or None)


def model_download_url(aws: TenantAws, artifacts_bucket: str, job_id: str, expires: int) -> str:
    """A presigned GET for the job's model archive, only below the tenant's job prefix."""
    job = get(aws, job_id)
    key = job.model_artifact_key
    if job.status != JobStatus.COMPLETED or not key:
        raise Conflict(f"Job {job_id} has no model to download (status {job.status.value}).")
    return archive_download_url(aws, artifacts_bucket, job_id, key, expires)


def archive_download_url(
    aws: TenantAws, artifacts_bucket: str, job_id: str, key: str, expires: int
) -> str:
    """A presigned GET of a model archive of the tenant's job ``job_id``: only a key below the
    job's own prefix (NotFound otherwise), downloaded as ``<job id>-model.tar.gz``."""
    if not key.startswith(job_prefix(aws.tenant_id, job_id)) or ".." in key.split("/"):
        log.error("artifact key outside the job prefix", extra={"job_id": job_id, "key": key})
        raise NotFound("The job's model archive is not where it should be.")
    url: str = aws.s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": artifacts_bucket,
            "Key": key,
            "ResponseContentDisposition": f'attachment; filename="{job_id}-model.tar.gz"',
        },
        ExpiresIn=expires,
    )
    return url


def is_live(job: Job) -> bool:
    """True while the job's status can still change."""
    return job.status == JobStatus.QUEUED or job.status in RUNNING_STATUSES
