"""The local sign-in exists only when the local runner passes its object to create_app."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from local.runner import USERS as LOCAL_USERS
from local.signin import EcSigner, LocalSignIn
from local.stack import ALB_ARN
from portal_app.app import create_app
from portal_app.auth import AlbPublicKeyFetcher
from portal_app.aws import AwsClients
from portal_helpers import USERS, Platform, api_routes

DEPLOYED_ENV = {
    "AWS_REGION": "eu-west-1",
    "ALB_ARN": ALB_ARN,
    "TENANTS_TABLE": "Tenants",
    "JOBS_TABLE": "Jobs",
    "NOTIFICATIONS_TABLE": "Notifications",
    "TRIALS_TABLE": "Trials",
    "MODELS_TABLE": "Models",
    "DATA_BUCKET": "platform-data",
    "ARTIFACTS_BUCKET": "platform-artifacts",
    "CATALOG_BUCKET": "platform-catalog",
    "TRAINING_REQUESTS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/requests",
    "NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:notifications",
    "TENANT_ROLE_ARN": "arn:aws:iam::123456789012:role/portal-tenant-access",
    "USER_POOL_ID": "eu-west-1_AbCdEf123",
    "DEPLOYMENTS_TABLE": "Deployments",
    "API_CLIENTS_TABLE": "ApiClients",
    "DEPLOYMENT_REQUESTS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/deploy",
    "INFERENCE_API_URL": "https://api.example.com/prod",
    "OAUTH_TOKEN_URL": "https://portal.auth.eu-west-1.amazoncognito.com/oauth2/token",
    "PRICE_OVERRIDES": '{"ml.m5.large": 0.134}',
    # Whatever a deployment might try to set: none of it turns on a local sign-in.
    "LOCAL": "1",
    "LOCAL_SIGN_IN": "true",
    "PORTAL_LOCAL": "1",
    "DEBUG": "1",
}


def _paths(app: object) -> set[str]:
    return {path for _, path in api_routes(app)}


def test_deployed_app_has_no_local_sign_in_and_rejects_locally_signed_headers(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal_app.settings import PortalSettings

    for name, value in DEPLOYED_ENV.items():
        monkeypatch.setenv(name, value)
    settings = PortalSettings.from_environment()
    real_alb = EcSigner(ALB_ARN, kid="2f6c3b0e-aaaa-4a4a-9d9d-000000000002")

    def alb_endpoint(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/{real_alb.kid}":
            return httpx.Response(200, text=real_alb.public_pem)
        return httpx.Response(404)

    fetcher = AlbPublicKeyFetcher(
        settings.aws_region, client=httpx.Client(transport=httpx.MockTransport(alb_endpoint))
    )
    app = create_app(settings, key_fetcher=fetcher, aws=AwsClients(platform.settings))
    assert not any(path.startswith("/local") for path in _paths(app))

    local = LocalSignIn(EcSigner(ALB_ARN), LOCAL_USERS)
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    assert client.get("/local/sign-in").status_code == 404
    assert client.post("/local/sign-in", data={"username": "alice@acme.example"}).status_code in {
        404,
        405,
    }
    locally_signed = local.header_for("alice@acme.example")
    assert locally_signed is not None
    response = client.get(
        "/jobs", headers={"x-amzn-oidc-data": locally_signed, "accept": "application/json"}
    )
    assert response.status_code == 401
    # The same app accepts the real ALB's header, so the rejection is about the key alone.
    accepted = client.get("/health", headers={"x-amzn-oidc-data": real_alb.sign(USERS["alice"])})
    assert accepted.status_code == 200
    jobs = client.get(
        "/jobs",
        headers={"x-amzn-oidc-data": real_alb.sign(USERS["alice"]), "accept": "application/json"},
    )
    assert jobs.status_code == 200


def test_local_app_signs_in_and_replaces_client_supplied_headers(platform: Platform) -> None:
    local = LocalSignIn(EcSigner(ALB_ARN), LOCAL_USERS)
    app = create_app(platform.settings, aws=AwsClients(platform.settings), local=local)
    assert "/local/sign-in" in _paths(app)
    client = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    assert client.get("/jobs").headers["location"] == "/local/sign-in"
    # A header the browser sends itself is dropped, as the ALB drops it.
    forged = platform.token("gina")
    response = client.get(
        "/jobs", headers={"x-amzn-oidc-data": forged, "accept": "application/json"}
    )
    assert response.status_code == 401
    signed_in = client.post("/local/sign-in", data={"username": "alice@acme.example"})
    assert signed_in.status_code == 303
    jobs = client.get("/jobs", headers={"x-amzn-oidc-data": forged, "accept": "application/json"})
    assert jobs.status_code == 200
    assert {job["tenant_id"] for job in jobs.json()["items"]} == {"acme"}
