"""Request plumbing shared by the routers: the portal object, identity, tenant and CSRF checks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from .auth import IDENTITY_HEADER, Identity, IdentityVerifier
from .aws import AwsClients, TenantAws
from .csrf import FORM_FIELD, HEADER, CsrfPolicy
from .errors import Forbidden
from .settings import PortalSettings


@dataclass(frozen=True)
class Portal:
    """Everything a request handler needs, built once by ``create_app``."""

    settings: PortalSettings
    aws: AwsClients
    verifier: IdentityVerifier
    csrf: CsrfPolicy
    templates: Jinja2Templates
    sign_in_url: str | None = None
    """Where an unauthenticated browser is sent: only the local runner sets it."""


def get_portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


PortalDep = Annotated[Portal, Depends(get_portal)]


def current_identity(request: Request, portal: PortalDep) -> Identity:
    """The verified caller (401 via AuthError otherwise)."""
    cached = getattr(request.state, "identity", None)
    if isinstance(cached, Identity):
        return cached
    identity = portal.verifier.verify(request.headers.get(IDENTITY_HEADER))
    request.state.identity = identity
    return identity


IdentityDep = Annotated[Identity, Depends(current_identity)]


@dataclass(frozen=True)
class TenantCaller:
    """A verified tenant user and the AWS clients that act for its tenant."""

    identity: Identity
    tenant_id: str
    aws: TenantAws


def current_tenant(identity: IdentityDep, portal: PortalDep) -> TenantCaller:
    """The caller's tenant; 403 for a user without one (a platform administrator)."""
    if identity.tenant_id is None:
        raise Forbidden("Your user belongs to no tenant, so it has no tenant pages.")
    return TenantCaller(identity, identity.tenant_id, portal.aws.for_tenant(identity.tenant_id))


TenantDep = Annotated[TenantCaller, Depends(current_tenant)]


def require_admin(identity: IdentityDep, portal: PortalDep) -> Identity:
    """The caller, if it is in the admin group; 403 otherwise."""
    if portal.settings.admin_group not in identity.groups:
        raise Forbidden(
            f"This area is for members of the '{portal.settings.admin_group}' group only."
        )
    return identity


AdminDep = Annotated[Identity, Depends(require_admin)]


async def checked_form(
    request: Request, identity: IdentityDep, portal: PortalDep
) -> dict[str, str]:
    """The submitted form, after the CSRF check (403 via CsrfError when it fails)."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    submitted = fields.get(FORM_FIELD) or request.headers.get(HEADER)
    portal.csrf.check(request, identity.subject, submitted)
    return fields


FormDep = Annotated[dict[str, str], Depends(checked_form)]


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> Response:
    """A page, with the caller's identity and CSRF token in its context."""
    portal = get_portal(request)
    identity = getattr(request.state, "identity", None)
    token = None
    if isinstance(identity, Identity):
        token = portal.csrf.token_for(request, identity.subject)
    is_admin = isinstance(identity, Identity) and portal.settings.admin_group in identity.groups
    response = portal.templates.TemplateResponse(
        request,
        template,
        {"identity": identity, "csrf_token": token, "is_admin": is_admin, **context},
        status_code=status_code,
    )
    if token is not None:
        portal.csrf.remember(response, token)
    return response


class TtlCache:
    """A small thread-safe cache for lookups that may be slightly stale (admin groups)."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._data: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get_or_set(self, key: str, compute: Any) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        value = compute()
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
        return value
