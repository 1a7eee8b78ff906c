"""Tenant pages for serving: deployments, API clients, costs.

As on every tenant page, the tenant comes from the verified identity (``TenantDep``) only; no
path, query or form value names it. Deployments are read and requested with the tenant's
assumed-role clients; API clients are created and deleted with the instance role (the ApiClients
table is what the inference API trusts to say whose a client is), and usage and alarms are read
with it too, always for the session's tenant.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from training_common import (
    INFERENCE_SCOPE,
    SERVERLESS_MEMORY_SIZES,
    ApiClient,
    Deployment,
    DeploymentStatus,
)
from training_common.pricing import PRICE_TABLE_SOURCE, deployment_cost

from ..errors import BadRequest, wants_json
from ..services import clients, costs, deployments, jobs, usage
from ..web import FormDep, Portal, PortalDep, TenantCaller, TenantDep, render

router = APIRouter()

NOTICES = {
    "deploy-requested": "The deployment was requested; its status changes as SageMaker works.",
    "redeploy-requested": (
        "The new version was requested: it replaces the serving one once it is healthy, and is "
        "rolled back automatically if the endpoint's alarms fire."
    ),
    "undeploy-requested": "Undeploying was requested; the endpoint is deleted in a moment.",
    "client-deleted": "The API client was deleted; its tokens stop working within the hour.",
}

INFERENCE_CONTENT_TYPES = (
    "application/json",
    "text/csv",
    "application/jsonlines",
    "application/octet-stream",
)
"""What the inference API accepts by default (shown beside the curl example)."""


def _deployment_json(deployment: Deployment) -> dict[str, Any]:
    return deployment.model_dump(mode="json")


def _client_json(client: ApiClient) -> dict[str, Any]:
    return client.model_dump(mode="json")


def _api_context(portal: Portal, endpoint: str | None = None) -> dict[str, Any]:
    return {
        "api_url": portal.settings.inference_api_url.rstrip("/"),
        "token_url": portal.settings.oauth_token_url,
        "inference_scope": INFERENCE_SCOPE,
        "content_types": INFERENCE_CONTENT_TYPES,
        "endpoint": endpoint,
    }


@router.get("/deployments", name="deployments_page")
def deployments_page(request: Request, caller: TenantDep, portal: PortalDep) -> Response:
    token = request.query_params.get("next") or None
    page = deployments.list_page(caller.aws, token)
    if wants_json(request):
        return JSONResponse(
            {"items": [_deployment_json(d) for d in page.items], "next": page.next_token}
        )
    in_service = [d for d in page.items if d.status == DeploymentStatus.IN_SERVICE]
    return render(
        request,
        "deployments.html",
        {
            "deployments": page.items,
            "next_token": page.next_token,
            "first_page": token is None,
            "live": any(deployments.is_live(d) for d in page.items),
            **_api_context(portal, in_service[0].endpoint_name if in_service else None),
        },
    )


def _deployment_form(
    request: Request,
    caller: TenantCaller,
    *,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    tenant = jobs.tenant_record(caller.aws)
    approved = deployments.approved_versions(caller.aws)
    types = deployments.endpoint_instance_types(tenant)
    in_use = deployments.instances_in_use(caller.aws.deployments.list_all(caller.tenant_id))
    return render(
        request,
        "deployment_form.html",
        {
            "tenant": tenant,
            "approved": approved,
            "selected": request.query_params.get("model", ""),
            "instance_types": types,
            "instances_in_use": in_use,
            "max_instance_count": max(1, tenant.max_endpoint_instances - in_use),
            "memory_sizes": SERVERLESS_MEMORY_SIZES,
            "values": values or {},
            "errors": errors or [],
        },
        status_code=status_code,
    )


@router.get("/deployments/new")
def new_deployment(request: Request, caller: TenantDep) -> Response:
    return _deployment_form(request, caller)


@router.post("/deployments")
def create_deployment(
    request: Request, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    try:
        built = deployments.request_from_form(caller.tenant_id, caller.identity.display, form)
        deployment = deployments.deploy(
            caller.aws, portal.settings.deployment_requests_queue_url, built
        )
    except BadRequest as error:
        if wants_json(request):
            raise
        return _deployment_form(
            request,
            caller,
            values=form,
            errors=[error.message, *error.details],
            status_code=400,
        )
    if wants_json(request):
        return JSONResponse(_deployment_json(deployment), status_code=202)
    return RedirectResponse(
        f"/deployments/{deployment.deployment_id}?notice=deploy-requested", status_code=303
    )


@router.get("/deployments/{deployment_id}")
def deployment_page(
    request: Request, deployment_id: str, caller: TenantDep, portal: PortalDep
) -> Response:
    deployment = deployments.get(caller.aws, deployment_id)
    measured = usage.endpoint_usage(portal.aws.cloudwatch, caller.tenant_id, deployment_id)
    alarms = usage.endpoint_alarms(portal.aws.cloudwatch, caller.tenant_id, deployment)
    cost = deployment_cost(deployment, portal.settings.price_table)
    if wants_json(request):
        return JSONResponse(
            {
                **_deployment_json(deployment),
                "usage": measured.__dict__,
                "alarms": [
                    {
                        "name": a.name,
                        "state": a.state,
                        "reason": a.reason,
                        "since": a.since.isoformat() if a.since else None,
                    }
                    for a in alarms
                ],
                "cost": {"usd": cost.usd, "instance_hours": cost.instance_hours, "note": cost.note},
            }
        )
    settled = deployment.status in {DeploymentStatus.IN_SERVICE, DeploymentStatus.FAILED}
    other_versions = []
    if deployment.status == DeploymentStatus.IN_SERVICE:
        other_versions = [
            m
            for m in deployments.approved_versions(caller.aws)
            if m.job_id != deployment.serving_model_job_id
        ]
    return render(
        request,
        "deployment.html",
        {
            "deployment": deployment,
            "usage": measured,
            "alarms": alarms,
            "cost": cost,
            "can_change": settled,
            "other_versions": other_versions,
            "live": deployments.is_live(deployment),
            "notice": NOTICES.get(request.query_params.get("notice", "")),
            **_api_context(portal, deployment.endpoint_name),
        },
    )


@router.post("/deployments/{deployment_id}/redeploy")
def redeploy(
    request: Request, deployment_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    deployment = deployments.redeploy(
        caller.aws,
        portal.settings.deployment_requests_queue_url,
        deployment_id,
        form,
        caller.identity.display,
    )
    if wants_json(request):
        return JSONResponse(_deployment_json(deployment), status_code=202)
    return RedirectResponse(
        f"/deployments/{deployment_id}?notice=redeploy-requested", status_code=303
    )


@router.post("/deployments/{deployment_id}/undeploy")
def undeploy(
    request: Request, deployment_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    deployment = deployments.undeploy(
        caller.aws,
        portal.settings.deployment_requests_queue_url,
        deployment_id,
        caller.identity.display,
    )
    if wants_json(request):
        return JSONResponse(_deployment_json(deployment), status_code=202)
    return RedirectResponse(
        f"/deployments/{deployment_id}?notice=undeploy-requested", status_code=303
    )


def _clients_page(
    request: Request,
    caller: TenantCaller,
    portal: Portal,
    *,
    created: clients.CreatedClient | None = None,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "clients.html",
        {
            "clients": clients.list_clients(caller.aws),
            "created": created.client if created else None,
            "secret": created.secret if created else None,
            "values": values or {},
            "errors": errors or [],
            "notice": NOTICES.get(request.query_params.get("notice", "")),
            **_api_context(portal),
        },
        status_code=status_code,
    )


@router.get("/clients", name="clients_page")
def clients_page(request: Request, caller: TenantDep, portal: PortalDep) -> Response:
    if wants_json(request):
        return JSONResponse([_client_json(c) for c in clients.list_clients(caller.aws)])
    return _clients_page(request, caller, portal)


@router.post("/clients")
def create_client(
    request: Request, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    """Create a client and answer with its secret, this once: a page (201), not a redirect, so
    the secret is never in a URL or in a page that can be fetched again."""
    try:
        created = clients.create(
            caller.aws,
            cognito=portal.aws.cognito,
            records=portal.aws.api_client_records,
            user_pool_id=portal.settings.user_pool_id,
            form=form,
            by=caller.identity.display,
        )
    except BadRequest as error:
        if wants_json(request):
            raise
        return _clients_page(
            request, caller, portal, values=form, errors=[error.message], status_code=400
        )
    if wants_json(request):
        return JSONResponse(
            {
                **_client_json(created.client),
                "client_secret": created.secret,
                "token_url": portal.settings.oauth_token_url,
                "api_url": portal.settings.inference_api_url,
                "scope": INFERENCE_SCOPE,
            },
            status_code=201,
        )
    return _clients_page(request, caller, portal, created=created, status_code=201)


@router.post("/clients/{client_id}/delete")
def delete_client(
    request: Request, client_id: str, caller: TenantDep, portal: PortalDep, form: FormDep
) -> Response:
    deleted = clients.delete(
        caller.aws,
        client_id,
        cognito=portal.aws.cognito,
        records=portal.aws.api_client_records,
        user_pool_id=portal.settings.user_pool_id,
    )
    if wants_json(request):
        return JSONResponse({"client_id": deleted.client_id, "deleted": True})
    return RedirectResponse("/clients?notice=client-deleted", status_code=303)


@router.get("/costs")
def costs_page(request: Request, caller: TenantDep, portal: PortalDep) -> Response:
    token = request.query_params.get("next") or None
    table = portal.settings.price_table
    view = costs.cost_view(caller.aws, table, token)
    if wants_json(request):

        def estimate(c: Any) -> dict[str, Any]:
            return {
                "instance_hours": c.instance_hours,
                "usd": c.usd,
                "usd_per_hour": c.usd_per_hour,
                "overridden": c.overridden,
                "note": c.note,
            }

        return JSONResponse(
            {
                "price_table": {
                    "region": table.region,
                    "as_of": table.as_of.isoformat(),
                    "overrides": dict(table.overrides),
                    "source": PRICE_TABLE_SOURCE,
                },
                "jobs": [
                    {"job_id": j.job_id, "billable_seconds": view.billable[j.job_id], **estimate(c)}
                    for j, c in view.jobs
                ],
                "deployments": [
                    {"deployment_id": d.deployment_id, **estimate(c)} for d, c in view.deployments
                ],
                "training_total_usd": view.training_total.usd,
                "endpoint_total_usd": view.endpoint_total.usd,
                "next": view.next_token,
            }
        )
    return render(
        request,
        "costs.html",
        {
            "prices": table,
            "price_source": PRICE_TABLE_SOURCE,
            "tenant_id": caller.tenant_id,
            "jobs": view.jobs,
            "billable": view.billable,
            "deployments": view.deployments,
            "training_total": view.training_total,
            "endpoint_total": view.endpoint_total,
            "next_token": view.next_token,
            "first_page": token is None,
        },
    )
