"""CSRF protection: a double-submit token bound to the signed-in user.

The token is ``<user tag>.<random nonce>``, where the user tag is a hash of the verified subject.
It is set as a cookie (``__Host-`` prefixed, Secure, SameSite=Strict in a deployment) and rendered
into every form; a state-changing request must send the same value back in the form field
``csrf_token`` or the ``X-CSRF-Token`` header, and its user tag must be the caller's. Another site
can neither read nor set the cookie, so it can't produce a matching pair; a token issued to one
user is useless to another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"


class CsrfError(Exception):
    """The request's CSRF token is missing or doesn't match."""


@dataclass(frozen=True, slots=True)
class CsrfPolicy:
    """How the CSRF cookie is set; ``secure=False`` only for the local runner over plain HTTP."""

    secure: bool = True

    @property
    def cookie_name(self) -> str:
        return "__Host-portal-csrf" if self.secure else "portal-csrf"

    @staticmethod
    def user_tag(subject: str) -> str:
        return hashlib.sha256(subject.encode()).hexdigest()[:16]

    def token_for(self, request: Request, subject: str) -> str:
        """The caller's current token, or a new one (set on the response by :meth:`remember`)."""
        tag = self.user_tag(subject)
        current = request.cookies.get(self.cookie_name, "")
        if current.startswith(tag + ".") and len(current) == len(tag) + 1 + 32:
            return current
        return f"{tag}.{secrets.token_hex(16)}"

    def remember(self, response: Response, token: str) -> None:
        response.set_cookie(
            self.cookie_name,
            token,
            httponly=True,
            secure=self.secure,
            samesite="strict",
            path="/",
        )

    def check(self, request: Request, subject: str, submitted: str | None) -> None:
        cookie = request.cookies.get(self.cookie_name)
        if not submitted or not cookie:
            raise CsrfError("the form has no CSRF token; reload the page and submit it again")
        if not hmac.compare_digest(cookie, submitted):
            raise CsrfError("the form's CSRF token doesn't match; reload the page and try again")
        if not cookie.startswith(self.user_tag(subject) + "."):
            raise CsrfError("the form's CSRF token belongs to another user; reload the page")
