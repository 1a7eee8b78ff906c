"""The application factory."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket

from .auth import AlbPublicKeyFetcher, IdentityVerifier, KeyFetcher, RelayedAlbKeyFetcher
from .aws import AwsClients
from .csrf import CsrfPolicy
from .errors import install_error_handlers
from .routers import admin, health, retraining, serving, tenant
from .settings import PortalSettings
from .web import Portal, TtlCache

HERE = Path(__file__).parent
log = logging.getLogger("portal.http")


class _CompiledTemplates(BytecodeCache):
    """Compiled templates kept in memory for every app of the process: each template is
    compiled once (the tests create an app per test). Jinja checks each entry against its
    template's source, so an edited template is compiled again."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED_TEMPLATES = _CompiledTemplates()

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class LocalDevelopment(Protocol):
    """What the local runner hands to :func:`create_app` (never built from settings).

    Its presence adds a sign-in page that issues identity headers signed with a local key, and
    swaps the ALB key fetcher for one that knows only that key. A deployed portal is started by
    ``python -m portal_app``, which never passes one, so it has neither.
    """

    key_fetcher: KeyFetcher
    sign_in_url: str

    def install(self, app: FastAPI) -> None:
        """Add the local sign-in routes and the middleware that plays the ALB."""


def _alb_key_fetcher(settings: PortalSettings, aws: AwsClients) -> KeyFetcher:
    if settings.alb_key_relay_function:
        return RelayedAlbKeyFetcher(
            settings.aws_region,
            lambda_client=aws.instance_lambda,
            function_name=settings.alb_key_relay_function,
        )
    return AlbPublicKeyFetcher(settings.aws_region)


def create_app(
    settings: PortalSettings,
    *,
    key_fetcher: KeyFetcher | None = None,
    aws: AwsClients | None = None,
    local: LocalDevelopment | None = None,
) -> FastAPI:
    """Build the portal.

    ``key_fetcher`` and ``aws`` are injectable so tests never reach AWS; by default the ALB's
    public-key endpoint of ``settings.aws_region`` and boto3's default credential chain (the
    instance role) are used. ``local`` is for the local runner only (see LocalDevelopment).
    """
    aws = aws or AwsClients(settings)
    if local is not None:
        key_fetcher = local.key_fetcher
    groups_cache = TtlCache(60.0)
    verifier = IdentityVerifier(
        alb_arn=settings.alb_arn,
        key_fetcher=key_fetcher or _alb_key_fetcher(settings, aws),
        group_lookup=lambda username: groups_cache.get_or_set(
            username, lambda: aws.lookup_groups(username)
        ),
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.bytecode_cache = _COMPILED_TEMPLATES
    app = FastAPI(
        title="AI training portal",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.templates = templates
    app.state.portal = Portal(
        settings=settings,
        aws=aws,
        verifier=verifier,
        csrf=CsrfPolicy(secure=local is None),
        templates=templates,
        sign_in_url=local.sign_in_url if local is not None else None,
    )
    # Uploads are HTML forms that post straight to S3 (the presigned POST's origin).
    upload_origin = aws.endpoint_url or "https://*.amazonaws.com"
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"form-action 'self' {upload_origin}; frame-ancestors 'none'"
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(tenant.router)
    app.include_router(serving.router)
    app.include_router(retraining.router)
    app.include_router(admin.router)
    if local is not None:
        local.install(app)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-amzn-trace-id") or uuid.uuid4().hex
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", csp)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path != "/health":
            identity = getattr(request.state, "identity", None)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "tenant_id": getattr(identity, "tenant_id", None),
                },
            )
        return response

    return app
