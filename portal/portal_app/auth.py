"""Who is calling: the identity the ALB asserts in its signed ``x-amzn-oidc-data`` header.

After Cognito sign-in, the ALB adds to every request an ES256 JWT that it signs itself. Its header
carries ``kid`` and ``signer`` (the ALB's ARN); its payload carries the user claims that the ALB got
from Cognito (``sub``, ``username``, ``email``, ``custom:tenant_id`` and, when present,
``cognito:groups``), and ``exp``. The public key for ``kid`` is published at
``https://public-keys.auth.elb.<region>.amazonaws.com/<kid>``.

The tenant comes only from the verified ``custom:tenant_id`` claim. Nothing a browser sends
(form fields, query strings, other headers) can change it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import jwt
from training_common import is_tenant_id

IDENTITY_HEADER = "x-amzn-oidc-data"
TENANT_CLAIM = "custom:tenant_id"
GROUPS_CLAIM = "cognito:groups"
_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
CLOCK_SKEW_SECONDS = 30


class AuthError(Exception):
    """The identity header is missing, malformed, unsigned, forged, expired or from another ALB."""


class UnknownKeyError(Exception):
    """The key fetcher has no public key for this ``kid``."""


class KeyFetcher(Protocol):
    """Returns the PEM public key that verifies tokens with ``kid``; UnknownKeyError if none."""

    def __call__(self, kid: str) -> str: ...


class AlbPublicKeyFetcher:
    """Fetches the ALB's public keys from the region's endpoint, caching each ``kid`` forever.

    ALB keys for a ``kid`` never change, so a cache without expiry is correct; unknown kids are
    remembered briefly so forged tokens can't make the portal hammer the endpoint. The HTTP client
    is injectable; tests and local runs pass one that never leaves the machine.
    """

    def __init__(
        self,
        region: str,
        *,
        client: httpx.Client | None = None,
        negative_ttl_seconds: float = 60.0,
    ) -> None:
        self.base_url = f"https://public-keys.auth.elb.{region}.amazonaws.com/"
        self._client = client or httpx.Client(timeout=5.0)
        self._keys: dict[str, str] = {}
        self._missing: dict[str, float] = {}
        self._negative_ttl = negative_ttl_seconds
        self._lock = threading.Lock()

    def __call__(self, kid: str) -> str:
        if not _KID_RE.fullmatch(kid):
            raise UnknownKeyError(kid)
        with self._lock:
            if kid in self._keys:
                return self._keys[kid]
            if self._missing.get(kid, 0.0) > time.monotonic():
                raise UnknownKeyError(kid)
        pem = self._fetch(kid)
        if pem is None or "BEGIN PUBLIC KEY" not in pem:
            with self._lock:
                self._missing[kid] = time.monotonic() + self._negative_ttl
            raise UnknownKeyError(kid)
        with self._lock:
            self._keys[kid] = pem
        return pem

    def _fetch(self, kid: str) -> str | None:
        response = self._client.get(self.base_url + kid)
        return response.text if response.status_code == 200 else None


class RelayedAlbKeyFetcher(AlbPublicKeyFetcher):
    """The same cache, filled through the platform's ALB key relay (a Lambda function outside
    the VPC, invoked through the Lambda interface endpoint), so that portal instances need no
    internet route. The relay returns ``{"pem": ...}`` or ``{"error": ...}``; the signature is
    still verified here, so the relay is trusted with nothing but availability."""

    def __init__(
        self,
        region: str,
        *,
        lambda_client: Any,
        function_name: str,
        negative_ttl_seconds: float = 60.0,
    ) -> None:
        super().__init__(region, client=None, negative_ttl_seconds=negative_ttl_seconds)
        self._lambda = lambda_client
        self._function_name = function_name

    def _fetch(self, kid: str) -> str | None:
        response = self._lambda.invoke(
            FunctionName=self._function_name, Payload=json.dumps({"kid": kid}).encode()
        )
        if response.get("FunctionError"):
            return None
        answer = json.loads(response["Payload"].read())
        pem = answer.get("pem") if isinstance(answer, dict) else None
        return pem if isinstance(pem, str) else None


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller."""

    subject: str
    username: str
    email: str | None
    tenant_id: str | None
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def display(self) -> str:
        """How the portal names the user on pages and in ``submitted_by``."""
        return self.email or self.username


GroupLookup = Callable[[str], frozenset[str]]
"""Looks up a user's Cognito groups by username when the claims don't carry them."""


class IdentityVerifier:
    """Verifies the ALB identity header and turns it into an :class:`Identity`."""

    def __init__(
        self,
        *,
        alb_arn: str,
        key_fetcher: KeyFetcher,
        group_lookup: GroupLookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alb_arn = alb_arn
        self.key_fetcher = key_fetcher
        self.group_lookup = group_lookup
        self.clock = clock

    def verify(self, token: str | None) -> Identity:
        """The identity in ``token``; AuthError saying what is wrong otherwise."""
        if not token:
            raise AuthError("the request carries no identity header; sign in through the portal")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise AuthError("the identity header is not a JWT") from error
        if header.get("alg") != "ES256":
            raise AuthError("the identity header is not signed with ES256")
        if header.get("signer") != self.alb_arn:
            raise AuthError("the identity header was not signed by this portal's load balancer")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthError("the identity header names no signing key")
        try:
            public_key = self.key_fetcher(kid)
        except UnknownKeyError as error:
            raise AuthError("the identity header's signing key is unknown") from error
        header_exp = header.get("exp")
        if isinstance(header_exp, int | float) and header_exp + CLOCK_SKEW_SECONDS < self.clock():
            raise AuthError("the identity header has expired; reload the page")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                options={"require": ["exp"], "verify_aud": False},
                leeway=CLOCK_SKEW_SECONDS,
            )
        except jwt.ExpiredSignatureError as error:
            raise AuthError("the identity header has expired; reload the page") from error
        except jwt.PyJWTError as error:
            raise AuthError("the identity header's signature or claims are invalid") from error
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("the identity header has no subject")
        username = claims.get("username")
        username = username if isinstance(username, str) and username else subject
        tenant = claims.get(TENANT_CLAIM)
        if tenant is not None and not (isinstance(tenant, str) and is_tenant_id(tenant)):
            raise AuthError("the identity header carries a malformed tenant id")
        groups = _groups(claims.get(GROUPS_CLAIM))
        if groups is None:
            groups = self.group_lookup(username) if self.group_lookup else frozenset()
        email = claims.get("email")
        return Identity(
            subject=subject,
            username=username,
            email=email if isinstance(email, str) else None,
            tenant_id=tenant,
            groups=groups,
        )


def _groups(value: object) -> frozenset[str] | None:
    """``cognito:groups`` as a set; None when the claims don't carry it at all."""
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.strip("[]").split(",") if part.strip())
    if isinstance(value, list):
        return frozenset(str(part) for part in value)
    return frozenset()
