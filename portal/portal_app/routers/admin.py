"""The admin area (members of the admin group only): tenants, users, the algorithm catalog.

Administrators act with the instance role; none of these pages read tenant data (datasets, jobs,
models), which the instance role cannot reach.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from training_common import TenantStatus

from ..errors import BadRequest, NotFound, wants_json
from ..services import admin, forms
from ..web import AdminDep, FormDep, PortalDep, render

router = APIRouter(prefix="/admin")

NOTICES = {
    "tenant-created": "The tenant was created.",
    "tenant-saved": "The tenant's quota was saved.",
    "tenant-status": "The tenant's status was changed.",
    "user-invited": "The user was invited; Cognito emails a temporary password.",
    "algorithm-saved": "The algorithm was saved.",
}


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


@router.get("")
def admin_home(identity: AdminDep) -> Response:
    return RedirectResponse("/admin/tenants", status_code=303)


@router.get("/tenants")
def tenants_page(request: Request, identity: AdminDep, portal: PortalDep) -> Response:
    tenants = admin.list_tenants(portal.aws.admin_tenants)
    if wants_json(request):
        return JSONResponse([tenant.model_dump(mode="json") for tenant in tenants])
    return render(request, "admin/tenants.html", {"tenants": tenants, "notice": _notice(request)})


@router.post("/tenants")
def create_tenant(identity: AdminDep, portal: PortalDep, form: FormDep) -> Response:
    tenant_id = forms.required(form, "tenant_id", "Tenant id")
    tenant = admin.tenant_from_form(form, tenant_id=tenant_id, base=None)
    admin.create_tenant(portal.aws.admin_tenants, tenant)
    if tenant.notification_email:
        admin.subscribe_notifications(
            portal.aws.sns,
            portal.settings.notifications_topic_arn,
            tenant.tenant_id,
            tenant.notification_email,
        )
    return RedirectResponse("/admin/tenants?notice=tenant-created", status_code=303)


@router.get("/tenants/{tenant_id}")
def tenant_page(
    request: Request, tenant_id: str, identity: AdminDep, portal: PortalDep
) -> Response:
    tenant = admin.get_tenant(portal.aws.admin_tenants, tenant_id)
    if wants_json(request):
        return JSONResponse(tenant.model_dump(mode="json"))
    return render(request, "admin/tenant.html", {"tenant": tenant, "notice": _notice(request)})


@router.post("/tenants/{tenant_id}")
def save_tenant(tenant_id: str, identity: AdminDep, portal: PortalDep, form: FormDep) -> Response:
    current = admin.get_tenant(portal.aws.admin_tenants, tenant_id)
    updated = admin.tenant_from_form(form, tenant_id=tenant_id, base=current)
    portal.aws.admin_tenants.put(updated)
    if updated.notification_email and updated.notification_email != current.notification_email:
        admin.subscribe_notifications(
            portal.aws.sns,
            portal.settings.notifications_topic_arn,
            tenant_id,
            updated.notification_email,
        )
    return RedirectResponse(f"/admin/tenants/{tenant_id}?notice=tenant-saved", status_code=303)


@router.post("/tenants/{tenant_id}/status")
def set_tenant_status(
    tenant_id: str, identity: AdminDep, portal: PortalDep, form: FormDep
) -> Response:
    raw = form.get("status", "")
    try:
        status = TenantStatus(raw)
    except ValueError:
        raise BadRequest(f"Status must be ACTIVE or SUSPENDED, not {raw[:20]!r}.") from None
    admin.set_status(portal.aws.admin_tenants, tenant_id, status)
    return RedirectResponse(f"/admin/tenants/{tenant_id}?notice=tenant-status", status_code=303)


@router.get("/users")
def users_page(request: Request, identity: AdminDep, portal: PortalDep) -> Response:
    users = admin.list_users(portal.aws.cognito, portal.settings.user_pool_id)
    tenants = admin.list_tenants(portal.aws.admin_tenants)
    if wants_json(request):
        return JSONResponse(users)
    return render(
        request,
        "admin/users.html",
        {"users": users, "tenants": tenants, "notice": _notice(request)},
    )


@router.post("/users")
def invite_user(identity: AdminDep, portal: PortalDep, form: FormDep) -> Response:
    tenant_id = forms.required(form, "tenant_id", "Tenant")
    email = forms.required(form, "email", "Email address")
    if "@" not in email or len(email) > 254:
        raise BadRequest("The email address is not valid.")
    admin.get_tenant(portal.aws.admin_tenants, tenant_id)
    admin.invite_user(portal.aws.cognito, portal.settings.user_pool_id, tenant_id, email)
    if forms.checkbox(form, "subscribe"):
        admin.subscribe_notifications(
            portal.aws.sns, portal.settings.notifications_topic_arn, tenant_id, email
        )
    return RedirectResponse("/admin/users?notice=user-invited", status_code=303)


@router.get("/algorithms")
def algorithms_page(request: Request, identity: AdminDep, portal: PortalDep) -> Response:
    entries = portal.aws.catalog.list_entries()
    if wants_json(request):
        return JSONResponse([entry.model_dump(mode="json", by_alias=True) for entry in entries])
    return render(
        request, "admin/algorithms.html", {"algorithms": entries, "notice": _notice(request)}
    )


@router.get("/algorithms/{algorithm_id}")
def algorithm_page(
    request: Request, algorithm_id: str, identity: AdminDep, portal: PortalDep
) -> Response:
    entry = None
    if algorithm_id != "new":
        entry = portal.aws.catalog.get(algorithm_id)
        if entry is None:
            raise NotFound(f"The catalog has no algorithm {algorithm_id[:40]!r}.")
    return render(
        request,
        "admin/algorithm.html",
        {"entry": entry, "format_key_values": forms.format_key_values},
    )


@router.post("/algorithms")
def save_algorithm(identity: AdminDep, portal: PortalDep, form: FormDep) -> Response:
    entry = admin.catalog_entry_from_form(form)
    admin.save_catalog_entry(portal.aws.catalog, entry)
    return RedirectResponse("/admin/algorithms?notice=algorithm-saved", status_code=303)
