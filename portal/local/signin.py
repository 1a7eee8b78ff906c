"""A local stand-in for the ALB's Cognito authentication.

:class:`EcSigner` signs identity tokens exactly like the ALB (ES256 JWT, ``kid`` and ``signer``
in the header, user claims and ``exp`` in the payload) with a key generated in memory.
:class:`LocalSignIn` adds a sign-in page and a middleware that, like the ALB, replaces any
``x-amzn-oidc-data`` header with a freshly signed one for the signed-in user.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from portal_app.auth import IDENTITY_HEADER, UnknownKeyError
from starlette.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "local-portal-user"


class EcSigner:
    """Signs ALB-style identity tokens with an in-memory P-256 key."""

    def __init__(self, signer_arn: str, kid: str | None = None) -> None:
        self.signer_arn = signer_arn
        self.kid = kid or f"local-{secrets.token_hex(8)}"
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.public_pem = (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(
        self, claims: dict[str, Any], *, lifetime: int = 120, header: dict[str, Any] | None = None
    ) -> str:
        now = int(time.time())
        payload = {"iss": "https://cognito-idp.local/pool", "exp": now + lifetime, **claims}
        headers = {
            "kid": self.kid,
            "signer": self.signer_arn,
            "iss": payload["iss"],
            "client": "local-client",
            "exp": payload["exp"],
            **(header or {}),
        }
        return jwt.encode(payload, self._key, algorithm="ES256", headers=headers)

    def key_fetcher(self, kid: str) -> str:
        """Serves the public key for this signer's ``kid`` only."""
        if kid != self.kid:
            raise UnknownKeyError(kid)
        return self.public_pem


@dataclass(frozen=True)
class LocalUser:
    username: str
    email: str
    tenant_id: str | None
    groups: tuple[str, ...] = ()
    subject: str = field(default_factory=lambda: secrets.token_hex(16))

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "sub": self.subject,
            "username": self.username,
            "email": self.email,
            "cognito:groups": list(self.groups),
        }
        if self.tenant_id:
            claims["custom:tenant_id"] = self.tenant_id
        return claims


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Local sign-in</title><link rel="stylesheet" href="/static/portal.css"></head>
<body><header><span class="brand">AI training portal · LOCAL</span></header><main>
<h1>Local sign-in</h1>
<p class="muted">This page exists only in the local runner; in AWS the load balancer signs users
in with Cognito.</p>
<form method="post" action="/local/sign-in">
{options}
<button type="submit">Sign in</button></form></main></body></html>"""


class LocalSignIn:
    """The object the local runner passes to ``create_app(..., local=...)``."""

    sign_in_url = "/local/sign-in"

    def __init__(self, signer: EcSigner, users: Iterable[LocalUser]) -> None:
        self.signer = signer
        self.users = {user.username: user for user in users}
        self.key_fetcher = signer.key_fetcher

    def header_for(self, username: str) -> str | None:
        user = self.users.get(username)
        return None if user is None else self.signer.sign(user.claims())

    def install(self, app: FastAPI) -> None:
        app.include_router(self._router())
        app.add_middleware(_PlayTheAlb, sign_in=self)

    def _router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/local/sign-in", include_in_schema=False)
        def page() -> HTMLResponse:
            options = "\n".join(
                f'<label class="check"><input type="radio" name="username" value="{u.username}"'
                f"{' checked' if i == 0 else ''}> {u.email} "
                f"({'tenant ' + u.tenant_id if u.tenant_id else 'no tenant'}"
                f"{', ' + ', '.join(u.groups) if u.groups else ''})</label>"
                for i, u in enumerate(self.users.values())
            )
            return HTMLResponse(_PAGE.format(options=options))

        @router.post("/local/sign-in", include_in_schema=False)
        def sign_in(username: str = Form(...)) -> Response:
            if username not in self.users:
                return HTMLResponse("Unknown local user", status_code=400)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(SESSION_COOKIE, username, httponly=True, samesite="lax")
            return response

        @router.get("/local/sign-out", include_in_schema=False)
        def sign_out(request: Request) -> Response:
            response = RedirectResponse(self.sign_in_url, status_code=303)
            response.delete_cookie(SESSION_COOKIE)
            return response

        return router


class _PlayTheAlb:
    """ASGI middleware: drop the client's identity header, add one for the signed-in user."""

    def __init__(self, app: ASGIApp, sign_in: LocalSignIn) -> None:
        self.app = app
        self.sign_in = sign_in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [
                (name, value)
                for name, value in scope["headers"]
                if name.decode("latin-1").lower() != IDENTITY_HEADER
            ]
            username = _cookie(headers, SESSION_COOKIE)
            token = self.sign_in.header_for(username) if username else None
            if token:
                headers.append((IDENTITY_HEADER.encode(), token.encode()))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def _cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == b"cookie":
            jar = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if name in jar:
                return jar[name].value
    return None
