"""A tenant's deployments: list, read, deploy, deploy another version, undeploy.

The portal writes the :class:`Deployment` record (PENDING, or UNDEPLOYING) with a fresh
``request_id`` first, with the tenant's credentials and conditionally (a new record, or one in a
settled status), then sends the :class:`DeploymentRequest` to the deployment-requests queue. The
deploy handler validates the request again, acts only on the record's latest request id, and
moves the record on; the endpoint's state changes come back through the job-events handler. A
request that never reached the queue puts the record back where it was, with a reason, so it
never stays PENDING for nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError
from training_common import (
    SERVERLESS_MEMORY_SIZES,
    SETTLED_DEPLOYMENT_STATUSES,
    Deployment,
    DeploymentAction,
    DeploymentChange,
    DeploymentRequest,
    DeploymentStatus,
    EndpointKind,
    ModelApprovalStatus,
    ModelVersion,
    Page,
    RealtimeCapacity,
    ServerlessCapacity,
    Tenant,
    describe_schema_errors,
    is_deployment_id,
    is_job_id_of_tenant,
    utc_now,
)
from training_common.deployments import new_request_id
from training_common.validation import check_deployment

from ..aws import TenantAws
from ..errors import BadRequest, Conflict, NotFound
from . import forms

log = logging.getLogger("portal.deployments")

DEPLOYMENTS_PAGE_SIZE = 50
MAX_APPROVED_PAGES = 4
"""Pages of model versions read for the deploy form's choice of approved versions (200)."""

LIVE_STATUSES = frozenset(
    {
        DeploymentStatus.PENDING,
        DeploymentStatus.CREATING,
        DeploymentStatus.UPDATING,
        DeploymentStatus.UNDEPLOYING,
    }
)
"""Statuses that change by themselves: the pages refresh while one is shown."""

QUEUE_FAILURE = "The portal could not queue the request; try again."


def list_page(aws: TenantAws, token: str | None) -> Page[Deployment]:
    """One page of the tenant's deployments (PageTokenError: 400)."""
    return aws.deployments.list_page(aws.tenant_id, limit=DEPLOYMENTS_PAGE_SIZE, token=token)


def get(aws: TenantAws, deployment_id: str) -> Deployment:
    """The tenant's deployment; NotFound for any other (another tenant's looks like a missing
    one: the key is under the session's tenant, which IAM pins)."""
    if not is_deployment_id(deployment_id):
        raise NotFound(f"You have no deployment called {deployment_id[:64]!r}.")
    deployment = aws.deployments.get(aws.tenant_id, deployment_id)
    if deployment is None:
        raise NotFound(f"You have no deployment called {deployment_id!r}.")
    return deployment


def is_live(deployment: Deployment) -> bool:
    return deployment.status in LIVE_STATUSES


def approved_versions(aws: TenantAws) -> list[ModelVersion]:
    """The tenant's approved model versions with a model package, newest first."""
    found: list[ModelVersion] = []
    token: str | None = None
    for _ in range(MAX_APPROVED_PAGES):
        page = aws.models.list_page(aws.tenant_id, limit=50, token=token)
        found.extend(
            m
            for m in page.items
            if m.approval_status == ModelApprovalStatus.APPROVED and m.model_package_arn
        )
        token = page.next_token
        if token is None:
            break
    return found


def endpoint_instance_types(tenant: Tenant) -> list[str]:
    """What the tenant may choose for a real-time endpoint (the training list when empty)."""
    return list(tenant.allowed_endpoint_instance_types or tenant.allowed_instance_types)


def instances_in_use(deployments: list[Deployment], *, excluding: str | None = None) -> int:
    """Instances of the tenant's real-time deployments that hold quota (not DELETED/FAILED)."""
    return sum(
        d.realtime.instance_count
        for d in deployments
        if d.realtime is not None
        and d.kind == EndpointKind.REALTIME
        and d.status not in {DeploymentStatus.DELETED, DeploymentStatus.FAILED}
        and d.deployment_id != excluding
    )


def _capacity_from_form(
    form: dict[str, str], kind: EndpointKind
) -> tuple[RealtimeCapacity | None, ServerlessCapacity | None]:
    try:
        if kind == EndpointKind.REALTIME:
            count = forms.integer(form, "instance_count", "Instance count", minimum=1, maximum=20)
            instance_type = forms.required(form, "instance_type", "Instance type")
            return RealtimeCapacity(instance_type=instance_type, instance_count=count), None
        memory = forms.integer(form, "memory_mb", "Memory (MB)", minimum=1024, maximum=6144)
        if memory not in SERVERLESS_MEMORY_SIZES:
            allowed = ", ".join(str(size) for size in SERVERLESS_MEMORY_SIZES)
            raise BadRequest(f"Memory (MB) must be one of {allowed}.")
        concurrency = forms.integer(
            form, "max_concurrency", "Maximum concurrency", minimum=1, maximum=200
        )
        return None, ServerlessCapacity(memory_mb=memory, max_concurrency=concurrency)
    except ValidationError as error:
        raise BadRequest(
            "The capacity is invalid.", details=describe_schema_errors(error)
        ) from error


def request_from_form(tenant_id: str, submitted_by: str, form: dict[str, str]) -> DeploymentRequest:
    """The deploy request the new-deployment form describes; BadRequest naming the field.

    The tenant comes from the verified identity only: a ``tenant_id`` field is ignored.
    """
    deployment_id = forms.required(form, "deployment_id", "Deployment name").lower()
    if not is_deployment_id(deployment_id):
        raise BadRequest(
            "Deployment name must be 3 to 32 lower-case letters, digits and hyphens, starting "
            "with a letter and not ending with a hyphen."
        )
    model_job_id = forms.required(form, "model_job_id", "Model version")
    kind = forms.choice(form, "kind", "Kind", EndpointKind, EndpointKind.REALTIME)
    realtime, serverless = _capacity_from_form(form, kind)
    return _request(
        tenant_id,
        submitted_by,
        deployment_id,
        model_job_id=model_job_id,
        kind=kind,
        realtime=realtime,
        serverless=serverless,
    )


def _request(
    tenant_id: str,
    submitted_by: str,
    deployment_id: str,
    *,
    action: DeploymentAction = DeploymentAction.DEPLOY,
    **fields: object,
) -> DeploymentRequest:
    try:
        return DeploymentRequest.model_validate(
            {
                "action": action,
                "tenant_id": tenant_id,
                "deployment_id": deployment_id,
                "request_id": new_request_id(),
                "submitted_by": submitted_by,
                "submitted_at": utc_now(),
                **fields,
            }
        )
    except ValidationError as error:
        raise BadRequest(
            "The deployment request is invalid.", details=describe_schema_errors(error)
        ) from error


def _check(aws: TenantAws, request: DeploymentRequest) -> None:
    """The deploy handler's own validation, run first here: BadRequest listing every problem."""
    if request.model_job_id is not None and not is_job_id_of_tenant(
        request.model_job_id, aws.tenant_id
    ):
        raise BadRequest(f"You have no model version of a job called {request.model_job_id!r}.")
    result = check_deployment(
        request, tenants=aws.tenants, models=aws.models, deployments=aws.deployments
    )
    if not result.ok:
        raise BadRequest(
            "The model can't be deployed as requested.",
            details=[problem.message for problem in result.problems],
        )


def deploy(aws: TenantAws, queue_url: str, request: DeploymentRequest) -> Deployment:
    """A new deployment (or one whose name was DELETED or FAILED before): validate, write the
    PENDING record, queue the request. Conflict for a name in use."""
    existing = aws.deployments.get(aws.tenant_id, request.deployment_id)
    if existing is not None and existing.status not in {
        DeploymentStatus.DELETED,
        DeploymentStatus.FAILED,
    }:
        raise Conflict(
            f"You already have a deployment called {request.deployment_id} "
            f"({existing.status.value}); deploy another version from its page, or choose "
            "another name."
        )
    _check(aws, request)
    return _submit(aws, queue_url, request, existing)


def redeploy(
    aws: TenantAws, queue_url: str, deployment_id: str, form: dict[str, str], by: str
) -> Deployment:
    """Another approved version on an endpoint in service, on the same capacity: the deploy
    handler updates it in place (blue/green with automatic rollback on its alarms)."""
    existing = get(aws, deployment_id)
    if existing.status != DeploymentStatus.IN_SERVICE:
        raise Conflict(
            f"Deployment {deployment_id} is {existing.status.value}; another version can be "
            "deployed only while it is IN_SERVICE."
        )
    model_job_id = forms.required(form, "model_job_id", "Model version")
    if model_job_id == existing.serving_model_job_id:
        raise BadRequest(f"Deployment {deployment_id} already serves that version.")
    request = _request(
        aws.tenant_id,
        by,
        deployment_id,
        model_job_id=model_job_id,
        kind=existing.kind,
        realtime=existing.realtime,
        serverless=existing.serverless,
    )
    _check(aws, request)
    return _submit(aws, queue_url, request, existing)


def undeploy(aws: TenantAws, queue_url: str, deployment_id: str, by: str) -> Deployment:
    """Delete the endpoint, its monitoring schedule and alarms (the deploy handler does it);
    the record and its history stay."""
    existing = get(aws, deployment_id)
    if existing.status not in {DeploymentStatus.IN_SERVICE, DeploymentStatus.FAILED}:
        raise Conflict(
            f"Deployment {deployment_id} is {existing.status.value}; it can be undeployed once "
            "it is IN_SERVICE or FAILED."
        )
    request = _request(aws.tenant_id, by, deployment_id, action=DeploymentAction.UNDEPLOY)
    return _submit(aws, queue_url, request, existing)


def _submit(
    aws: TenantAws,
    queue_url: str,
    request: DeploymentRequest,
    previous: Deployment | None,
) -> Deployment:
    stored = aws.deployments.submit(request)
    if stored is None:
        raise Conflict(
            f"Deployment {request.deployment_id} changed meanwhile (another request is under "
            "way); reload its page."
        )
    try:
        aws.sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=request.to_message_body(),
            MessageAttributes={
                "tenant_id": {"DataType": "String", "StringValue": request.tenant_id},
                "deployment_id": {"DataType": "String", "StringValue": request.deployment_id},
            },
        )
    except Exception:
        aws.deployments.update(
            request.tenant_id, request.deployment_id, _restore(request.request_id, previous)
        )
        raise
    log.info(
        "deployment request queued",
        extra={
            "tenant_id": request.tenant_id,
            "deployment_id": request.deployment_id,
            "action": request.action.value,
            "request_id": request.request_id,
        },
    )
    return stored


def _restore(
    request_id: str, previous: Deployment | None
) -> Callable[[Deployment], Deployment | None]:
    """The change that puts a record whose request never reached the queue back in the status
    it had (an endpoint in service keeps serving; a new deployment ends FAILED)."""
    if previous is not None and previous.status in SETTLED_DEPLOYMENT_STATUSES:
        status = previous.status
    else:
        status = DeploymentStatus.FAILED

    def change(current: Deployment) -> Deployment | None:
        if current.request_id != request_id or current.status not in LIVE_STATUSES:
            return None
        now = utc_now()
        return current.model_copy(
            update={
                "status": status,
                "failure_reason": QUEUE_FAILURE,
                "model_job_id": previous.model_job_id if previous else current.model_job_id,
                "updated_at": now,
                "history": [
                    *current.history,
                    DeploymentChange(status=status, at=now, reason=QUEUE_FAILURE),
                ],
            }
        )

    return change
