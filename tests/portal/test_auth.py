"""The ALB identity header: only a token signed by the configured ALB's key is accepted."""

from __future__ import annotations

import html
import io
import json
import time

import httpx
import jwt
import pytest
from local.signin import EcSigner
from local.stack import ALB_ARN
from portal_app.auth import (
    AlbPublicKeyFetcher,
    AuthError,
    IdentityVerifier,
    RelayedAlbKeyFetcher,
    UnknownKeyError,
)
from portal_helpers import USERS, Platform


def _expect_401(platform: Platform, token: str | None, reason: str) -> None:
    client = platform.client(None)
    headers = {"accept": "application/json"}
    if token is not None:
        headers["x-amzn-oidc-data"] = token
    response = client.get("/jobs", headers=headers)
    assert response.status_code == 401
    assert reason in response.json()["error"]
    page = client.get("/jobs", headers={k: v for k, v in headers.items() if k != "accept"})
    assert page.status_code == 401
    assert "text/html" in page.headers["content-type"]
    assert reason in html.unescape(page.text)


def test_missing_header_is_401(platform: Platform) -> None:
    _expect_401(platform, None, "no identity header")


def test_token_signed_by_another_key_with_the_albs_kid_is_401(platform: Platform) -> None:
    forger = EcSigner(ALB_ARN, kid=platform.signer.kid)
    _expect_401(platform, forger.sign(USERS["alice"]), "signature")


def test_expired_token_is_401(platform: Platform) -> None:
    token = platform.signer.sign(USERS["alice"], lifetime=-600)
    _expect_401(platform, token, "expired")


def test_unsigned_token_is_401(platform: Platform) -> None:
    token = jwt.encode(
        {**USERS["alice"], "exp": int(time.time()) + 60},
        key=None,
        algorithm="none",
        headers={"kid": platform.signer.kid, "signer": ALB_ARN},
    )
    _expect_401(platform, token, "ES256")


def test_hs256_token_with_the_public_key_as_secret_is_401(platform: Platform) -> None:
    token = jwt.encode(
        {**USERS["alice"], "exp": int(time.time()) + 60},
        key="secret-" + platform.signer.public_pem[:20],
        algorithm="HS256",
        headers={"kid": platform.signer.kid, "signer": ALB_ARN},
    )
    _expect_401(platform, token, "ES256")


def test_token_from_another_load_balancer_is_401(platform: Platform) -> None:
    other_alb = ALB_ARN.replace("portal-local", "someone-else")
    token = platform.signer.sign(USERS["alice"], header={"signer": other_alb})
    _expect_401(platform, token, "not signed by this portal's load balancer")


def test_token_with_unknown_kid_is_401(platform: Platform) -> None:
    stranger = EcSigner(ALB_ARN, kid="some-other-kid")
    _expect_401(platform, stranger.sign(USERS["alice"]), "signing key is unknown")


def test_garbage_and_malformed_tenant_are_401(platform: Platform) -> None:
    _expect_401(platform, "not-a-jwt", "not a JWT")
    bad_tenant = platform.signer.sign({**USERS["alice"], "custom:tenant_id": "../globex"})
    _expect_401(platform, bad_tenant, "malformed tenant id")


def test_header_without_expiry_is_401(platform: Platform) -> None:
    token = jwt.encode(
        USERS["alice"],
        platform.signer._key,
        algorithm="ES256",
        headers={"kid": platform.signer.kid, "signer": ALB_ARN},
    )
    _expect_401(platform, token, "invalid")


def test_valid_token_gives_the_claimed_tenant(platform: Platform) -> None:
    response = platform.client("gina").get("/jobs", headers={"accept": "application/json"})
    assert response.status_code == 200
    assert {job["tenant_id"] for job in response.json()["items"]} == {"globex"}


def test_groups_are_looked_up_in_cognito_when_the_claims_lack_them(platform: Platform) -> None:
    verifier = IdentityVerifier(
        alb_arn=ALB_ARN,
        key_fetcher=platform.signer.key_fetcher,
        group_lookup=lambda username: frozenset({"admins"}) if username == "root" else frozenset(),
    )
    claims = {"sub": "s-1", "username": "root", "email": "root@platform.example"}
    assert verifier.verify(platform.signer.sign(claims)).groups == {"admins"}
    with_claim = {**claims, "cognito:groups": ["viewers"]}
    assert verifier.verify(platform.signer.sign(with_claim)).groups == {"viewers"}
    # The portal's default lookup asks Cognito (AdminListGroupsForUser, instance role).
    assert platform.app.state.portal.aws.lookup_groups("admin@platform.example") == {"admins"}


def test_wrong_signer_is_rejected_before_any_key_is_fetched() -> None:
    fetched: list[str] = []

    def fetcher(kid: str) -> str:
        fetched.append(kid)
        raise UnknownKeyError(kid)

    signer = EcSigner("arn:aws:elasticloadbalancing:eu-west-1:999999999999:loadbalancer/app/x/1")
    verifier = IdentityVerifier(alb_arn=ALB_ARN, key_fetcher=fetcher)
    with pytest.raises(AuthError, match="load balancer"):
        verifier.verify(signer.sign(USERS["alice"]))
    assert fetched == []


def test_alb_key_fetcher_uses_the_regional_endpoint_and_caches_by_kid() -> None:
    signer = EcSigner(ALB_ARN, kid="2f6c3b0e-1111-4a4a-9d9d-000000000001")
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        if request.url.path == f"/{signer.kid}":
            return httpx.Response(200, text=signer.public_pem)
        return httpx.Response(404, text="not found")

    fetcher = AlbPublicKeyFetcher(
        "eu-west-1", client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    assert fetcher(signer.kid) == signer.public_pem
    assert fetcher(signer.kid) == signer.public_pem
    assert requests == [f"https://public-keys.auth.elb.eu-west-1.amazonaws.com/{signer.kid}"]
    for _ in range(2):
        with pytest.raises(UnknownKeyError):
            fetcher("unknown-kid")
    assert len(requests) == 2  # the miss is remembered
    with pytest.raises(UnknownKeyError):
        fetcher("../../evil?x=1")
    assert len(requests) == 2  # a malformed kid never reaches the network


class FakeRelay:
    """Answers Lambda Invoke like the ALB key relay (lambda/alb_keys)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.calls: list[dict[str, object]] = []

    def invoke(self, **kwargs: object) -> dict[str, object]:
        self.calls.append(kwargs)
        kid = json.loads(kwargs["Payload"])["kid"]  # type: ignore[arg-type]
        answer = {"pem": self.keys[kid]} if kid in self.keys else {"error": f"no key {kid}"}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


def test_relayed_key_fetcher_asks_the_relay_once_per_kid() -> None:
    signer = EcSigner(ALB_ARN, kid="2f6c3b0e-1111-4a4a-9d9d-000000000002")
    relay = FakeRelay({signer.kid: signer.public_pem})
    fetcher = RelayedAlbKeyFetcher("eu-west-1", lambda_client=relay, function_name="relay-fn")
    assert fetcher(signer.kid) == signer.public_pem
    assert fetcher(signer.kid) == signer.public_pem
    assert [c["FunctionName"] for c in relay.calls] == ["relay-fn"]
    for _ in range(2):
        with pytest.raises(UnknownKeyError):
            fetcher("unknown-kid")
    assert len(relay.calls) == 2  # the miss is remembered
    with pytest.raises(UnknownKeyError):
        fetcher("../../evil")
    assert len(relay.calls) == 2  # a malformed kid never reaches the relay


def test_a_relay_failure_is_an_unknown_key_not_a_500() -> None:
    class Failing:
        def invoke(self, **kwargs: object) -> dict[str, object]:
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(b"{}")}

    fetcher = RelayedAlbKeyFetcher("eu-west-1", lambda_client=Failing(), function_name="relay-fn")
    with pytest.raises(UnknownKeyError):
        fetcher("some-kid")
